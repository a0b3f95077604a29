"""The batch oracle: every KPI of docs/kpi-semantics.md recomputed from scratch.

The property test compares the stream engine against this module. It is written from the
spec alone and imports nothing that computes KPIs, so that one misreading shared by both
cannot hide a bug. Clarity over speed: each definition is computed directly from the set
of counted events, in the spec's own words where possible.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import TypeVar
from zoneinfo import ZoneInfo

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import (
    DEFAULT_LATENESS_S,
    DIMENSIONS,
    NO_VALUE,
    PERCENTILES,
    UNASSIGNED,
    WINDOWS,
)
from salespulse.core.tenants import Pipeline, TenantConfig

__all__ = [
    "TOTAL",
    "Components",
    "acquisition_costs",
    "compute_components",
    "counted_events",
    "window_bounds",
]

Components = dict[str, dict[str, int]]
# The total's key among the groups: the product's (streams/kpi_catalogue.TOTAL_GROUP),
# empty so that a team, manager or source called "total" is a group like any other.
TOTAL = ""
# A lead_created event puts the lead in this stage (leads processed).
LEAD_FIRST_STAGE = "new"

_T = TypeVar("_T")
_MONEY_STEP = Decimal("0.0001")
_MONEY_SCALE = 10_000


# --- windows -------------------------------------------------------------------------------


def window_bounds(
    window: str, now: datetime, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a window in UTC, per the spec's Windows table; (None, None) for `all`."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    hour = minute.replace(minute=0)
    day = now.astimezone(zone).date()
    if window == "15m":
        return minute - timedelta(minutes=14), minute + timedelta(minutes=1)
    if window == "1h":
        return minute - timedelta(minutes=59), minute + timedelta(minutes=1)
    if window == "24h":
        return hour - timedelta(hours=23), hour + timedelta(hours=1)
    if window == "today":
        return _local_midnight(day, zone), _local_midnight(day + timedelta(days=1), zone)
    if window == "week":
        monday = day - timedelta(days=day.weekday())
        return _local_midnight(monday, zone), _local_midnight(monday + timedelta(days=7), zone)
    if window == "month":
        first = day.replace(day=1)
        return _local_midnight(first, zone), _local_midnight(_next_month(first), zone)
    if window == "all":
        return None, None
    raise ValueError(f"unknown window {window!r}; expected one of {WINDOWS}")


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local calendar day, in UTC.

    fold=0 resolves a midnight that falls in a DST gap with the offset before the gap, which
    is exactly the instant the day starts; an ambiguous midnight gets its earlier instant.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


@dataclass(frozen=True)
class _Span:
    start: datetime | None
    end: datetime | None

    def __contains__(self, instant: datetime) -> bool:
        return (self.start is None or instant >= self.start) and (
            self.end is None or instant < self.end
        )


# --- counted events, money, durations ------------------------------------------------------


# The spec's causal ranks ("Ordering key"): what happens first at one instant.
_RANKS = {"lead_created": 0, "lead_stage_changed": 1, "deal_created": 2}


def _rank(event: CrmEvent, config: TenantConfig | None) -> int:
    if event.type in _RANKS:
        return _RANKS[event.type]
    if event.type != "deal_stage_changed":
        return 5
    kind = event.stage_kind
    if kind is None and config is not None and event.pipeline in config.pipelines:
        for stage in config.pipelines[event.pipeline].stages:
            if stage.id == event.stage_to:
                kind = stage.kind
    return 4 if kind in ("won", "lost") else 3


def _order(event: CrmEvent, config: TenantConfig | None = None) -> tuple[datetime, int, str]:
    """The spec's ordering key for "latest" and "first": instant, causal rank, id."""
    return event.occurred_at, _rank(event, config), event.event_id


def counted_events(
    events: Sequence[CrmEvent],
    tenant: str,
    lateness_s: int = DEFAULT_LATENESS_S,
    config: TenantConfig | None = None,
) -> list[CrmEvent]:
    """The tenant's counted events, sorted by the ordering key (stage kinds from config).

    A repeated (tenant, event_id) counts once, the first occurrence in `events` winning;
    then an event whose received_at - occurred_at exceeds the lateness counts nowhere.
    """
    lateness = timedelta(seconds=lateness_s)
    seen: set[str] = set()
    counted: list[CrmEvent] = []
    for event in events:
        if event.tenant != tenant or event.event_id in seen:
            continue
        seen.add(event.event_id)
        if event.received_at is not None and event.received_at - event.occurred_at > lateness:
            continue
        counted.append(event)
    return sorted(counted, key=lambda event: _order(event, config))


