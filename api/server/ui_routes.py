"""The status page at ``/ui/``: three static files shipped in the package (``api/server/ui``),
served by every node. No build step and nothing fetched from elsewhere: the page is plain
JavaScript that reads the API it is served beside (``../v1/...``, so it also works under a
mount prefix) and follows ``GET /v1/changes``.

The files hold no data, so they are open (``auth.RULES``); the page's API calls follow the
API's rules, and under ``--auth`` it asks for a token. Read-only: it only sends GETs.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

UI_FILES: dict[str, str] = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
"""Every file of the page and its content type; any other name is a 404."""
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Everything the page loads or calls is this node's own: a script injected by a name or
    # a value it shows could not send anything elsewhere.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}  # fmt: skip


@functools.cache
def _read(name: str) -> bytes:
    """Read once per process: the files are package data, fixed for a run."""
    return resources.files("paxlock.api.server").joinpath("ui", name).read_bytes()


async def redirect(request: web.Request) -> web.StreamResponse:
    """``/ui`` -> ``/ui/`` (relative, so a mount prefix is kept), where ``app.js`` resolves."""
    raise web.HTTPFound("ui/")


async def index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in UI_FILES:
        raise web.HTTPNotFound(text=f"no {name} in the status page")
    return _file(name)


def _file(name: str) -> web.Response:
    return web.Response(body=_read(name), content_type=UI_FILES[name], charset="utf-8",
                        headers=HEADERS)  # fmt: skip


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/ui", redirect)
    router.add_get("/ui/", index)
    router.add_get("/ui/{file}", asset)
