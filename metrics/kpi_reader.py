"""Read KPI components from Redis for one tenant, window and grouping.

The result is the comparable form of docs/kpi-semantics.md: {group: {component: int}}.
Ratios, averages and percentiles are derived from it by metrics/kpi_view.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import redis

from metrics.waiting import WaitingReader
from salespulse.kpi_keys import SEP, KpiKeys, decode_field
from salespulse.tenants import TenantConfig, TenantDirectory
from streams.buckets import GRANULARITIES, US_PER_MINUTE, BucketNamer, to_us, window_buckets
from streams.kpi_catalogue import DIMENSIONS, DURATION_BUCKETS_S

Groups = dict[str, dict[str, int]]
RawSums = dict[tuple[str, tuple[str, ...]], int]

_DIRECTION_OUTCOME = {
    ("in", "answered"): ("calls_in", "calls_answered"),
    ("in", "missed"): ("calls_in", "calls_missed"),
    ("out", "answered"): ("calls_out", "calls_answered"),
    ("out", "missed"): ("calls_out", "calls_missed"),
}


@dataclass(frozen=True)
class TenantState:
    won: WonDeals
    live: dict[str, int]


@dataclass(frozen=True)
class Snapshot:
    groups: Groups
    revenue_by_source: dict[str, int]
    now: datetime


class KpiReader:
    """Synchronous (runs in a worker thread next to the exposition and the API)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KpiKeys,
        tenants: TenantDirectory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._tenants = tenants
        self._clock = clock
        self._fields: dict[bytes, tuple[str, tuple[str, ...]]] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def waiting_reader(self) -> WaitingReader:
        """The live waiting list, read from the same Redis."""
        return WaitingReader(self._client, self._keys, self._tenants)

    def tenants(self) -> list[str]:
        members = self._client.smembers(self._keys.tenants)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def raw(self, tenant: str, window: str, now: datetime) -> RawSums:
        """Sum of every stored field over the window's buckets."""
        granularity, buckets = window_buckets(window, now, self._tenants.zone_for(tenant))
        pipe = self._client.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(self._keys.bucket(tenant, granularity, bucket))
        sums: RawSums = {}
        for reply in pipe.execute():
            for raw_field, raw_value in reply.items():
                parsed = self._fields.get(raw_field)
                if parsed is None:
                    if len(self._fields) > 200_000:
                        self._fields.clear()
                    parts = decode_field(raw_field)
                    parsed = self._fields[raw_field] = (parts[0], tuple(parts[1:]))
                sums[parsed] = sums.get(parsed, 0) + int(raw_value)
        return sums

    def components(
        self, tenant: str, window: str, by: str | None, now: datetime | None = None
    ) -> Groups:
        """The comparable form: stored sums + client KPIs + live KPIs."""
        return self.snapshot(tenant, window, by, now).groups

    def snapshot(
        self,
        tenant: str,
        window: str,
        by: str | None,
        now: datetime | None = None,
        *,
        sums: RawSums | None = None,
        shared: TenantState | None = None,
    ) -> Snapshot:
        """Components, plus what the view needs beyond them (revenue per source).

        ``sums`` (this window's raw sums) and ``shared`` (won deals and live counts) let
        a caller that reads several windows or groupings read each only once.
        """
        now = now or self.now()
        if sums is None:
            sums = self.raw(tenant, window, now)
        if shared is None:
            shared = self.tenant_state(tenant, now)
        revenue_by_source: dict[str, int] = {}
        for (component, dims), amount in sums.items():
            if component == "revenue":
                revenue_by_source[dims[3]] = revenue_by_source.get(dims[3], 0) + amount
        groups = group_components(sums, by)
        granularity, buckets = window_buckets(window, now, self._tenants.zone_for(tenant))
        client_components(groups, shared.won, by, window, granularity, buckets)
        groups["total"].update(shared.live)
        drop_zeros(groups)
        return Snapshot(groups, revenue_by_source, now)

    def tenant_state(self, tenant: str, now: datetime) -> TenantState:
        """What does not depend on the window: won-deal records and live counts."""
        won = self._client.hgetall(self._keys.won(tenant))
        live: dict[str, int] = {}
        self._live(live, tenant, self._tenants.get(tenant), now)
        records = [_won_record(deal, record) for deal, record in won.items()]
        namer = BucketNamer(self._tenants.zone_for(tenant))
        return TenantState(prepare_won(records, namer), live)

    def _live(
        self, total: dict[str, int], tenant: str, config: TenantConfig, now: datetime
    ) -> None:
        stage_keys = sorted(
            (m.decode() if isinstance(m, bytes) else str(m))
            for m in self._client.smembers(self._keys.open_keys(tenant))
        )
        if not stage_keys:
            return
        now_us = to_us(now)
        pipe = self._client.pipeline(transaction=False)
        plan: list[tuple[str, str, str]] = []
        for stage_key in stage_keys:
            pipeline, stage = stage_key.split(SEP, 1)
            key = self._keys.open_stage(tenant, pipeline, stage)
            pipe.zcard(key)
            plan.append(("open", pipeline, stage))
            configured = config.pipelines.get(pipeline)
            if configured is None:
                continue
            ready = configured.ready_stages()
            if stage in ready:
                pipe.zcard(key)
                plan.append(("ready", pipeline, stage))
            limit = configured.limit_hours_of(stage)
            if limit is not None:
                cutoff = now_us - round(limit * 3_600_000_000)
                pipe.zcount(key, "-inf", f"({cutoff}")
                plan.append(("stuck", pipeline, stage))
        for (name, pipeline, stage), count in zip(plan, pipe.execute(), strict=True):
            if count:
                total[f"{name}:{pipeline}:{stage}"] = int(count)