def _money(amount: Decimal, currency: str | None, config: TenantConfig) -> int | None:
    """An amount in 1/10,000 of the tenant currency (half-even); None when unconvertible."""
    with localcontext() as context:
        context.prec = 80
        if currency is None or currency == config.currency:
            value = amount
        else:
            rate = config.currency_rates.get(currency)
            if rate is None:
                return None
            value = amount * rate
        return int(value.quantize(_MONEY_STEP, rounding=ROUND_HALF_EVEN) * _MONEY_SCALE)


def _ms(duration: timedelta) -> int:
    """A duration in whole milliseconds, half-even (datetimes carry microseconds)."""
    return round(Fraction(duration // timedelta(microseconds=1), 1000))


def _percentile(durations: Sequence[timedelta], percent: int) -> timedelta:
    """Nearest rank, exact: the ⌈percent × n / 100⌉-th smallest duration (at least the first)."""
    ordered = sorted(durations)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1]


# --- dimensions ----------------------------------------------------------------------------

Dims = dict[str, str]


def _dims(
    manager_id: str | None,
    team: str | None,
    pipeline: str | None,
    source_channel: str | None,
    config: TenantConfig,
) -> Dims:
    configured_team = config.team_of(manager_id)
    return {
        "manager": manager_id if manager_id is not None else UNASSIGNED,
        "team": (
            configured_team
            if configured_team is not None
            else team
            if team is not None
            else NO_VALUE
        ),
        "pipeline": pipeline if pipeline is not None else NO_VALUE,
        "source": source_channel if source_channel is not None else NO_VALUE,
    }


def _event_dims(event: CrmEvent, config: TenantConfig) -> Dims:
    return _dims(event.manager_id, event.team, event.pipeline, event.source_channel, config)


def _latest(events: Sequence[CrmEvent], field: Callable[[CrmEvent], _T | None]) -> _T | None:
    """The field of the latest event (ordering key; `events` are sorted) that carries it."""
    for event in reversed(events):
        value = field(event)
        if value is not None:
            return value
    return None


def _entity_dims(events: Sequence[CrmEvent], config: TenantConfig) -> Dims:
    """A deal's or lead's dimensions: each from its latest event carrying the field."""
    return _dims(
        _latest(events, lambda e: e.manager_id),
        _latest(events, lambda e: e.team),
        _latest(events, lambda e: e.pipeline),
        _latest(events, lambda e: e.source_channel),
        config,
    )


# --- pipelines and deals -------------------------------------------------------------------


@dataclass(frozen=True)
class _Stages:
    """What the spec derives from one configured pipeline."""

    kind: dict[str, str]
    rank: dict[str, int]  # open stages 0..n-1 in listed order, every won stage n; lost: none
    steps: tuple[tuple[str, str], ...]  # consecutive ranked stages, last open → first won
    first: str | None  # the first stage of the stage order (end-to-end)
    won: frozenset[str]
    warm: str | None  # the first stage marked warm
    ready: frozenset[str]
    limit: dict[str, timedelta]


def _stages(pipeline: Pipeline) -> _Stages:
    opens = [stage.id for stage in pipeline.stages if stage.kind == "open"]
    wons = [stage.id for stage in pipeline.stages if stage.kind == "won"]
    rank = {stage: i for i, stage in enumerate(opens)} | {stage: len(opens) for stage in wons}
    ranked = opens + wons[:1]
    return _Stages(
        kind={stage.id: stage.kind for stage in pipeline.stages},
        rank=rank,
        steps=tuple(itertools.pairwise(ranked)),
        first=ranked[0] if ranked else None,
        won=frozenset(wons),
        warm=next((stage.id for stage in pipeline.stages if stage.warm), None),
        ready=frozenset(
            pipeline.ready_to_close if pipeline.ready_to_close is not None else opens[-1:]
        ),
        limit={
            stage.id: timedelta(hours=stage.limit_hours)
            for stage in pipeline.stages
            if stage.limit_hours is not None
        },
    )


@dataclass(frozen=True)
class _Deal:
    entity_id: str
    created_at: datetime | None
    entries: dict[tuple[str, str], datetime]  # (pipeline, stage) → first entry
    every_entry: list[tuple[datetime, str, str]]  # distinct (instant, pipeline, stage), sorted
    current: CrmEvent | None  # the latest stage event
    kind: str | None  # the current kind
    amount: Decimal | None
    cost: Decimal | None
    currency: str | None
    client_id: str | None
    lead_id: str | None
    lost_reason: str | None
    dims: Dims

    @property
    def since(self) -> datetime:
        assert self.current is not None  # narrowing: only asked of deals with a stage
        return self.current.occurred_at

    def reached(self, pipeline: str, stage: str, stages: _Stages) -> bool:
        """Some entry of `pipeline` ranks at or after `stage` (a lost stage: entered it)."""
        target = stages.rank.get(stage)
        if target is None:
            return (pipeline, stage) in self.entries
        return any(p == pipeline and stages.rank.get(s, -1) >= target for p, s in self.entries)


def _deals(counted: Sequence[CrmEvent], config: TenantConfig) -> list[_Deal]:
    by_entity: dict[str, list[CrmEvent]] = defaultdict(list)
    for event in counted:
        if event.type in ("deal_created", "deal_stage_changed") and event.entity_id is not None:
            by_entity[event.entity_id].append(event)
    deals = []
    for entity_id, events in sorted(by_entity.items()):
        # A deal_created with a pipeline and stage_to enters that stage too.
        stage_events = [e for e in events if e.pipeline is not None and e.stage_to is not None]
        every_entry = sorted(
            {(e.occurred_at, e.pipeline or "", e.stage_to or "") for e in stage_events}
        )
        entries: dict[tuple[str, str], datetime] = {}
        for event in stage_events:  # sorted, so the first seen is the first entry
            assert event.pipeline is not None
            assert event.stage_to is not None
            entries.setdefault((event.pipeline, event.stage_to), event.occurred_at)
        current = stage_events[-1] if stage_events else None
        kind = None
        if current is not None:
            assert current.pipeline is not None
            assert current.stage_to is not None
            configured = config.pipelines.get(current.pipeline)
            kind = current.stage_kind or (
                _stages(configured).kind.get(current.stage_to, "open") if configured else "open"
            )
        created = [e.occurred_at for e in events if e.type == "deal_created"]
        deals.append(
            _Deal(
                entity_id=entity_id,
                created_at=min(created) if created else None,
                entries=entries,
                every_entry=every_entry,
                current=current,
                kind=kind,
                amount=_latest(events, lambda e: e.amount),
                cost=_latest(events, lambda e: e.cost),
                currency=_latest(events, lambda e: e.currency),
                client_id=_latest(events, lambda e: e.client_id),
                lead_id=_latest(events, lambda e: e.lead_id),
                lost_reason=_latest(events, lambda e: e.lost_reason),
                dims=_entity_dims(events, config),
            )
        )
    return deals


# --- the result being built ----------------------------------------------------------------


class _Result:
    def __init__(self, by: str | None) -> None:
        self.by = by
        self.values: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.durations: dict[tuple[str, str, str], list[timedelta]] = defaultdict(list)
        self.distinct: dict[tuple[str, str], set[str]] = defaultdict(set)

    def groups(self, dims: Dims | None) -> list[str]:
        """`total`, plus the `by` value of these dimensions (None: a total-only component)."""
        if dims is None or self.by is None:
            return [TOTAL]
        return [TOTAL, dims[self.by]]

    def add(self, dims: Dims | None, component: str, amount: int = 1) -> None:
        for group in self.groups(dims):
            self.values[group][component] += amount

    def duration(self, dims: Dims, family: str, suffix: str, duration: timedelta) -> None:
        for group in self.groups(dims):
            self.durations[group, family, suffix].append(duration)

    def count_distinct(self, dims: Dims, component: str, item: str) -> None:
        for group in self.groups(dims):
            self.distinct[group, component].add(item)

    def components(self) -> Components:
        for (group, family, suffix), durations in self.durations.items():
            values = self.values[group]
            values[f"{family}_sum_ms{suffix}"] += sum(_ms(d) for d in durations)
            values[f"{family}_count{suffix}"] += len(durations)
            for percent in PERCENTILES:
                exact = _percentile(durations, percent)
                values[f"{family}_p{percent}_ms{suffix}"] = _ms(exact)
        for (group, component), items in self.distinct.items():
            self.values[group][component] = len(items)
        result: Components = {TOTAL: {}}
        for group, values in self.values.items():
            nonzero = {name: value for name, value in values.items() if value != 0}
            if nonzero or group == TOTAL:
                result[group] = nonzero
        return result


# --- the KPI families ----------------------------------------------------------------------


def _event_additive(
    counted: Sequence[CrmEvent], config: TenantConfig, span: _Span, out: _Result
) -> None:
    for event in counted:
        if event.occurred_at not in span:
            continue
        dims = _event_dims(event, config)
        kind = event.type
        if kind == "call":
            out.add(dims, "calls")
            if event.direction is not None:
                out.add(dims, f"calls_{event.direction}")
            if event.answered is True:
                out.add(dims, "calls_answered")
                if event.duration_s is not None:
                    out.add(dims, "talk_time_ms", round(event.duration_s * 1000))
            elif event.answered is False:
                out.add(dims, "calls_missed")
        elif kind == "meeting":
            out.add(dims, "meetings")
        elif kind == "message":
            if not event.automated and event.direction is not None:
                out.add(dims, f"messages_{event.direction}")
        elif kind == "lead_created" and event.entity_id is None:
            out.add(dims, "leads_created")  # a lead with an id is counted from its events
        elif kind == "rating":
            if event.rating is not None:
                out.add(dims, "rating_sum", event.rating)
                out.add(dims, "rating_count")
        elif kind in ("invoice", "payment", "marketing_cost"):
            money = (
                _money(event.amount, event.currency, config) if event.amount is not None else None
            )
            if money is None:
                continue
            if kind == "invoice":
                out.add(dims, "invoiced", money)
            elif kind == "payment":
                out.add(dims, "paid", money)
            elif event.source_channel is not None:
                out.add(dims, f"marketing_cost:{event.source_channel}", money)


def _closed_deals(deals: Sequence[_Deal], config: TenantConfig, span: _Span, out: _Result) -> None:
    """won, lost, reasons, revenue, margin, sales cycle, lead → customer."""
    for deal in deals:
        if deal.current is None or deal.since not in span:
            continue
        if deal.kind == "lost":
            out.add(deal.dims, "lost")
            if deal.lost_reason is not None:
                out.add(deal.dims, f"lost_by_reason:{deal.lost_reason}")
        if deal.kind != "won":
            continue
        out.add(deal.dims, "won")
        amount = None
        if deal.amount is not None:
            amount = _money(deal.amount, deal.currency, config)
            if amount is None:
                out.add(deal.dims, "unconvertible_amounts")
            else:
                out.add(deal.dims, "revenue", amount)
        if amount is not None and deal.cost is not None:
            cost = _money(deal.cost, deal.currency, config)
            if cost is not None:
                out.add(deal.dims, "margin", amount - cost)
        if deal.created_at is not None:
            out.duration(deal.dims, "cycle", "", deal.since - deal.created_at)
        if deal.lead_id is not None:
            out.count_distinct(deal.dims, "lead_customers", deal.lead_id)


def _funnel(deals: Sequence[_Deal], config: TenantConfig, span: _Span, out: _Result) -> None:
    """Cohort steps, end to end, cold → warm, time in stage."""
    stages = {name: _stages(pipeline) for name, pipeline in config.pipelines.items()}
    for deal in deals:
        if deal.created_at is not None and deal.created_at in span:
            out.add(deal.dims, "deals_created")
        for instant, name, stage in deal.every_entry:
            if instant not in span:
                continue
            out.add(deal.dims, f"stage_entries:{name}:{stage}")
            pipe_or_none = stages.get(name)
            if pipe_or_none is None:
                continue
            after = [(t, p, s) for t, p, s in deal.every_entry if t > instant]
            following = [(p, s) for t, p, s in after if t == after[0][0]] if after else []
            for a, b in pipe_or_none.steps:
                if a == stage and any(
                    p == name and pipe_or_none.rank.get(s, -1) >= pipe_or_none.rank[b]
                    for p, s in following
                ):
                    out.add(deal.dims, f"flow_num:{name}:{a}")
            if stage == pipe_or_none.first and any(
                p == name and s in pipe_or_none.won for _, p, s in after
            ):
                out.add(deal.dims, f"flow_e2e_num:{name}")
        for name, pipe in stages.items():
            for a, b in pipe.steps:
                entered = deal.entries.get((name, a))
                if entered is not None and entered in span:
                    out.add(deal.dims, f"cohort_den:{name}:{a}")
                    if deal.reached(name, b, pipe):
                        out.add(deal.dims, f"cohort_num:{name}:{a}")
            if pipe.first is not None:
                entered = deal.entries.get((name, pipe.first))
                if entered is not None and entered in span:
                    out.add(deal.dims, f"e2e_den:{name}")
                    if any((name, won) in deal.entries for won in pipe.won):
                        out.add(deal.dims, f"e2e_num:{name}")
        if deal.created_at is not None and deal.created_at in span:
            # current.pipeline; a deal without a stage event yet: its pipeline dimension.
            pipeline = deal.current.pipeline if deal.current is not None else None
            name = pipeline if pipeline is not None else deal.dims["pipeline"]
            out.add(deal.dims, f"warm_den:{name}")
            pipe_or_none = stages.get(name)
            if (
                pipe_or_none is not None
                and pipe_or_none.warm is not None
                and deal.reached(name, pipe_or_none.warm, pipe_or_none)
            ):
                out.add(deal.dims, f"warm_num:{name}")
        for (pipeline_name, stage), entered in deal.entries.items():
            later = [t for t in deal.entries.values() if t > entered]
            if later and min(later) in span:
                out.duration(deal.dims, "stay", f":{pipeline_name}:{stage}", min(later) - entered)


def _leads_processed(
    counted: Sequence[CrmEvent], config: TenantConfig, span: _Span, out: _Result
) -> None:
    by_lead: dict[str, list[CrmEvent]] = defaultdict(list)
    for event in counted:
        if event.type in ("lead_created", "lead_stage_changed") and event.entity_id is not None:
            by_lead[event.entity_id].append(event)
    for events in by_lead.values():
        created = [e.occurred_at for e in events if e.type == "lead_created"]
        if created and min(created) in span:
            out.add(_entity_dims(events, config), "leads_created")
        first = events[0]
        first_stage = LEAD_FIRST_STAGE if first.type == "lead_created" else first.stage_to
        left = next(
            (
                e
                for e in events
                if e.type == "lead_stage_changed"
                and e.stage_to is not None
                and e.stage_to != first_stage
            ),
            None,
        )
        if left is not None and left.occurred_at in span:
            out.add(_entity_dims(events, config), "leads_processed")


def _clients(
    deals: Sequence[_Deal], config: TenantConfig, span: _Span, everything: bool, out: _Result
) -> None:
    """Repeat sales, purchase frequency, new clients, and in `all` CLV and ABC."""
    won = sorted(
        (d for d in deals if d.kind == "won" and d.client_id is not None),
        key=lambda d: (d.since, d.entity_id),
    )
    first_deal: dict[str, _Deal] = {}
    clients_in_window: set[str] = set()
    revenue_of: dict[str, int] = defaultdict(int)
    for deal in won:
        assert deal.client_id is not None
        repeat = deal.client_id in first_deal
        first_deal.setdefault(deal.client_id, deal)
        amount = _money(deal.amount, deal.currency, config) if deal.amount is not None else None
        revenue_of[deal.client_id] += amount or 0
        if deal.since in span:
            out.add(None, "client_deals")
            clients_in_window.add(deal.client_id)
            if repeat:
                out.add(None, "repeat_count")
                out.add(None, "repeat_revenue", amount or 0)
    out.add(None, "client_distinct", len(clients_in_window))
    for deal in first_deal.values():
        if deal.since in span:
            out.add(None, f"new_clients:{deal.dims['source']}")
    if not everything:
        return
    out.add(None, "clv_revenue", sum(revenue_of.values()))
    out.add(None, "clv_clients", len(revenue_of))
    total = sum(revenue_of.values())
    cumulative = 0
    abc = "A"
    for _client, revenue in sorted(revenue_of.items(), key=lambda item: (-item[1], item[0])):
        if abc == "A" and cumulative * 100 >= 80 * total:
            abc = "B"
        if abc == "B" and cumulative * 100 >= 95 * total:
            abc = "C"
        out.add(None, f"abc_count:{abc}")
        out.add(None, f"abc_revenue:{abc}", revenue)
        cumulative += revenue


def _live(deals: Sequence[_Deal], config: TenantConfig, now: datetime, out: _Result) -> None:
    for deal in deals:
        if deal.current is None or deal.kind != "open":
            continue
        pipeline, stage = deal.current.pipeline, deal.current.stage_to
        assert pipeline is not None
        assert stage is not None
        out.add(None, f"open:{pipeline}:{stage}")
        configured = config.pipelines.get(pipeline)
        if configured is None:
            continue
        pipe = _stages(configured)
        if stage in pipe.ready:
            out.add(None, f"ready:{pipeline}:{stage}")
        limit = pipe.limit.get(stage)
        if limit is not None and now - deal.since > limit:
            out.add(None, f"stuck:{pipeline}:{stage}")


# --- public --------------------------------------------------------------------------------


def compute_components(
    events: Sequence[CrmEvent],
    config: TenantConfig,
    tenant: str,
    window: str,
    by: str | None,
    now: datetime,
    lateness_s: int = DEFAULT_LATENESS_S,
) -> dict[str, dict[str, int]]:
    """The spec's comparable form {group: {component: int}} for one (tenant, window, by, now)."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"unknown dimension {by!r}; expected one of {DIMENSIONS}")
    span = _Span(*window_bounds(window, now, config.zone))
    counted = counted_events(events, tenant, lateness_s, config)
    deals = _deals(counted, config)
    out = span_components(counted, deals, config, span, by, all_time=window == "all")
    _live(deals, config, now, out)
    return out.components()


def span_components(
    counted: Sequence[CrmEvent],
    deals: Sequence[_Deal],
    config: TenantConfig,
    span: _Span,
    by: str | None,
    *,
    all_time: bool,
) -> _Result:
    """Every component counted in a span (a window, or a period's days); no live ones."""
    out = _Result(by)
    _event_additive(counted, config, span, out)
    _closed_deals(deals, config, span, out)
    _funnel(deals, config, span, out)
    _leads_processed(counted, config, span, out)
    _clients(deals, config, span, all_time, out)
    return out


def acquisition_costs(
    events: Sequence[CrmEvent],
    config: TenantConfig,
    tenant: str,
    window: str,
    now: datetime,
    lateness_s: int = DEFAULT_LATENESS_S,
) -> dict[str, int]:
    """cost(Q) of CAC and ROMI per source, in 1/10,000 of the tenant currency (non-zero only).

    Configured monthly costs spread evenly over their month's seconds (tenant zone), summed
    over the window's overlap with each month (`all`: every month in full), plus the
    window's marketing_cost events. The comparable form has no component for this.
    """
    start, end = window_bounds(window, now, config.zone)
    zone = config.zone
    costs: dict[str, int] = defaultdict(int)
    for source, months in config.marketing_costs.items():
        for month, cost in months.items():
            first = date(int(month[:4]), int(month[5:7]), 1)
            month_start = _local_midnight(first, zone)
            month_end = _local_midnight(_next_month(first), zone)
            overlap_start = month_start if start is None else max(start, month_start)
            overlap_end = month_end if end is None else min(end, month_end)
            if overlap_end <= overlap_start:
                continue
            share = Fraction(cost) * Fraction(
                (overlap_end - overlap_start) // timedelta(microseconds=1),
                (month_end - month_start) // timedelta(microseconds=1),
            )
            costs[source] += round(share * _MONEY_SCALE)
    span = _Span(start, end)
    for event in counted_events(events, tenant, lateness_s):
        if (
            event.type == "marketing_cost"
            and event.occurred_at in span
            and event.amount is not None
            and event.source_channel is not None
        ):
            money = _money(event.amount, event.currency, config)
            if money is not None:
                costs[event.source_channel] += money
    return {source: cost for source, cost in costs.items() if cost != 0}
