"""Read KPI components from Redis for one tenant, window and grouping.

The result is the comparable form of docs/kpi-semantics.md: {group: {component: int}}.
Ratios, averages and percentiles are derived from it by metrics/views/kpi_view.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster

from metrics.read.grouping import drop_zeros, group_components
from metrics.read.staff import StaffReader
from metrics.read.waiting import WaitingReader
from metrics.read.won_deals import (
    RecentWin,
    WonDeals,
    WonRecord,
    client_components,
    newest_wins,
    prepare_won,
    won_record,
)
from salespulse.core.kpi.buckets import namer_for, to_us, window_buckets
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.codecs import decode_field, split_stage_member
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantConfig, TenantDirectory

Groups = dict[str, dict[str, int]]
RawSums = dict[tuple[str, tuple[str, ...]], int]


@cache
def sum_buckets_script() -> str:
    return resources.files("metrics.read").joinpath("sum_buckets.lua").read_text(encoding="utf-8")


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
        self._sum_script = client.register_script(sum_buckets_script())
        self._cluster = isinstance(client, RedisCluster)
        # deal (as stored) → (its raw won record, decoded)
        self._won_memo: dict[bytes | str, tuple[bytes | str, WonRecord]] = {}
        # tenant → (zone, its won-deal index as read, that index prepared); see tenant_state
        self._prepared: dict[str, tuple[str, dict[bytes | str, bytes | str], WonDeals]] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def waiting_reader(self) -> WaitingReader:
        """The live waiting list, read from the same Redis."""
        return WaitingReader(self._client, self._keys, self._tenants)

    def staff_reader(self) -> StaffReader:
        """Staff names (manager id → name), read from the same Redis."""
        return StaffReader(self._client, self._keys, self._tenants)

    def tenants(self) -> list[str]:
        members = self._client.smembers(self._keys.tenants)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def raw(self, tenant: str, window: str, now: datetime) -> RawSums:
        """Sum of every stored field over the window's buckets.

        A window of many buckets (15m, 1h, 24h, week) is summed inside Redis
        (sum_buckets.lua); a one-bucket window, or sums beyond what the script holds
        exactly, in Python.
        """
        granularity, buckets = window_buckets(window, now, self._tenants.zone_for(tenant))
        return self.raw_buckets(tenant, granularity, buckets)

    def raw_windows(self, tenant: str, windows: Sequence[str], now: datetime) -> dict[str, RawSums]:
        """raw() of several windows, read in one round trip to Redis.

        The week is read as its days before today, today and its days after, added in
        that order (the order the script would have met the fields in): today's bucket,
        which a scrape reads for `today` anyway, is then shipped and summed once, not a
        second time inside the week (issue 19: it was most of the week's cost).
        """
        zone = self._tenants.zone_for(tenant)
        reads: list[tuple[str, list[str]]] = []
        plan: dict[str, list[int]] = {}  # window → its reads, added in this order
        for window in windows:
            granularity, buckets = window_buckets(window, now, zone)
            parts = [buckets]
            if window == "week":
                today = window_buckets("today", now, zone)[1][0]
                at = buckets.index(today)
                parts = [buckets[:at], [today], buckets[at + 1 :]]
            indexes = plan[window] = []
            for part in parts:
                if part:
                    if (granularity, part) not in reads:
                        reads.append((granularity, part))
                    indexes.append(reads.index((granularity, part)))
        sums = self._read(tenant, reads)
        out: dict[str, RawSums] = {}
        for window, indexes in plan.items():
            if len(indexes) == 1:
                out[window] = sums[indexes[0]]
                continue
            merged: RawSums = {}
            for index in indexes:
                for parsed, amount in sums[index].items():
                    merged[parsed] = merged.get(parsed, 0) + amount
            out[window] = merged
        return out

    def raw_buckets(self, tenant: str, granularity: str, buckets: list[str]) -> RawSums:
        """Sum of every stored field over any set of buckets of one granularity (a window,
        or a period's days or months: salespulse/core/kpi/periods.py)."""
        return self._read(tenant, [(granularity, buckets)])[0] if buckets else {}

    def _read(self, tenant: str, reads: list[tuple[str, list[str]]]) -> list[RawSums]:
        """The sums of each (granularity, buckets) read, all in one pipeline (on a cluster,
        whose pipelines refuse scripts, the script calls apart).

        A read whose buckets begin a longer read's (15m and 1h) rides on the longest such
        read: the script returns its sums partway through (sum_buckets.lua, ARGV).
        """
        host = list(range(len(reads)))
        for i, (granularity, buckets) in enumerate(reads):
            longest = len(buckets)
            for j, (other_granularity, other) in enumerate(reads):
                if (
                    other_granularity == granularity
                    and len(other) > longest
                    and other[: len(buckets)] == buckets
                ):
                    host[i], longest = j, len(other)
        pipe = self._client.pipeline(transaction=False)
        commands: dict[int, list[int]] = {}  # host read → its reads' key counts, ascending
        replies: dict[int, Any] = {}
        queued: list[int] = []
        for j, (granularity, buckets) in enumerate(reads):
            if host[j] != j:
                continue
            marks = sorted({len(reads[i][1]) for i in range(len(reads)) if host[i] == j})
            commands[j] = marks
            bucket_keys = [self._keys.bucket(tenant, granularity, bucket) for bucket in buckets]
            args = marks if len(marks) > 1 else []  # no riders: the plain reply
            if len(bucket_keys) == 1:  # (a read with riders has more than one bucket)
                pipe.hgetall(bucket_keys[0])
                queued.append(j)
            elif self._cluster:  # a cluster pipeline refuses script calls
                replies[j] = self._sum_script(keys=bucket_keys, args=args)
            else:
                self._sum_script(keys=bucket_keys, args=args, client=pipe)
                queued.append(j)
        if queued:
            replies.update(zip(queued, pipe.execute(), strict=True))
        out = []
        for i, (granularity, buckets) in enumerate(reads):
            reply, marks = replies[host[i]], commands[host[i]]
            if isinstance(reply, dict):
                out.append(self._folded(list(reply), list(reply.values())))
            elif not reply[0]:  # beyond the script's exact range
                out.append(self._summed_in_python(tenant, granularity, buckets))
            else:
                flat = reply[1 + marks.index(len(buckets))] if len(marks) > 1 else reply[1:]
                out.append(self._folded(flat[0::2], flat[1::2]))
        return out

    def _folded(self, raw_fields: list[bytes], values: list[bytes | int]) -> RawSums:
        """{(component, dims): sum} of stored fields and their values.

        One reply names each field once, so the dict is built in one go (the scrape folds
        ~10,000 fields); fields that parse alike (a store written before fields left
        out their empty dimensions at the end holds the full arrays) are added up.
        """
        fields = self._fields
        parsed = [fields.get(raw_field) or self._parsed(raw_field) for raw_field in raw_fields]
        sums = dict(zip(parsed, map(int, values), strict=True))
        if len(sums) < len(parsed):
            sums = {}
            for key, value in zip(parsed, values, strict=True):
                sums[key] = sums.get(key, 0) + int(value)
        return sums

    def _summed_in_python(self, tenant: str, granularity: str, buckets: list[str]) -> RawSums:
        pipe = self._client.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(self._keys.bucket(tenant, granularity, bucket))
        pairs = [pair for reply in pipe.execute() for pair in reply.items()]
        sums: RawSums = {}
        for raw_field, raw_value in pairs:
            parsed = self._fields.get(raw_field) or self._parsed(raw_field)
            sums[parsed] = sums.get(parsed, 0) + int(raw_value)
        return sums

    def _parsed(self, raw_field: bytes) -> tuple[str, tuple[str, ...]]:
        """(component, dims) of a stored field; memoised, fields repeat scrape after scrape."""
        parsed = self._fields.get(raw_field)
        if parsed is None:
            if len(self._fields) > 200_000:
                self._fields.clear()
            parts = decode_field(raw_field)
            parsed = self._fields[raw_field] = (parts[0], tuple(parts[1:]))
        return parsed

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
        groups[TOTAL_GROUP].update(shared.live)
        drop_zeros(groups)
        return Snapshot(groups, revenue_by_source, now)

    def bucket_snapshot(
        self,
        tenant: str,
        granularity: str,
        buckets: list[str],
        by: str | None,
        shared: TenantState,
        now: datetime,
    ) -> Snapshot:
        """A period's components: stored sums and client KPIs over its buckets.

        Snapshot KPIs (open, ready, stuck deals) are not added: a period answers them at
        its end (metrics/api/periods_api.py), not now."""
        sums = self.raw_buckets(tenant, granularity, buckets)
        revenue_by_source: dict[str, int] = {}
        for (component, dims), amount in sums.items():
            if component == "revenue":
                revenue_by_source[dims[3]] = revenue_by_source.get(dims[3], 0) + amount
        groups = group_components(sums, by)
        client_components(groups, shared.won, by, "period", granularity, buckets)
        drop_zeros(groups)
        return Snapshot(groups, revenue_by_source, now)

    def day_snapshot(
        self, tenant: str, day: date, newest: date, *, reach_days: int = 62
    ) -> tuple[date | None, dict[str, int]]:
        """The snapshot KPIs at the end of ``day``: (the day whose snapshot answers, its
        counts), or (None, {}) when none was taken.

        A day's snapshot is taken when the worker first applies a batch of the tenant on
        a later day (streams/daily_snapshot.py). A day with no batch after it until the
        next one has no snapshot of its own, but nothing changed the counts meanwhile:
        the first snapshot after it (up to ``newest``) holds its end state."""
        days: list[date] = []
        current = day
        while current <= newest and len(days) < reach_days:
            days.append(current)
            current += timedelta(days=1)
        pipe = self._client.pipeline(transaction=False)
        for candidate in days:
            pipe.hgetall(self._keys.day_snapshot(tenant, candidate.isoformat()))
        for candidate, reply in zip(days, pipe.execute(), strict=True):
            if reply:
                return candidate, {
                    (k.decode() if isinstance(k, bytes) else str(k)): int(v)
                    for k, v in reply.items()
                }
        return None, {}

    def live_counts(self, tenant: str, now: datetime) -> dict[str, int]:
        """The snapshot KPIs now: open, ready and stuck deals per stage, waiting clients."""
        counts: dict[str, int] = {}
        self._live(counts, tenant, self._tenants.get(tenant), now)
        waiting = int(self._client.zcard(self._keys.waiting(tenant)))
        if waiting:
            counts["waiting"] = waiting
        return counts

    def tenant_state(self, tenant: str, now: datetime) -> TenantState:
        """What does not depend on the window: won-deal records and live counts."""
        won = self._client.hgetall(self._keys.won(tenant))
        live: dict[str, int] = {}
        self._live(live, tenant, self._tenants.get(tenant), now)
        zone = self._tenants.zone_for(tenant)
        # The index changes far less often than it is scraped: an unchanged index (the
        # comparison runs in C) reuses its preparation, which depends on nothing else
        # but the zone; preparing it was a tenth of a 200-manager office's scrape.
        held = self._prepared.get(tenant)
        if held is not None and held[0] == zone.key and held[1] == won:
            return TenantState(held[2], live)
        prepared = prepare_won(self._won_records(won), namer_for(zone))
        if len(self._prepared) > 10_000:  # tenants gone from the directory
            self._prepared.clear()
        self._prepared[tenant] = zone.key, won, prepared
        return TenantState(prepared, live)

    def recent_wins(self, tenant: str, since: datetime, limit: int = 10) -> list[RecentWin]:
        """Deals won at or after ``since``, newest first, from the won-deal index.

        For the wall's celebration: staff and amount only (the client stays out).
        """
        won = self._client.hgetall(self._keys.won(tenant))
        return newest_wins(self._won_records(won), to_us(since), limit)

    def _won_records(self, won: dict[bytes | str, bytes | str]) -> list[WonRecord]:
        """Decoded won records, memoised by deal: between two scrapes few of them change,
        and decoding all of them was a tenth of a 200-manager office's scrape."""
        memo = self._won_memo
        if len(memo) > 2 * len(won) + 100_000:  # deals gone from the index
            memo.clear()
        records = []
        for deal, raw in won.items():
            held = memo.get(deal)
            if held is None or held[0] != raw:
                held = memo[deal] = raw, won_record(deal, raw)
            records.append(held[1])
        return records

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
            pipeline, stage = split_stage_member(stage_key)
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
