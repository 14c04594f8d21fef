"""One cluster member's edge: the aiohttp application (``app``, ``routes``, ``wire``,
``errors``), the peer transport (``peer``), ``Node`` (``node``) and the in-process lease
operations of embedded mode (``embedded``)."""
