"""The pure, sans-I/O consensus core: it takes messages and the current time and returns
effects. It must never import asyncio, aiohttp, sqlite3/aiosqlite, socket, time, the global
random module's functions, structlog, prometheus_client, or anything of ``api``/``persistence``
(``tests/unit/test_core_purity.py`` enforces this)."""