def drop_zeros(groups: Groups) -> None:
    """Zero components are omitted, and so are groups left empty (not the total)."""
    for name in list(groups):
        group = groups[name]
        for component in [c for c, v in group.items() if v == 0]:
            del group[component]
        if not group and name != "total":
            del groups[name]


# component → (the names it adds to, or None for a histogram bucket; the histogram's
# head; the bucket): components repeat across windows, groups and scrapes, so each is
# parsed once (the scrape of a 200-manager office folds ~50,000 stored sums).
_Route = tuple[tuple[str, ...] | None, str, int]
_ROUTES: dict[str, _Route] = {}


def _route(component: str) -> _Route:
    route = _ROUTES.get(component)
    if route is None:
        if component.startswith("calls:"):
            _, direction, outcome = component.split(":")
            route = ("calls", *_DIRECTION_OUTCOME[(direction, outcome)]), "", 0
        elif component.startswith(("cycle_hist:", "stay_hist:")):
            head, _, bucket = component.rpartition(":")
            route = None, head, int(bucket)
        else:
            route = (component,), "", 0
        if len(_ROUTES) < 100_000:  # names come from events: keep a flood out
            _ROUTES[component] = route
    return route


def group_components(sums: RawSums, by: str | None) -> Groups:
    """Fold stored sums into groups; derive call marginals and p90s. Pure."""
    index = DIMENSIONS.index(by) if by else None
    total: dict[str, int] = {}
    groups: Groups = {"total": total}
    hists: dict[tuple[str, str], dict[int, int]] = {}
    for (component, dims), amount in sums.items():
        names, head, bucket = _ROUTES.get(component) or _route(component)
        if index is None:
            targets: tuple[tuple[str, dict[str, int]], ...] = (("total", total),)
        else:
            group_name = dims[index]
            group = groups.get(group_name)
            if group is None:
                group = groups[group_name] = {}
            targets = (("total", total), (group_name, group))
        for group_name, group in targets:
            if names is None:
                hist = hists.setdefault((group_name, head), {})
                hist[bucket] = hist.get(bucket, 0) + amount
                continue
            for name in names:
                group[name] = group.get(name, 0) + amount
    for (group_name, head), hist in hists.items():
        p90 = p90_seconds(hist)
        if p90 is not None:
            target = (
                "cycle_p90_s" if head == "cycle_hist" else "stay_p90_s" + head[len("stay_hist") :]
            )
            groups[group_name][target] = p90
    return groups


def p90_seconds(hist: dict[int, int]) -> int | None:
    """Upper bound of the first bucket whose cumulative count reaches ⌈0.9 n⌉."""
    n = sum(count for count in hist.values() if count > 0)
    if n == 0:
        return None
    need = math.ceil(0.9 * n)
    running = 0
    for index in sorted(hist):
        running += max(hist[index], 0)
        if running >= need:
            return DURATION_BUCKETS_S[min(index, len(DURATION_BUCKETS_S) - 1)]
    return DURATION_BUCKETS_S[-1]


WonRecord = tuple[int, str, int | None, str | None, str | None, tuple[str, ...]]


def _won_record(deal: bytes | str, raw: bytes | str) -> WonRecord:
    won_us, units, client, lead, *dims = msgspec.json.decode(raw)
    name = deal.decode() if isinstance(deal, bytes) else deal
    return int(won_us), name, units, client, lead, tuple(dims)


@dataclass(frozen=True)
class WonDeals:
    """Won-deal records prepared once per read, then filtered per window.

    Sorted by (won instant, deal id); each record's bucket names, whether its client won
    earlier (a repeat sale) and whether it is the client's first win are known up front.
    """

    records: list[WonRecord]
    repeat: list[bool]
    first: list[bool]
    revenue_by_client: dict[str, int]
    # per granularity: bucket name → the position ranges [start, stop) of the records won
    # in that bucket. Sorted by time, a bucket's records are consecutive; a list, because
    # a local date can repeat (a clock turned back across midnight, as at 00:30 → 23:30).
    by_bucket: list[dict[str, list[tuple[int, int]]]]

    def in_buckets(self, granularity: str, buckets: list[str]) -> Iterator[int]:
        ranges = self.by_bucket[GRANULARITIES.index(granularity)]
        for bucket in buckets:
            for start, stop in ranges.get(bucket, ()):
                yield from range(start, stop)


