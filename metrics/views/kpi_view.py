"""Components → the KPIs people read: base units, ratios with their parts. Pure.

Used by the JSON API (``GET /v1/kpis``) and the Prometheus collector, so both always
show the same numbers (docs/kpi-semantics.md defines each one).
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from metrics.read.kpi_value import Kpi, ratio, seconds
from metrics.views.response_view import response_kpis
from salespulse.core.kpi.buckets import US_PER_HOUR, US_PER_MINUTE, from_us, to_us
from salespulse.core.kpi.redis_layout import MONEY_SCALE
from salespulse.core.tenants import TenantConfig

MONEY = MONEY_SCALE  # money components are stored in 1/MONEY_SCALE of the tenant currency
_ratio = ratio


def window_range(window: str, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """[start, end) of a window (None for `all`), per docs/kpi-semantics.md."""
    us = to_us(now)
    if window in ("15m", "1h"):
        minute = us // US_PER_MINUTE
        back = 14 if window == "15m" else 59
        return from_us((minute - back) * US_PER_MINUTE), from_us((minute + 1) * US_PER_MINUTE)
    if window == "24h":
        hour = us // US_PER_HOUR
        return from_us((hour - 23) * US_PER_HOUR), from_us((hour + 1) * US_PER_HOUR)
    if window == "all":
        return None
    day = now.astimezone(zone).date()
    if window == "week":
        day -= timedelta(days=day.weekday())
        length = 7
    elif window == "month":
        length = calendar.monthrange(day.year, day.month)[1]
        day = day.replace(day=1)
    else:
        length = 1
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end_day = day + timedelta(days=length)
    return start, datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone)


def configured_cost(
    config: TenantConfig, source: str, span: tuple[datetime, datetime] | None
) -> Decimal:
    """Configured monthly costs spread evenly over their month, within the span."""
    total = Decimal(0)
    zone = config.zone
    for month, cost in config.marketing_costs.get(source, {}).items():
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=zone)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
        if span is None:
            total += cost
            continue
        overlap = (min(end, span[1]) - max(start, span[0])).total_seconds()
        if overlap > 0:
            total += cost * Decimal(overlap) / Decimal((end - start).total_seconds())
    return total


def present(
    group: dict[str, int],
    config: TenantConfig,
    window: str,
    now: datetime,
    *,
    revenue_by_source: dict[str, int] | None = None,
    target: tuple[str, str] | None = None,
) -> list[Kpi]:
    """Every KPI of one group. ``target``: ("managers"|"teams", name) for plan attainment."""
    get = group.get
    kpis: list[Kpi] = [
        Kpi(name, float(get(name, 0)))
        for name in ("calls", "calls_in", "calls_out", "calls_answered", "calls_missed",
                     "calls_abandoned", "meetings", "messages_in", "messages_out", "leads_created",
                     "deals_created", "leads_processed", "won", "lost")
    ]  # fmt: skip
    kpis += [
        Kpi("talk_time_seconds", get("talk_time_ms", 0) / 1000),
        # the call centre's average handle time (talk time per answered call)
        _ratio("talk_time_avg_seconds", get("talk_time_ms", 0) / 1000, get("calls_answered", 0)),
        _ratio("abandonment_rate", get("calls_abandoned", 0), get("calls_in", 0)),
        Kpi("revenue", get("revenue", 0) / MONEY),
        _ratio("average_check", get("revenue", 0) / MONEY,
               get("won", 0) - get("unconvertible_amounts", 0)),
        Kpi("margin", get("margin", 0) / MONEY),
        _ratio("win_rate", get("won", 0), get("won", 0) + get("lost", 0)),
        _ratio("sales_cycle_avg_seconds", get("cycle_sum_ms", 0) / 1000, get("cycle_count", 0)),
        seconds("sales_cycle_median_seconds", group.get("cycle_p50_ms")),
        seconds("sales_cycle_p90_seconds", group.get("cycle_p90_ms")),
        _ratio("rating_avg", get("rating_sum", 0), get("rating_count", 0)),
        _ratio("lead_to_customer", get("lead_customers", 0), get("leads_created", 0)),
        Kpi("invoiced", get("invoiced", 0) / MONEY),
        Kpi("paid", get("paid", 0) / MONEY),
    ]  # fmt: skip
    if window == "all":
        kpis.append(Kpi("receivables", (get("invoiced", 0) - get("paid", 0)) / MONEY))
    kpis += _funnel(group, config)
    kpis += _clients_and_marketing(group, config, window, now, revenue_by_source or {})
    kpis += _parameterised(group)
    kpis += response_kpis(group)
    if target is not None and window == "month":
        kpis += _plan(group, config, target, now)
    return kpis


def present_group(
    group: dict[str, int],
    config: TenantConfig,
    window: str,
    now: datetime,
    *,
    target: tuple[str, str] | None = None,
) -> list[Kpi]:
    """What a team or manager series shows: the leaderboard's activity, results and plan.

    A subset on purpose: per-manager series dominate the series count (and scrape time);
    the JSON API has every KPI per manager.
    """
    get = group.get
    kpis = [
        Kpi(name, float(get(name, 0)))
        for name in ("calls", "meetings", "messages_out", "deals_created", "won")
    ]  # fmt: skip
    kpis += [
        Kpi("talk_time_seconds", get("talk_time_ms", 0) / 1000),
        Kpi("revenue", get("revenue", 0) / MONEY),
        _ratio("average_check", get("revenue", 0) / MONEY,
               get("won", 0) - get("unconvertible_amounts", 0)),
        _ratio("win_rate", get("won", 0), get("won", 0) + get("lost", 0)),
    ]  # fmt: skip
    if target is not None and window == "month":
        kpis += _plan(group, config, target, now)
    return kpis


def _funnel(group: dict[str, int], config: TenantConfig) -> list[Kpi]:
    kpis: list[Kpi] = []
    for pipeline_id, pipeline in config.pipelines.items():
        opens = [s.id for s in pipeline.stages if s.kind == "open"]
        wons = [s.id for s in pipeline.stages if s.kind == "won"]
        chain = opens + wons[:1]
        steps: list[Kpi] = []
        for stage_a, stage_b in pairwise(chain):
            labels = (("pipeline", pipeline_id), ("from_stage", stage_a), ("to_stage", stage_b))
            steps.append(
                _ratio(
                    "conversion_cohort",
                    group.get(f"cohort_num:{pipeline_id}:{stage_a}", 0),
                    group.get(f"cohort_den:{pipeline_id}:{stage_a}", 0),
                    labels,
                )
            )
            # Of the entries into A, those whose next move reached B or later: never
            # above 1, even for deals already mid-funnel when the CRM was connected.
            kpis.append(
                _ratio(
                    "conversion_flow",
                    group.get(f"flow_num:{pipeline_id}:{stage_a}", 0),
                    group.get(f"stage_entries:{pipeline_id}:{stage_a}", 0),
                    labels,
                )
            )
        kpis += steps
        open_steps = [step for step in steps if step.denominator]
        if open_steps:
            worst = min(open_steps, key=lambda step: step.value or 0.0)
            kpis.append(
                Kpi("bottleneck", worst.value, worst.labels, worst.numerator, worst.denominator)
            )
        labels_p = (("pipeline", pipeline_id),)
        first = chain[0] if chain else pipeline.stages[0].id
        kpis += [
            _ratio("end_to_end_cohort", group.get(f"e2e_num:{pipeline_id}", 0),
                   group.get(f"e2e_den:{pipeline_id}", 0), labels_p),
            _ratio("end_to_end_flow", group.get(f"flow_e2e_num:{pipeline_id}", 0),
                   group.get(f"stage_entries:{pipeline_id}:{first}", 0), labels_p),
            _ratio("cold_to_warm", group.get(f"warm_num:{pipeline_id}", 0),
                   group.get(f"warm_den:{pipeline_id}", 0), labels_p),
        ]  # fmt: skip
    return kpis


def _parameterised(group: dict[str, int]) -> list[Kpi]:
    """Components with parameters in their names: stage entries, stays, live, reasons."""
    kpis: list[Kpi] = []
    stays: dict[tuple[str, str], dict[str, int]] = {}
    for name, amount in sorted(group.items()):
        head, _, rest = name.partition(":")
        if head in ("stage_entries", "open", "ready", "stuck"):
            pipeline, _, stage = rest.partition(":")
            metric = {"open": "open_deals", "ready": "ready_to_close", "stuck": "stuck_deals"}
            kpis.append(
                Kpi(
                    metric.get(head, head),
                    float(amount),
                    (("pipeline", pipeline), ("stage", stage)),
                )
            )
        elif head in ("stay_sum_ms", "stay_count", "stay_p50_ms", "stay_p90_ms"):
            pipeline, _, stage = rest.partition(":")
            stays.setdefault((pipeline, stage), {})[head] = amount
        elif head == "lost_by_reason":
            kpis.append(Kpi("lost_by_reason", float(amount), (("reason", rest),)))
    for (pipeline, stage), parts in stays.items():
        labels = (("pipeline", pipeline), ("stage", stage))
        kpis.append(
            _ratio(
                "time_in_stage_avg_seconds",
                parts.get("stay_sum_ms", 0) / 1000,
                parts.get("stay_count", 0),
                labels,
            )
        )
        for shown, part in (("median", "stay_p50_ms"), ("p90", "stay_p90_ms")):
            if part in parts:
                kpis.append(seconds(f"time_in_stage_{shown}_seconds", parts[part], labels))
    return kpis


def _clients_and_marketing(
    group: dict[str, int],
    config: TenantConfig,
    window: str,
    now: datetime,
    revenue_by_source: dict[str, int],
) -> list[Kpi]:
    get = group.get
    kpis = [
        Kpi("repeat_sales", float(get("repeat_count", 0))),
        Kpi("repeat_sales_revenue", get("repeat_revenue", 0) / MONEY),
        _ratio("repeat_sales_share", get("repeat_count", 0), get("client_deals", 0)),
        _ratio("purchase_frequency", get("client_deals", 0), get("client_distinct", 0)),
    ]
    if window == "all":
        kpis.append(_ratio("clv_avg", get("clv_revenue", 0) / MONEY, get("clv_clients", 0)))
        for label in "ABC":
            labels = (("class", label),)
            kpis.append(Kpi("abc_clients", float(get(f"abc_count:{label}", 0)), labels))
            kpis.append(Kpi("abc_revenue", get(f"abc_revenue:{label}", 0) / MONEY, labels))
    span = window_range(window, now, config.zone)
    sources = set(config.marketing_costs)
    sources |= {
        name.split(":", 1)[1]
        for name in group
        if name.startswith(("new_clients:", "marketing_cost:"))
    }
    for source in sorted(sources):
        labels = (("source", source),)
        cost = (
            float(configured_cost(config, source, span))
            + get(f"marketing_cost:{source}", 0) / MONEY
        )
        new_clients = get(f"new_clients:{source}", 0)
        kpis += [
            Kpi("marketing_cost", cost, labels),
            Kpi("new_clients", float(new_clients), labels),
            _ratio("cac", cost, new_clients, labels),
        ]
        if source in revenue_by_source or cost:
            revenue = revenue_by_source.get(source, 0) / MONEY
            kpis.append(_ratio("romi", revenue - cost, cost, labels))
    return kpis


def _plan(
    group: dict[str, int], config: TenantConfig, target: tuple[str, str], now: datetime
) -> list[Kpi]:
    kind, name = target
    targets = config.targets.managers if kind == "managers" else config.targets.teams
    goal = targets.get(name)
    if goal is None:
        return []
    span = window_range("month", now, config.zone)
    assert span is not None  # narrowing: month always has a range
    elapsed = (now - span[0]).total_seconds() / (span[1] - span[0]).total_seconds()
    kpis: list[Kpi] = []
    for metric, actual, planned in (
        ("revenue", group.get("revenue", 0) / MONEY, goal.revenue),
        ("deals_won", float(group.get("won", 0)), goal.deals_won),
    ):
        if planned is None:
            continue
        plan = float(planned)
        labels = (("target", metric),)
        kpis += [
            Kpi("plan_target", plan, labels),
            Kpi("plan_pace", plan * elapsed, labels),
            _ratio("plan_attainment", actual, plan, labels),
            _ratio("plan_attainment_vs_pace", actual, plan * elapsed, labels),
        ]
    return kpis
