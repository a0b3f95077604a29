"""Client KPIs from the won-deal index: repeat sales, purchase frequency, new clients,
lead→customer, customer lifetime value and ABC classes (docs/kpi-semantics.md). Pure.

The index holds one record per won deal; a read prepares them once (sorted, with prefix
sums), and every window of the read then counts its range of them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from salespulse.core.kpi.buckets import GRANULARITIES, US_PER_MINUTE, BucketNamer
from salespulse.core.kpi.catalogue import DIMENSIONS, TOTAL_GROUP
from salespulse.core.kpi.codecs import decode_won

Groups = dict[str, dict[str, int]]

# (won µs, deal id, amount units, client, lead, dims): sorts by time, then deal id
WonRecord = tuple[int, str, int | None, str | None, str | None, tuple[str, ...]]


def won_record(deal: bytes | str, raw: bytes | str) -> WonRecord:
    """A field and value of the won-deal index (codecs.WonDeal), as a read sorts them."""
    won = decode_won(raw)
    name = deal.decode() if isinstance(deal, bytes) else deal
    return won.won_us, name, won.units, won.client, won.lead, won.dims


@dataclass(frozen=True)
class RecentWin:
    """A won deal as the wall celebrates it: when, how much (MONEY units), by whom."""

    deal: str
    won_us: int
    units: int | None
    manager: str
    team: str


def newest_wins(records: list[WonRecord], since_us: int, limit: int) -> list[RecentWin]:
    """The deals won at or after ``since_us``, newest first (staff and amount only)."""
    recent = [record for record in records if record[0] >= since_us]
    recent.sort(key=lambda record: (-record[0], record[1]))
    return [
        RecentWin(deal=deal, won_us=won_us, units=units, manager=dims[0], team=dims[1])
        for won_us, deal, units, _, _, dims in recent[:limit]
    ]


@dataclass(frozen=True)
class WonDeals:
    """Won-deal records prepared once per read, then filtered per window.

    Sorted by (won instant, deal id); each record's bucket names, whether its client won
    earlier (a repeat sale) and whether it is the client's first win are known up front.
    The counts a window needs are prefix sums and columns, so that a window's range of
    records is counted by subtraction and set updates, not a Python loop per record
    (every scrape counts every won deal of every window: thousands at office size).
    """

    records: list[WonRecord]
    repeat: list[bool]
    first: list[bool]
    revenue_by_client: dict[str, int]
    # per granularity: bucket name → the position ranges [start, stop) of the records won
    # in that bucket. Sorted by time, a bucket's records are consecutive; a list, because
    # a local date can repeat (a clock turned back across midnight, as at 00:30 → 23:30).
    by_bucket: list[dict[str, list[tuple[int, int]]]]
    # columns of the records (None where a record has none)
    clients: list[str | None] = field(default_factory=list)
    leads: list[str | None] = field(default_factory=list)
    # prefix sums: [i] = the sum over records[:i]
    client_deals: list[int] = field(default_factory=lambda: [0])
    repeats: list[int] = field(default_factory=lambda: [0])
    repeat_revenue: list[int] = field(default_factory=lambda: [0])
    # source → positions of the records that won a client for the first time
    first_by_source: dict[str, list[int]] = field(default_factory=dict)
    # record ranges → (distinct leads, distinct clients) in them: the reader keeps an
    # unchanged index's preparation from scrape to scrape, and building these sets was
    # most of the client KPIs' cost (issue 19)
    distinct: dict[tuple[tuple[int, int], ...], tuple[int, int]] = field(default_factory=dict)

    def ranges(self, granularity: str, buckets: list[str]) -> Iterator[tuple[int, int]]:
        ranges = self.by_bucket[GRANULARITIES.index(granularity)]
        for bucket in buckets:
            yield from ranges.get(bucket, ())

    def in_buckets(self, granularity: str, buckets: list[str]) -> Iterator[int]:
        for start, stop in self.ranges(granularity, buckets):
            yield from range(start, stop)


def prepare_won(records: list[WonRecord], namer: BucketNamer) -> WonDeals:
    # (won µs, deal id) lead each record and deal ids are unique: no tie reaches the rest
    ordered = sorted(records)
    clients = [record[3] for record in ordered]
    # client → position of its first win (assigned last to first: the earliest stays)
    first_at = {
        client: i
        for i, client in zip(range(len(clients) - 1, -1, -1), reversed(clients), strict=True)
    }
    first_at.pop(None, None)
    first = [client is not None and first_at[client] == i for i, client in enumerate(clients)]
    repeat = [
        client is not None and not is_first for client, is_first in zip(clients, first, strict=True)
    ]
    revenue: dict[str, int] = {}
    for record in ordered:
        client = record[3]
        if client is not None:
            revenue[client] = revenue.get(client, 0) + (record[2] or 0)
    first_by_source: dict[str, list[int]] = {}
    for position in sorted(first_at.values()):
        first_by_source.setdefault(ordered[position][5][3], []).append(position)
    repeat_units = [
        (record[2] or 0) if is_repeat else 0
        for record, is_repeat in zip(ordered, repeat, strict=True)
    ]
    by_bucket: list[dict[str, list[tuple[int, int]]]] = [{} for _ in GRANULARITIES]
    current: list[str | None] = [None] * len(GRANULARITIES)
    starts = [0] * len(GRANULARITIES)
    last_minute = None
    for position, record in enumerate(ordered):
        minute = record[0] // US_PER_MINUTE
        if minute == last_minute:
            continue  # names change at minute boundaries at most
        last_minute = minute
        for index, name in enumerate(namer.minute_names(minute)):
            held = current[index]
            if name != held:
                if held is not None:
                    by_bucket[index].setdefault(held, []).append((starts[index], position))
                current[index], starts[index] = name, position
    for index, held in enumerate(current):
        if held is not None:
            by_bucket[index].setdefault(held, []).append((starts[index], len(ordered)))
    return WonDeals(
        ordered, repeat, first, revenue, by_bucket,
        clients=clients,
        leads=[record[4] for record in ordered],
        client_deals=list(accumulate((client is not None for client in clients), initial=0)),
        repeats=list(accumulate(repeat, initial=0)),
        repeat_revenue=list(accumulate(repeat_units, initial=0)),
        first_by_source=first_by_source,
    )  # fmt: skip


def client_components(
    groups: Groups,
    won: WonDeals,
    by: str | None,
    window: str,
    granularity: str,
    buckets: list[str],
) -> None:
    """Client KPIs and lead→customer from the prepared won deals. Pure."""
    index = DIMENSIONS.index(by) if by else None
    total = groups[TOTAL_GROUP]
    leads: set[str | None] = set()
    clients: set[str | None] = set()
    leads_by: dict[str, set[str]] = {}
    client_deals = repeat_count = repeat_revenue = 0
    new_clients: dict[str, int] = {}  # source → clients won for the first time
    ranges = tuple(won.ranges(granularity, buckets))
    distinct = won.distinct.get(ranges)
    for start, stop in ranges:
        client_deals += won.client_deals[stop] - won.client_deals[start]
        repeat_count += won.repeats[stop] - won.repeats[start]
        repeat_revenue += won.repeat_revenue[stop] - won.repeat_revenue[start]
        if distinct is None:
            leads.update(won.leads[start:stop])
            clients.update(won.clients[start:stop])
        for source, positions in won.first_by_source.items():
            count = bisect_left(positions, stop) - bisect_left(positions, start)
            if count:
                new_clients[source] = new_clients.get(source, 0) + count
        if index is not None:
            for _, _, _, _, lead, dims in won.records[start:stop]:
                if lead is not None:
                    leads_by.setdefault(dims[index], set()).add(lead)
    if distinct is None:
        leads.discard(None)
        clients.discard(None)
        distinct = len(leads), len(clients)
        if len(won.distinct) < 1_000:  # a period API read asks for many ranges
            won.distinct[ranges] = distinct
    if client_deals:
        total["client_deals"] = total.get("client_deals", 0) + client_deals
    if repeat_count:
        total["repeat_count"] = total.get("repeat_count", 0) + repeat_count
        total["repeat_revenue"] = total.get("repeat_revenue", 0) + repeat_revenue
    for source, count in new_clients.items():
        name = f"new_clients:{source}"
        total[name] = total.get(name, 0) + count
    lead_counts = {group_name: len(lead_ids) for group_name, lead_ids in leads_by.items()}
    if distinct[0]:
        lead_counts[TOTAL_GROUP] = distinct[0]
    for group_name, count in lead_counts.items():
        groups.setdefault(group_name, {})["lead_customers"] = count
    total["client_distinct"] = distinct[1]
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