def prepare_won(records: list[WonRecord], namer: BucketNamer) -> WonDeals:
    # (won µs, deal id) lead each record and deal ids are unique: no tie reaches the rest
    ordered = sorted(records)
    seen: set[str] = set()
    repeat, first = [], []
    revenue: dict[str, int] = {}
    for _, _, units, client, _, _ in ordered:
        repeat.append(client is not None and client in seen)
        first.append(client is not None and client not in seen)
        if client is not None:
            seen.add(client)
            revenue[client] = revenue.get(client, 0) + (units or 0)
    by_bucket: list[dict[str, list[tuple[int, int]]]] = [{} for _ in GRANULARITIES]
    current: list[str | None] = [None] * len(GRANULARITIES)
    starts = [0] * len(GRANULARITIES)
    last_minute = None
    for position, record in enumerate(ordered):
        minute = record[0] // US_PER_MINUTE
        if minute == last_minute:
            continue  # names change at minute boundaries at most
        last_minute = minute
        for index, name in enumerate(namer.levels(minute)[0]):
            held = current[index]
            if name != held:
                if held is not None:
                    by_bucket[index].setdefault(held, []).append((starts[index], position))
                current[index], starts[index] = name, position
    for index, held in enumerate(current):
        if held is not None:
            by_bucket[index].setdefault(held, []).append((starts[index], len(ordered)))
    return WonDeals(ordered, repeat, first, revenue, by_bucket)


def client_components(
    groups: Groups,
    won: WonDeals,
    by: str | None,
    window: str,
    granularity: str,
    buckets: list[str],
) -> None:
    """Client KPIs and lead→customer from the prepared won deals. Pure.

    Counted in locals and written once: this runs for every window of every scrape over
    every won deal in the window (thousands at office size)."""
    index = DIMENSIONS.index(by) if by else None
    total = groups["total"]
    records, repeat, first = won.records, won.repeat, won.first
    leads: set[str] = set()
    leads_by: dict[str, set[str]] = {}
    clients: set[str] = set()
    client_deals = repeat_count = repeat_revenue = 0
    new_clients: dict[str, int] = {}  # source → clients won for the first time
    for i in won.in_buckets(granularity, buckets):
        _, _, units, client, lead, dims = records[i]
        if lead is not None:
            leads.add(lead)
            if index is not None:
                leads_by.setdefault(dims[index], set()).add(lead)
        if client is None:
            continue
        client_deals += 1
        clients.add(client)
        if repeat[i]:
            repeat_count += 1
            repeat_revenue += units or 0
        if first[i]:
            new_clients[dims[3]] = new_clients.get(dims[3], 0) + 1
    if client_deals:
        total["client_deals"] = total.get("client_deals", 0) + client_deals
    if repeat_count:
        total["repeat_count"] = total.get("repeat_count", 0) + repeat_count
        total["repeat_revenue"] = total.get("repeat_revenue", 0) + repeat_revenue
    for source, count in new_clients.items():
        name = f"new_clients:{source}"
        total[name] = total.get(name, 0) + count
    if leads:
        leads_by["total"] = leads
    for group_name, lead_ids in leads_by.items():
        groups.setdefault(group_name, {})["lead_customers"] = len(lead_ids)
    total["client_distinct"] = len(clients)
    if window == "all" and won.revenue_by_client:
        total["clv_revenue"] = sum(won.revenue_by_client.values())
        total["clv_clients"] = len(won.revenue_by_client)
        _abc(total, won.revenue_by_client)


def _abc(total: dict[str, int], revenue: dict[str, int]) -> None:
    ranked = sorted(revenue.items(), key=lambda item: (-item[1], item[0]))
    whole = sum(revenue.values())
    running = 0
    for client_revenue in (amount for _, amount in ranked):
        share_before = running
        running += client_revenue
        # A until the prefix reaches 80 %, then B until 95 %, then C (integer arithmetic).
        if whole == 0:
            label = "C"  # no revenue to rank by
        elif share_before * 100 < 80 * whole:
            label = "A"
        elif share_before * 100 < 95 * whole:
            label = "B"
        else:
            label = "C"
        total[f"abc_count:{label}"] = total.get(f"abc_count:{label}", 0) + 1
        total[f"abc_revenue:{label}"] = total.get(f"abc_revenue:{label}", 0) + client_revenue
