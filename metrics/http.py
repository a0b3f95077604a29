"""``GET /metrics``: the registry rendered in the Prometheus text format."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def metrics_routes(registry: CollectorRegistry) -> list[web.RouteDef]:
    async def scrape(_: web.Request) -> web.Response:
        # Collectors read Redis synchronously: keep that off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/metrics", scrape)]
