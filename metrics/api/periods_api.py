"""`GET /v1/kpis` over a period, with comparisons; `GET /v1/kpis/series`
(docs/kpi-semantics.md, "Periods").

A period is a run of whole local days (salespulse/core/kpi/periods.py), read from its day
buckets (or month buckets past the day retention): the same exact sums as the windows.
Runs in a worker thread (the reader is synchronous).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from metrics.read.kpi_reader import KpiReader, TenantState
from metrics.read.kpi_value import Kpi, ratio
from metrics.views.kpi_json import COUNTS, as_json, stable
from metrics.views.kpi_view import MONEY, present
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.periods import (
    Period,
    PeriodError,
    between,
    bucket_plan,
    compared,
    named,
    prorated,
    step_count,
    steps,
    to_date,
)
from salespulse.core.staff import display_name
from salespulse.core.tenants import TenantConfig

MAX_POINTS: Final = 400
# Snapshot KPIs: answered at the period's end, not summed over it.
_SNAPSHOT_HEADS: Final = ("open:", "ready:", "stuck:")


@dataclass(frozen=True)
class Read:
    """One period's answer: its KPIs as JSON and where they came from."""

    period: Period
    granularity: str
    total: dict[str, object]
    groups: dict[str, dict[str, object]]
    snapshot_day: date | None


def resolve(query: Mapping[str, str], today: date) -> Period:
    if "period" in query:
        return named(query["period"], today)
    return between(query["from"], query["to"])


def describe(read: Read, name: str | None) -> dict[str, object]:
    return {
        "name": name,
        "from": read.period.first.isoformat(),
        "to": read.period.last.isoformat(),
        "days": read.period.days,
        "buckets": "day" if read.granularity == "d" else "month",
        "snapshot_day": read.snapshot_day.isoformat() if read.snapshot_day else None,
    }


def read_period(
    reader: KpiReader,
    config: TenantConfig,
    tenant: str,
    period: Period,
    by: str | None,
    *,
    shared: TenantState,
    now: datetime,
    retention_days: int,
    snapshots: bool = True,
) -> Read:
    today = now.astimezone(config.zone).date()
    plan = bucket_plan(period, today, retention_days)
    snapshot = reader.bucket_snapshot(tenant, plan.granularity, plan.buckets, by, shared, now)
    snapshot_day: date | None = None
    at_end: dict[str, int] = {}
    if snapshots:
        if period.last >= today:
            snapshot_day, at_end = today, reader.live_counts(tenant, now)
        else:
            snapshot_day, at_end = reader.day_snapshot(
                tenant, period.last, today - timedelta(days=1)
            )
    total_group = dict(snapshot.groups[TOTAL_GROUP])
    total_group.update({k: v for k, v in at_end.items() if k.startswith(_SNAPSHOT_HEADS)})
    span = (period.start(config.zone), period.end(config.zone))
    total_kpis = present(
        total_group,
        config,
        "period",
        now,
        revenue_by_source=snapshot.revenue_by_source,
        span=span,
    )
    total_kpis.append(Kpi("waiting", float(at_end.get("waiting", 0)) if snapshots else None))
    target_kind = {"manager": "managers", "team": "teams"}.get(by or "")
    groups: dict[str, dict[str, object]] = {}
    for name, group in sorted(snapshot.groups.items()):
        if name == TOTAL_GROUP:
            continue
        kpis = present(group, config, "period", now, span=span)
        if target_kind:
            kpis += period_plan(group, config, target_kind, name, period)
        groups[name] = as_json(kpis)
    total = as_json(total_kpis)
    stable(total, groups)
    if target_kind:  # plan KPIs are the groups' (a tenant has no target of its own)
        for name in ("plan_target", "plan_attainment"):
            total.pop(name, None)
    if by == "manager":  # staff names only: the other dimensions are ids of teams, sources…
        names = reader.staff_reader().names(tenant)
        for manager, row in groups.items():
            row["name"] = display_name(names, manager)
    return Read(period, plan.granularity, total, groups, snapshot_day)


def period_plan(
    group: dict[str, int], config: TenantConfig, kind: str, name: str, period: Period
) -> list[Kpi]:
    """Plan attainment over a period: monthly targets prorated by days (periods.prorated)."""
    targets = config.targets.managers if kind == "managers" else config.targets.teams
    goal = targets.get(name)
    if goal is None:
        return []
    kpis: list[Kpi] = []
    for metric, actual, planned in (
        ("revenue", group.get("revenue", 0) / MONEY, goal.revenue),
        ("deals_won", float(group.get("won", 0)), goal.deals_won),
    ):
        if planned is None:
            continue
        target = prorated(float(planned), period)
        labels = (("target", metric),)
        kpis += [
            Kpi("plan_target", target, labels),
            ratio("plan_attainment", actual, target, labels),
        ]
    return kpis


