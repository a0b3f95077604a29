"""``GET /v1/kpis?tenant=…&window=…&by=…``: the KPI catalogue as JSON.

Values in base units (seconds, ratios 0 to 1, money in the tenant currency); ratios carry
their numerator and denominator. Ids, and beside a manager's id (``by=manager``) the
staff member's display name; no client's name, phone or message text exists here.
"""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from metrics.api.read_access import ReadAccess, kpi_store_unavailable
from metrics.read.kpi_reader import KpiReader
from metrics.read.kpi_value import Kpi
from metrics.views.kpi_view import present
from salespulse.core.kpi.catalogue import DIMENSIONS, TOTAL_GROUP, WINDOWS
from salespulse.core.staff import display_name
from salespulse.core.tenants import TenantDirectory


def kpi_routes(
    reader: KpiReader, tenants: TenantDirectory, access: ReadAccess
) -> list[web.RouteDef]:
    async def get_kpis(request: web.Request) -> web.Response:
        query = request.query
        tenant = query.get("tenant", "")
        window = query.get("window", "today")
        by = query.get("by") or None
        problems = []
        if not tenant:
            problems.append({"field": "tenant", "problem": "required"})
        if window not in WINDOWS:
            problems.append({"field": "window", "problem": f"one of {', '.join(WINDOWS)}"})
        if by is not None and by not in DIMENSIONS:
            problems.append({"field": "by", "problem": f"one of {', '.join(DIMENSIONS)}"})
        if problems:
            return _json(400, {"error": "invalid_query", "problems": problems})
        denied = access.denied(request, tenant)
        if denied is not None:
            return denied
        try:
            known = tenant in tenants.names() or tenant in await asyncio.to_thread(reader.tenants)
            if not known:  # only open reads or the operator's token get here for one
                return _json(
                    404,
                    {
                        "error": "unknown_tenant",
                        "problems": [{"field": "tenant", "problem": "no such tenant"}],
                    },
                )
            body = await asyncio.to_thread(_render, reader, tenants, tenant, window, by)
        except RedisError:
            return kpi_store_unavailable()
        return _json(200, body)

    return [web.get("/v1/kpis", get_kpis)]


def _render(
    reader: KpiReader, tenants: TenantDirectory, tenant: str, window: str, by: str | None
) -> dict[str, object]:
    config = tenants.get(tenant)
    snapshot = reader.snapshot(tenant, window, by, None)
    total = present(
        snapshot.groups[TOTAL_GROUP],
        config,
        window,
        snapshot.now,
        revenue_by_source=snapshot.revenue_by_source,
    )
    target_kind = {"manager": "managers", "team": "teams"}.get(by or "")
    groups = {
        name: _as_json(
            present(
                group,
                config,
                window,
                snapshot.now,
                target=(target_kind, name) if target_kind else None,
            )
        )
        for name, group in sorted(snapshot.groups.items())
        if name != TOTAL_GROUP
    }
    if by == "manager":  # staff names only: the other dimensions are ids of teams, sources…
        names = reader.staff_reader().names(tenant)
        for manager, group in groups.items():
            group["name"] = display_name(names, manager)
    return {
        "tenant": tenant,
        "window": window,
        "by": by,
        "at": snapshot.now.isoformat(),
        "currency": config.currency,
        "total": _as_json(total),
        "groups": groups,
    }


def _as_json(kpis: list[Kpi]) -> dict[str, object]:
    """Plain KPIs become numbers; labelled or ratio KPIs become lists of objects."""
    out: dict[str, object] = {}
    for kpi in kpis:
        if not kpi.labels and kpi.denominator is None:
            out[kpi.name] = kpi.value
        elif not kpi.labels:
            out[kpi.name] = kpi.as_json()
        else:
            entries = out.setdefault(kpi.name, [])
            assert isinstance(entries, list)  # narrowing: labelled KPIs are always lists
            entries.append(kpi.as_json())
    return out


def _json(status: int, payload: object) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )
