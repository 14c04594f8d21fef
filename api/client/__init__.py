"""The Python SDK. It talks HTTP only: nothing here imports outside ``paxlock.api.client``
(checked by ``tests/unit/test_layers.py``).

``aio.AsyncClient`` is the asyncio client, ``sync.Client`` the same surface for threaded code.
Failover, retries and idempotency live in ``transport``; what recipes share in ``session``;
holding a grant (renewals, the conservative clock of ``clock``) in ``keepalive``; what
``lock`` and ``campaign`` yield in ``holding``; elections in ``election``; typed results in
``types``, errors in ``errors``.
The public names are re-exported lazily by the top-level ``paxlock`` package.
"""
