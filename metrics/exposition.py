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
import logging
from collections.abc import Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from metrics.merged import merged_exposition
from salespulse.core.json_responses import unauthorized

logger = logging.getLogger(__name__)


class RemoteExposition:
    """Another process's ``/metrics`` (``salespulse run``'s worker process), read at
    scrape time to be merged into this one's (metrics/merged.py)."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float = 5.0) -> None:
        self._url = url
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> str | None:
        """Its text, or None (logged) when it does not answer: the scrape still shows
        this process's series rather than failing whole."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self._url, headers=self._headers) as response:
                if response.status == 200:
                    return await response.text()
                status = response.status
                logger.warning("%s answered %s: its series are left out", self._url, status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("%s did not answer (%s): its series are left out", self._url, exc)
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def metrics_routes(
    registry: CollectorRegistry,
    *,
    token: str | None = None,
    basic: tuple[str, str] | None = None,
    remote: Sequence[RemoteExposition] = (),
) -> list[web.RouteDef]:
    async def scrape(request: web.Request) -> web.Response:
        if (token or basic) and not _authorized(request.headers.get("Authorization", "")):
            return unauthorized(basic=basic is not None, bearer=basic is None)
        others = [text for text in await asyncio.gather(*(r.fetch() for r in remote)) if text]
        # Collectors read Redis synchronously: keep that off the event loop.
        body = await asyncio.to_thread(merged_exposition, registry, *others)
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
