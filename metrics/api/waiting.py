"""``GET /v1/waiting?tenant=…[&team=…][&channel=…][&limit=…]``: clients waiting now.

The wallboard's "waiting now" list: oldest first, each wait's age and SLA state at the
moment of the request (metrics/read/waiting.py). Ids only: conversation or client ids and
manager ids, never names, phones or message texts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from redis.exceptions import RedisError

from metrics.api.read_access import ReadAccess, kpi_store_unavailable
from metrics.read.waiting import Wait, WaitingReader
from salespulse.core.json_responses import json_response
from salespulse.core.tenants import TenantDirectory

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def waiting_summary(waits: list[Wait]) -> dict[str, object]:
    return {
        "waiting": len(waits),
        "at_risk": sum(w.state == "at_risk" for w in waits),
        "breached": sum(w.state == "breached" for w in waits),
        "oldest_age_seconds": round(max((w.age_seconds for w in waits), default=0.0), 3),
    }


def waiting_body(
    tenant: str, now: datetime, waits: list[Wait], limit: int = DEFAULT_LIMIT
) -> dict[str, object]:
    """The JSON body; the summary counts every matching wait, the list the oldest `limit`."""
    return {
        "tenant": tenant,
        "now": now.isoformat(),
        "summary": waiting_summary(waits),
        "waiting": [wait.as_json() for wait in waits[:limit]],
    }


def waiting_routes(
    reader: WaitingReader,
    tenants: TenantDirectory,
    stored_tenants: Callable[[], list[str]],
    access: ReadAccess,
) -> list[web.RouteDef]:
    """``stored_tenants`` returns the tenants that have data in Redis (KpiReader.tenants)."""

    async def get_waiting(request: web.Request) -> web.Response:
        query = request.query
        tenant = query.get("tenant", "")
        team = query.get("team") or None
        channel = query.get("channel") or None
        problems: list[dict[str, str]] = []
        if not tenant:
            problems.append({"field": "tenant", "problem": "required"})
        limit = DEFAULT_LIMIT
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_LIMIT:
                problems.append({"field": "limit", "problem": f"an integer from 1 to {MAX_LIMIT}"})
        if problems:
            return json_response(400, {"error": "invalid_query", "problems": problems})
        denied = access.denied(request, tenant)
        if denied is not None:
            return denied
        now = datetime.now(UTC)
        try:
            known = tenant in tenants.names() or tenant in await asyncio.to_thread(stored_tenants)
            if not known:  # only open reads or the operator's token get here for one
                return json_response(
                    404,
                    {
                        "error": "unknown_tenant",
                        "problems": [{"field": "tenant", "problem": "no such tenant"}],
                    },
                )
            waits = await asyncio.to_thread(reader.waiting, tenant, now)
        except RedisError:
            return kpi_store_unavailable()
        waits = [
            w
            for w in waits
            if (team is None or w.team == team) and (channel is None or w.channel == channel)
        ]
        return json_response(200, waiting_body(tenant, now, waits, limit))

    return [web.get("/v1/waiting", get_waiting)]