def render_period(
    reader: KpiReader,
    config: TenantConfig,
    tenant: str,
    query: Mapping[str, str],
    retention_days: int,
) -> dict[str, object]:
    now = reader.now()
    today = now.astimezone(config.zone).date()
    period = resolve(query, today)
    by = query.get("by") or None
    how = query.get("compare")
    other = compared(period, how) if how else None
    if other is not None and query.get("to_date") == "true":
        period, other = to_date(period, other, today)
    shared = reader.tenant_state(tenant, now)
    main = read_period(
        reader, config, tenant, period, by, shared=shared, now=now, retention_days=retention_days
    )
    body: dict[str, object] = {
        "tenant": tenant,
        "period": describe(main, query.get("period")),
        "by": by,
        "at": now.isoformat(),
        "currency": config.currency,
        "total": main.total,
        "groups": main.groups,
    }
    if other is not None and how is not None:
        before = read_period(
            reader, config, tenant, other, by, shared=shared, now=now, retention_days=retention_days
        )
        body["compare"] = {
            "with": how,
            "to_date": query.get("to_date") == "true",
            "period": describe(before, None),
            "total": before.total,
            "groups": before.groups,
        }
        body["change"] = {
            "total": changes(main.total, before.total),
            "groups": {
                name: changes(main.groups.get(name, {}), before.groups.get(name, {}))
                for name in sorted(set(main.groups) | set(before.groups))
            },
        }
    return body


def _scalar(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("value")
    return float(value) if isinstance(value, int | float) else None


def changes(now: Mapping[str, object], before: Mapping[str, object]) -> dict[str, object]:
    """Per unlabelled KPI: this period's value, the other's, and the change between them
    (absolute; relative to the other, null when the other is 0 or null)."""
    out: dict[str, object] = {}
    for name in sorted(set(now) | set(before)):
        if isinstance(now.get(name), list) or isinstance(before.get(name), list):
            continue  # labelled KPIs: compare their entries in "compare"
        if name == "name":
            continue  # a manager's display name, not a KPI
        value, other = _scalar(now.get(name)), _scalar(before.get(name))
        absolute = value - other if value is not None and other is not None else None
        if absolute is not None and name in COUNTS and absolute.is_integer():
            absolute = int(absolute)
        out[name] = {
            "value": value,
            "other": other,
            "absolute": absolute,
            "relative": absolute / other if absolute is not None and other else None,
        }
    return out


def series_kpis(config: TenantConfig, now: datetime) -> list[str]:
    """The KPIs a series can chart: every unlabelled one (a number or a ratio)."""
    return [kpi.name for kpi in present({}, config, "period", now) if not kpi.labels]


def render_series(
    reader: KpiReader,
    config: TenantConfig,
    tenant: str,
    query: Mapping[str, str],
    retention_days: int,
) -> dict[str, object]:
    now = reader.now()
    known = series_kpis(config, now)
    wanted = [name.strip() for name in query["kpi"].split(",")]
    unknown = [name for name in wanted if name not in known]
    if unknown or not all(wanted):
        raise PeriodError(
            "kpi", f"unknown KPI {', '.join(unknown) or '(empty)'}; known: {', '.join(known)}"
        )
    period = between(query["from"], query["to"])
    step = query["step"]
    count = step_count(period, step)
    if count > MAX_POINTS:
        raise PeriodError(
            "step",
            f"{count} points; at most {MAX_POINTS} per series: a longer step or a shorter range",
        )
    cuts = steps(period, step)
    by = query.get("by") or None
    shared = reader.tenant_state(tenant, now)
    points = []
    for cut in cuts:
        read = read_period(
            reader, config, tenant, cut, by, shared=shared, now=now,
            retention_days=retention_days, snapshots=False,
        )  # fmt: skip
        points.append(
            {
                "from": cut.first.isoformat(),
                "to": cut.last.isoformat(),
                "total": {name: read.total.get(name) for name in wanted},
                "groups": {
                    group: {name: values.get(name) for name in wanted}
                    for group, values in read.groups.items()
                },
            }
        )
    return {
        "tenant": tenant,
        "kpi": wanted,
        "step": step,
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "by": by,
        "at": now.isoformat(),
        "currency": config.currency,
        "points": points,
    }
