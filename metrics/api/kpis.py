"""``GET /v1/kpis`` (a window or a period) and ``GET /v1/kpis/series``: the KPI catalogue
as JSON or CSV (README "Periods, comparisons, series, CSV"; docs/kpi-semantics.md
"Periods"; the OpenAPI description at ``GET /v1/openapi.json``).

Values in base units (seconds, ratios 0 to 1, money in the tenant currency); ratios carry
their numerator and denominator; counts are integers. Ids, and beside a manager's id
(``by=manager``) the staff member's display name; no client's name, phone or message text
exists here. Every parameter is checked (metrics/api/query.py): an unknown one is a 400,
never ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from metrics.api.csv_export import csv_response, kpis_csv, series_csv
from metrics.api.periods_api import render_period, render_series
from metrics.api.query import Problems, check_kpis_query, check_series_query
from metrics.api.read_access import ReadAccess, kpi_store_unavailable
from metrics.read.kpi_reader import KpiReader
from metrics.views.kpi_json import as_json, stable
from metrics.views.kpi_view import present
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.periods import PeriodError
from salespulse.core.staff import display_name
from salespulse.core.tenants import TenantDirectory

# SALESPULSE_DAY_BUCKET_RETENTION_DAYS's default; the composition root passes the setting.
DEFAULT_RETENTION_DAYS = 400


def kpi_routes(
    reader: KpiReader,
    tenants: TenantDirectory,
    access: ReadAccess,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list[web.RouteDef]:
    async def answer(
        request: web.Request,
        problems: Problems,
        render: Callable[[str, Mapping[str, str]], dict[str, object]],
        to_csv: Callable[[dict[str, object]], bytes],
    ) -> web.Response:
        query = request.query
        tenant = query.get("tenant", "")
        # Who may read comes first: a stranger learns nothing, not even a bad parameter
        # (a token put in the URL is refused as a missing token, not as a parameter).
        denied = access.denied(request, tenant)
        if denied is not None:
            return denied
        if problems:
            return _json(400, {"error": "invalid_query", "problems": problems})
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
            body = await asyncio.to_thread(render, tenant, dict(query))
        except PeriodError as error:
            kind = "invalid_query" if error.status == 400 else "period_unavailable"
            return _json(
                error.status,
                {"error": kind, "problems": [{"field": error.field, "problem": error.problem}]},
            )
        except RedisError:
            return kpi_store_unavailable()
        if query.get("format") == "csv":
            return csv_response(to_csv(body), f"kpis-{tenant}")
        return _json(200, body)

    def render_kpis(tenant: str, query: Mapping[str, str]) -> dict[str, object]:
        if "period" in query or "from" in query:
            return render_period(reader, tenants.get(tenant), tenant, query, retention_days)
        return _render(reader, tenants, tenant, query.get("window", "today"), query.get("by"))

    def render_series_of(tenant: str, query: Mapping[str, str]) -> dict[str, object]:
        return render_series(reader, tenants.get(tenant), tenant, query, retention_days)

    async def get_kpis(request: web.Request) -> web.Response:
        problems = check_kpis_query(request.query)
        return await answer(request, problems, render_kpis, kpis_csv)

    async def get_series(request: web.Request) -> web.Response:
        problems = check_series_query(request.query)
        return await answer(request, problems, render_series_of, series_csv)

    return [web.get("/v1/kpis", get_kpis), web.get("/v1/kpis/series", get_series)]


def _render(
    reader: KpiReader, tenants: TenantDirectory, tenant: str, window: str, by: str | None
) -> dict[str, object]:
    by = by or None
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
        name: as_json(
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
    total_json = as_json(total)
    stable(total_json, groups)
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
        "total": total_json,
        "groups": groups,
    }


def _json(status: int, payload: object) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )
