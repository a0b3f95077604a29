"""Load → fold → apply, retried until the store accepts the batch exactly once."""

from __future__ import annotations

from collections.abc import Sequence

from salespulse.errors import KpiStoreError
from salespulse.events import CrmEvent
from salespulse.kpi_keys import KpiKeys
from salespulse.tenants import TenantDirectory
from streams.fold import BatchFold, entity_ref, fold_batch
from streams.redis_sink import RedisKpiSink

# Each refold removes what the store reported (counted ids, changed entities); a store
# that keeps reporting new ones means another writer races us on the same ids.
MAX_REFOLDS = 8


class KpiApplier:
    def __init__(self, sink: RedisKpiSink, tenants: TenantDirectory, keys: KpiKeys) -> None:
        self._sink = sink
        self._tenants = tenants
        self._keys = keys

    async def apply(self, events: Sequence[CrmEvent], offsets: dict[str, int]) -> BatchFold:
        """Apply once; returns the fold that the store accepted."""
        refs: dict[str, str] = {}
        for event in events:
            ref = entity_ref(self._keys, event)
            if ref is not None:
                refs[ref[0]] = ref[1]
        states = await self._sink.load_states(refs)
        skip: frozenset[tuple[str, str]] = frozenset()
        for _ in range(MAX_REFOLDS):
            fold = fold_batch(events, self._tenants, self._keys, states, skip)
            outcome = await self._sink.apply(fold, offsets)
            if outcome.applied:
                return fold
            skip |= outcome.already_counted
            if outcome.conflicts:
                changed = {key: refs[key] for key in outcome.conflicts}
                for key in changed:
                    states.pop(key, None)
                states.update(await self._sink.load_states(changed))
        raise KpiStoreError("batch kept meeting concurrent changes; refusing to loop")
