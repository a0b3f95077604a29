"""``GET /metrics``: the registry rendered in the Prometheus text format.

The exporter's scrape holds every tenant's KPIs: it can ask for a bearer token
(``SALESPULSE_METRICS_TOKEN``) and/or basic auth (``SALESPULSE_METRICS_USERNAME`` /
``_PASSWORD``), as Prometheus' ``authorization`` / ``basic_auth`` scrape settings send them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from salespulse.core.json_responses import unauthorized


def metrics_routes(
    registry: CollectorRegistry,
    *,
    token: str | None = None,
    basic: tuple[str, str] | None = None,
) -> list[web.RouteDef]:
    async def scrape(request: web.Request) -> web.Response:
        if (token or basic) and not _authorized(request.headers.get("Authorization", "")):
            return unauthorized(basic=basic is not None, bearer=basic is None)
        # Collectors read Redis synchronously: keep that off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def _authorized(header: str) -> bool:
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and token:
            return hmac.compare_digest(credentials.encode(), token.encode())
        if scheme.lower() == "basic" and basic:
            try:
                user, _, password = base64.b64decode(credentials, validate=True).partition(b":")
            except binascii.Error:
                return False
            # Both compared, always: which half was wrong must not show in the time taken.
            user_ok = hmac.compare_digest(user, basic[0].encode())
            password_ok = hmac.compare_digest(password, basic[1].encode())
            return user_ok and password_ok
        return False

    return [web.get("/metrics", scrape)]
