"""The ``paxlock`` command (``main``): ``serve`` and ``up`` (``serve``), ``lock``
(``lock_command``), ``sim``, ``status``; ``logs`` configures structured logging."""
