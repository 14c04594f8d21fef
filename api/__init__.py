"""The edges of paxlock, as three products: ``server`` (the HTTP API, the peer transport and
``Node``), ``client`` (the Python SDK, which talks HTTP only) and ``cli`` (the ``paxlock``
command). Dependency direction: ``cli`` may use both others; ``client`` uses nothing outside
itself (checked by ``tests/unit/test_layers.py``)."""
