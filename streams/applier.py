"""Load → fold → apply, retried until the store accepts the batch exactly once.

Two phases, so that the consumer can fold batch N+1 while batch N's Redis write is in
flight: ``prepare`` folds on the entity states as they will be once every batch before
it is applied (a cache of what this applier wrote, else Redis), ``commit`` writes.

The cache is safe because Redis is the judge: every write carries the versions it was
folded on, and the script refuses stale ones. One case needs more: if a commit had to
refold (ids counted before, a concurrent writer), the states it finally wrote differ
from the speculative ones the next batch was folded on, *at the same versions*. So any
such deviation starts a new generation: the cache is dropped and batches prepared in
the old one are refolded from Redis before they are written.

Folds run off the event loop (streams/off_loop.py). A batch whose first Lua call would
make more than ``MAX_PART_WRITES`` writes is folded and written in parts of consecutive
events, so that no single Lua call blocks Redis for long (issue 19: 138 ms during a
replay; the hash fields past a few thousand go to later calls anyway). Only the
last part carries the partition watermarks: after a crash between parts the batch is
redelivered, the store reports the ids of the parts it holds as already counted, and
the refold on the states those parts left counts the rest exactly once (as a poison
batch's parts do, streams/poison.py).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import day_horizon_us
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory
from streams.contributions import Derived
from streams.entity_state import DealState, LeadState
from streams.fold import BatchFold, States, entity_ref, fold_batch
from streams.journal import PART_FIELDS
from streams.off_loop import OffLoop
from streams.outside_slots import tenant_groups
from streams.redis_sink import RedisKpiSink

# Each refold removes what the store reported (counted ids, changed entities); a store
# that keeps reporting new ones means another writer races us on the same ids.
MAX_REFOLDS = 8
CACHE_BYTES = 64 * 1024 * 1024
# A cached state in Python (structs, dicts, tuples, strings) and its Derived take about ten
# times its stored size: tracemalloc on the bench's synthetic events gave ~2.0 KB for a
# deal stored in ~190 B and ~1.0 KB for a lead stored in ~120 B (this errs high for leads).
_BYTES_PER_STORED_BYTE = 10
_BYTES_PER_ENTRY = 200  # key string, OrderedDict slot, version tuple, size entry
# Writes of a batch's first Lua call (entity states, ids, marks, index moves, and hash
# fields up to the journal's share, streams/journal.py) past which the batch is folded and
# written in parts of consecutive events. Parts of one batch each write the day, week,
# month and all-time fields again, which a batch writes once: parts of 6,000 writes cost
# (a) 20 → 26 µs and Redis 13 → 21 µs an event (`salespulse bench`). Since the hash fields
# past the journal's share go to later calls, only the per-event writes can make a first
# call long: a live 5,000-event batch makes ~11,000 (callgrind on redis-server, 20,000
# bench events at 200 managers: 66,100 instructions an event when this counted every
# field and cut such batches in two, 57,400 now). The first call's length is then set by
# its events, ~35-60 ms for 5,000 on a busy 2-core VM, not by its managers.
MAX_PART_WRITES = 20_000
# Parts are sized from the last batch's writes per event with this headroom, so that a
# part rarely turns out too big and has to be folded again as two halves.
_PART_HEADROOM = 0.75


def cached_size(key: str, stored: bytes) -> int:
    """Estimated bytes a cached state costs the process (bounded by the cache setting)."""
    return _BYTES_PER_ENTRY + len(key) + _BYTES_PER_STORED_BYTE * len(stored)


def fold_writes(fold: BatchFold) -> int:
    """How many writes the fold's first Lua call makes (the measure of how long it runs):
    its ids, marks, states and index moves, and the hash fields up to the share the rest
    go to journal parts from (streams/journal.py); a hash costs two more commands (its
    overflow check, its EXPIRE)."""
    fields = sum(map(len, fold.increments.values())) + 2 * len(fold.increments)
    return (
        min(fields, PART_FIELDS)
        + sum(map(len, fold.event_ids.values()))
        + sum(map(len, fold.marked.values()))
        + len(fold.entity_writes)
        + 2 * len(fold.open_moves)
        + len(fold.won_changes)
    )


def entity_refs(keys: KpiKeys, events: Sequence[CrmEvent]) -> dict[str, str]:
    """Redis key → kind of every entity the events join."""
    refs: dict[str, str] = {}
    for event in events:
        if event.entity_id is None:  # most events join no entity: spare the call
            continue
        ref = entity_ref(keys, event)
        if ref is not None:
            refs[ref[0]] = ref[1]
    return refs


def merged(folds: Sequence[BatchFold]) -> BatchFold:
    """One batch's parts as one fold (what a caller of ``apply`` reads: counts, states,
    increments), in order: a later part's entity state wins."""
    if len(folds) == 1:
        return folds[0]
    whole = BatchFold()
    for fold in folds:
        for bucket, by_field in fold.increments.items():
            into = whole.increments.setdefault(bucket, {})
            for name, amount in by_field.items():
                into[name] = into.get(name, 0) + amount
        for day, ids in fold.event_ids.items():
            whole.event_ids.setdefault(day, []).extend(ids)
        for day, ids in fold.marked.items():
            whole.marked.setdefault(day, []).extend(ids)
        whole.entity_writes.update(fold.entity_writes)
        whole.new_states.update(fold.new_states)
        whole.new_derived.update(fold.new_derived)
        whole.open_moves += fold.open_moves
        whole.won_changes += fold.won_changes
        whole.events += fold.events
        whole.duplicates += fold.duplicates
        whole.received_at += fold.received_at
    return whole


