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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory
from streams.contributions import Derived
from streams.entity_state import DealState, LeadState
from streams.fold import BatchFold, States, entity_ref, fold_batch
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


def cached_size(key: str, stored: bytes) -> int:
    """Estimated bytes a cached state costs the process (bounded by the cache setting)."""
    return _BYTES_PER_ENTRY + len(key) + _BYTES_PER_STORED_BYTE * len(stored)


@dataclass
class Prepared:
    events: Sequence[CrmEvent]
    refs: dict[str, str]
    fold: BatchFold
    generation: int


class KpiApplier:
    def __init__(
        self,
        sink: RedisKpiSink,
        tenants: TenantDirectory,
        keys: KpiKeys,
        *,
        cache_bytes: int = CACHE_BYTES,
        before_commit: Callable[[Sequence[CrmEvent]], Awaitable[None]] | None = None,
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

    async def apply(self, events: Sequence[CrmEvent], offsets: dict[str, int]) -> BatchFold:
        """Apply once; returns the fold that the store accepted."""
        return await self.commit(await self.prepare(events), offsets)

    async def prepare(self, events: Sequence[CrmEvent]) -> Prepared:
        generation = self._generation  # before any await: a commit may deviate meanwhile
        refs: dict[str, str] = {}
        keys = self._keys
        for event in events:
            if event.entity_id is None:  # most events join no entity: spare the call
                continue
            ref = entity_ref(keys, event)
            if ref is not None:
                refs[ref[0]] = ref[1]
        states = await self._states(refs)
        derived = {key: self._derived[key] for key in states if key in self._derived}
        fold = fold_batch(events, self._tenants, self._keys, states, derived=derived)
        prepared = Prepared(events, refs, fold, generation)
        if generation == self._generation:
            self._remember(fold)  # what the next batch is folded on
        return prepared

    async def commit(self, prepared: Prepared, offsets: dict[str, int]) -> BatchFold:
        if self._before_commit is not None:
            await self._before_commit(prepared.events)
        fold, refs = prepared.fold, prepared.refs
        states: States | None = None
        if prepared.generation != self._generation:
            states = await self._sink.load_states(refs)
            fold = fold_batch(prepared.events, self._tenants, self._keys, states)
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
            fold = fold_batch(prepared.events, self._tenants, self._keys, states, skip)
        self._new_generation()
        raise KpiStoreError("batch kept meeting concurrent changes; refusing to loop")

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
