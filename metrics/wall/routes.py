"""``GET /wall``: the wall page; ``GET /wall/stream``: its frames as Server-Sent Events.

The page and its script and style are served from this package (no CDN: an office wall
works without the internet). The stream sends a frame per changed key, at most one write
per ``min_interval_s``, and a ping event every ``ping_s`` so that proxies keep the
connection and the page can tell a silent connection from a live one.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

import msgspec
import redis
from aiohttp import web

from metrics.read.kpi_reader import KpiReader
from metrics.read.waiting import WaitingReader
from metrics.wall.access import Denied, Grant, WallAccess
from metrics.wall.hub import WallHub
from metrics.wall.i18n import catalogue
from metrics.wall.source import WallSource
from salespulse.core.tenants import TenantDirectory

STATIC = Path(__file__).with_name("static")
_ASSETS = {
    "wall.js": "text/javascript",
    "connection.js": "text/javascript",
    "wall.css": "text/css",
    "i18n.js": "text/javascript",
    "fit.js": "text/javascript",
    "celebrate.js": "text/javascript",
    "tiles.js": "text/javascript",
}
# The page reconnects on its own with back-off; this is EventSource's fallback only.
RETRY_MS = 1000
_SECURITY = {
    # The token is in the URL: never send it on as a referrer, never cache the page.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


class WallEdge:
    """The wall's routes over one access table and one hub."""

    def __init__(
        self,
        access: WallAccess,
        hub: WallHub,
        tenants: TenantDirectory,
        *,
        ping_s: float = 10.0,
        min_interval_s: float = 0.25,
    ) -> None:
        self._access = access
        self._hub = hub
        self._tenants = tenants
        self._ping_s = ping_s
        self._min_interval_s = min_interval_s
        self._page = (STATIC / "wall.html").read_text(encoding="utf-8")
        self._assets = {name: (STATIC / name).read_bytes() for name in _ASSETS}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/wall", self.page),
            web.get("/wall/stream", self.stream),
            web.get("/wall/static/{name}", self.asset),
        ]

    async def close(self) -> None:
        await self._hub.close()

    def _grant(self, request: web.Request) -> Grant | web.Response:
        grant = self._access.grant(request.query)
        if isinstance(grant, Denied):
            return _json(grant.status, grant.body)
        return grant

    async def page(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        config = self._tenants.get(grant.tenant)
        words = catalogue(grant.locale)
        wall = {
            "tenant": grant.tenant,
            "currency": config.currency,
            "timezone": config.timezone,
            "locale": grant.locale,
            "words": words.for_page(),
            "celebration_sound": grant.celebration_sound,
            "rotate_seconds": grant.rotate_seconds,
            "views": [view.as_json() for view in grant.views],
            "stream": "/wall/stream",
            "ping_seconds": self._ping_s,
        }
        # JSON inside <script type="application/json">: no "<" may close the element early.
        data = msgspec.json.encode(wall).decode().replace("<", "\\u003c")
        body = (
            self._page.replace("__WALL_CONFIG__", data)
            .replace("__LANG__", grant.locale)
            .replace("__TITLE__", html.escape(words.text("page.title")))
        )
        return web.Response(text=body, content_type="text/html", charset="utf-8", headers=_SECURITY)

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets:
            raise web.HTTPNotFound()
        return web.Response(
            body=self._assets[name],
            content_type=_ASSETS[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        grant = self._grant(request)
        if isinstance(grant, web.Response):
            return grant
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",  # nginx would otherwise hold frames back
                "Referrer-Policy": "no-referrer",
            }
        )
        await response.prepare(request)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            async with self._hub.watch(grant.keys) as watcher:
                while not watcher.closed:
                    frames = await watcher.next(self._ping_s)
                    if watcher.closed:
                        break
                    if not frames:
                        await response.write(b"event: ping\ndata: {}\n\n")
                        continue
                    await response.write(
                        b"".join(b"event: frame\ndata: " + f.encode() + b"\n\n" for f in frames)
                    )
                    # Coalescing: whatever changes meanwhile goes out together, once.
                    await asyncio.sleep(self._min_interval_s)
        except ConnectionResetError:
            return response  # the screen went away
        await response.write_eof()
        return response


def _json(status: int, payload: object) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


def build_wall(
    tenants: TenantDirectory,
    reader: KpiReader,
    client: redis.Redis,
    offsets_keys: tuple[str, ...],
    *,
    waiting: WaitingReader | None = None,
) -> WallEdge:
    """The wall of an exporter: screens from the tenants file, frames from its Redis."""
    source = WallSource(reader, client, tenants, offsets_keys, waiting=waiting)
    hub = WallHub(source.frame, on_idle=lambda key: source.forget(key.tenant))
    return WallEdge(WallAccess(tenants), hub, tenants)