@dataclass(frozen=True)
class AppliedParts:
    """A written batch as its stage counts it. Its parts' folds are merged only when asked
    (``whole``): merging the increments of a batch cut in parts cost the worker ~1.7 µs an
    event (cProfile, the bench's traffic at 200 managers), for figures nobody read."""

    folds: list[BatchFold]

    @property
    def events(self) -> int:
        return sum(fold.events for fold in self.folds)

    @property
    def duplicates(self) -> int:
        return sum(fold.duplicates for fold in self.folds)

    @property
    def received_at(self) -> list[float]:
        return [at for fold in self.folds for at in fold.received_at]

    def whole(self) -> BatchFold:
        return merged(self.folds)


@dataclass
class Part:
    """Consecutive events of a batch, folded; written by one Lua call."""

    events: Sequence[CrmEvent]
    refs: dict[str, str]
    fold: BatchFold
    generation: int


@dataclass
class Prepared:
    parts: list[Part]
    # parts already written: a retried commit goes on from the next one
    written: list[BatchFold] = field(default_factory=list)


class KpiApplier:
    def __init__(
        self,
        sink: RedisKpiSink,
        tenants: TenantDirectory,
        keys: KpiKeys,
        *,
        cache_bytes: int = CACHE_BYTES,
        before_commit: Callable[[Sequence[CrmEvent]], Awaitable[None]] | None = None,
        max_part_writes: int = MAX_PART_WRITES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        # streams/daily_snapshot.py: sees the store as the batches before this one left it
        self._before_commit = before_commit
        self._tenants = tenants
        self._keys = keys
        self._cache: OrderedDict[str, tuple[int, DealState | LeadState]] = OrderedDict()
        # bounded by estimated bytes, not entries: a deal with a long history costs more
        self._cache_bytes = cache_bytes
        self._sizes: dict[str, int] = {}
        self.cached_bytes = 0
        # what each cached state contributes, so its "before" need not be derived again
        self._derived: dict[str, Derived] = {}
        self._generation = 0
        self._max_part_writes = max_part_writes
        # writes per event of the last batch: sizes the next batch's parts before folding
        self._writes_per_event = 0.0
        self._off_loop = OffLoop("salespulse-kpi-fold")
        # the time a batch is applied at (the edge reads it; the fold stays pure)
        self._clock = clock
        self._day_horizon = day_horizon_us(sink.day_retention_days)

    async def apply(self, events: Sequence[CrmEvent], offsets: dict[str, int]) -> BatchFold:
        """Apply once; returns the fold that the store accepted (its parts as one)."""
        return (await self.commit(await self.prepare(events), offsets)).whole()

    async def prepare(self, events: Sequence[CrmEvent]) -> Prepared:
        """Fold the batch, in parts when its writes would make one Lua call too long; on
        a Redis Cluster, in parts of one tenant each (one slot a call,
        streams/outside_slots.py)."""
        if not self._keys.tenant_slots:
            return await self._prepare_sized(events)
        parts: list[Part] = []
        for group in tenant_groups(events):
            parts += (await self._prepare_sized(group)).parts
        return Prepared(parts)

    async def _prepare_sized(self, events: Sequence[CrmEvent]) -> Prepared:
        sizes = [len(events)]
        expected = self._writes_per_event * len(events)
        if expected > self._max_part_writes:
            count = math.ceil(expected / (self._max_part_writes * _PART_HEADROOM))
            sizes = [len(chunk) for chunk in _chunks(events, count)]
        parts: list[Part] = []
        start = 0
        for size in sizes:
            parts += await self._prepare_parts(events[start : start + size])
            start += size
        writes = sum(fold_writes(part.fold) for part in parts)
        self._writes_per_event = writes / max(len(events), 1)
        return Prepared(parts)

    async def _prepare_parts(self, events: Sequence[CrmEvent]) -> list[Part]:
        """One part, or halves when its fold writes too much (the estimate was low)."""
        part = await self._prepare_part(events)
        if len(events) < 2 or fold_writes(part.fold) <= self._max_part_writes:
            if part.generation == self._generation:
                self._remember(part.fold)  # what the next part or batch is folded on
            return [part]
        half = len(events) // 2
        return [
            *await self._prepare_parts(events[:half]),
            *await self._prepare_parts(events[half:]),
        ]

    async def _prepare_part(self, events: Sequence[CrmEvent]) -> Part:
        generation = self._generation  # before any await: a commit may deviate meanwhile
        refs = await self._off_loop.run(entity_refs, self._keys, events)
        states = await self._states(refs)
        derived = {key: self._derived[key] for key in states if key in self._derived}
        fold = await self._off_loop.run(
            fold_batch, events, self._tenants, self._keys, states,
            derived=derived, applied_at_us=self._now_us(), day_horizon=self._day_horizon,
        )  # fmt: skip
        return Part(events, refs, fold, generation)

    async def commit(self, prepared: Prepared, offsets: dict[str, int]) -> AppliedParts:
        """Write the parts in order; only the last one moves the watermarks."""
        if not prepared.written and self._before_commit is not None:
            # once a batch, before its first part: a retried commit carries on from its parts
            await self._before_commit([e for part in prepared.parts for e in part.events])
        last = len(prepared.parts) - 1
        for index in range(len(prepared.written), len(prepared.parts)):
            marks = offsets if index == last else {}
            prepared.written.append(await self._commit_part(prepared.parts[index], marks))
        return AppliedParts(list(prepared.written))

    async def _commit_part(self, prepared: Part, offsets: dict[str, int]) -> BatchFold:
        fold, refs = prepared.fold, prepared.refs
        states: States | None = None
        if prepared.generation != self._generation:
            states = await self._sink.load_states(refs)
            fold = await self._refold(prepared.events, states, frozenset())
        skip: frozenset[tuple[str, str]] = frozenset()
        for attempt in range(MAX_REFOLDS):
            try:
                outcome = await self._sink.apply(fold, offsets)
            except BaseException:
                self._new_generation()  # unknown whether it was written: trust Redis only
                raise
            if outcome.applied:
                if attempt or fold is not prepared.fold:
                    self._new_generation()
                    self._remember(fold)
                return fold
            skip |= outcome.already_counted
            if states is None or outcome.conflicts:
                states = await self._sink.load_states(refs)
            fold = await self._refold(prepared.events, states, skip)
        self._new_generation()
        raise KpiStoreError("batch kept meeting concurrent changes; refusing to loop")

    async def _refold(
        self, events: Sequence[CrmEvent], states: States, skip: frozenset[tuple[str, str]]
    ) -> BatchFold:
        return await self._off_loop.run(
            fold_batch, events, self._tenants, self._keys, states, skip,
            applied_at_us=self._now_us(), day_horizon=self._day_horizon,
        )  # fmt: skip

    def _now_us(self) -> int:
        return round(self._clock() * 1_000_000)

    async def _states(self, refs: dict[str, str]) -> States:
        states: States = {}
        missing: dict[str, str] = {}
        for key, kind in refs.items():
            cached = self._cache.get(key)
            if cached is None:
                missing[key] = kind
            else:
                states[key] = cached
        if missing:
            states.update(await self._sink.load_states(missing))
        return states

    def _remember(self, fold: BatchFold) -> None:
        cache, sizes = self._cache, self._sizes
        for key, (version, blob) in fold.entity_writes.items():
            cache[key] = (version + 1, fold.new_states[key])
            cache.move_to_end(key)
            self._derived[key] = fold.new_derived[key]
            size = cached_size(key, blob)
            self.cached_bytes += size - sizes.get(key, 0)
            sizes[key] = size
        while self.cached_bytes > self._cache_bytes and cache:
            evicted, _ = cache.popitem(last=False)
            self._derived.pop(evicted, None)
            self.cached_bytes -= sizes.pop(evicted)

    def _new_generation(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._derived.clear()
        self._sizes.clear()
        self.cached_bytes = 0


def _chunks(events: Sequence[CrmEvent], count: int) -> list[Sequence[CrmEvent]]:
    """``count`` consecutive runs of nearly equal length."""
    size = math.ceil(len(events) / count)
    return [events[start : start + size] for start in range(0, len(events), size)]
