"""An in-memory stand-in for the Redis store, for pure tests of fold + reader logic.

It applies BatchFolds exactly as the Lua script does (dedupe, versions, increments,
open/won indexes) and reads them back with the reader's own pure functions, so the
pure property tests exercise the same arithmetic the real store sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from metrics.read.grouping import Groups, drop_zeros, group_components
from metrics.read.won_deals import client_components, prepare_won, won_record
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import BucketNamer, to_us, window_buckets
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.codecs import decode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory
from streams.conversation_clock import CONVERSATION_STATE
from streams.fold import States, decode_state, entity_ref, fold_batch
from streams.sla_fold import ConversationStates, fold_conversations

KEYS = KpiKeys("mem:")


class MemoryStore:
    def __init__(self, tenants: TenantDirectory, *, with_sla: bool = True) -> None:
        """``with_sla=False``: the KPI stage only (what the batch oracle defines)."""
        self.tenants = tenants
        self.with_sla = with_sla
        self.buckets: dict[tuple[str, str, str], dict[str, int]] = {}
        self.entities: dict[str, tuple[int, bytes]] = {}
        self.kinds: dict[str, str] = {}
        self.open: dict[tuple[str, str], tuple[str, str, int]] = {}
        self.won: dict[tuple[str, str], bytes] = {}
        self.seen: set[tuple[str, str]] = set()
        # The SLA stage (its own consumer group in the worker) writes to the same buckets.
        self.conversations: ConversationStates = {}
        self.waiting: dict[tuple[str, str], int] = {}

    def apply_batch(self, events: Sequence[CrmEvent]) -> None:
        self._apply_kpi_batch(events)
        if self.with_sla:
            self._apply_sla_batch(events)

    def _apply_sla_batch(self, events: Sequence[CrmEvent]) -> None:
        fold = fold_conversations(events, self.tenants, KEYS, dict(self.conversations))
        for key, (version, blob) in fold.entity_writes.items():
            assert self.conversations.get(key, (0, None))[0] == version
            self.conversations[key] = (version + 1, CONVERSATION_STATE.decode(blob))
        for bucket_key, fields in fold.increments.items():
            hashed = self.buckets.setdefault(bucket_key, {})
            for field, amount in fields.items():
                hashed[field] = hashed.get(field, 0) + amount
        for tenant, removed, added, score in fold.waiting_moves:
            if removed is not None:
                del self.waiting[(tenant, removed)]
            if added is not None:
                self.waiting[(tenant, added)] = score

    def _apply_kpi_batch(self, events: Sequence[CrmEvent]) -> None:
        states: States = {}
        for event in events:
            ref = entity_ref(KEYS, event)
            if ref is not None:
                self.kinds[ref[0]] = ref[1]
                stored = self.entities.get(ref[0])
                if stored is not None:
                    states[ref[0]] = (stored[0], decode_state(ref[1], stored[1]))
        fold = fold_batch(events, self.tenants, KEYS, states, frozenset(self.seen))
        # the dedupe sets and the marks, both remembered for ever here
        for (tenant, _day), ids in [*fold.event_ids.items(), *fold.marked.items()]:
            self.seen.update((tenant, event_id) for event_id in ids)
        for key, (version, blob) in fold.entity_writes.items():
            assert self.entities.get(key, (0, b""))[0] == version
            self.entities[key] = (version + 1, blob)
        for bucket_key, fields in fold.increments.items():
            hashed = self.buckets.setdefault(bucket_key, {})
            for field, amount in fields.items():
                hashed[field] = hashed.get(field, 0) + amount
        for tenant, deal, _before, after in fold.open_moves:
            if after is None:
                self.open.pop((tenant, deal), None)
            else:
                self.open[(tenant, deal)] = after
        for tenant, deal, record in fold.won_changes:
            if record is None:
                self.won.pop((tenant, deal), None)
            else:
                self.won[(tenant, deal)] = record

    def bucket_components(
        self, tenant: str, granularity: str, names: list[str], by: str | None
    ) -> Groups:
        """What KpiReader.bucket_snapshot reads for a period: sums and client KPIs over any
        buckets, no snapshot KPIs."""
        sums: dict[tuple[str, tuple[str, ...]], int] = {}
        for name in names:
            for field, amount in self.buckets.get((tenant, granularity, name), {}).items():
                parts = decode_field(field)
                key = (parts[0], tuple(parts[1:]))
                sums[key] = sums.get(key, 0) + amount
        groups = group_components(sums, by)
        records = [
            won_record(deal, raw) for (owner, deal), raw in self.won.items() if owner == tenant
        ]
        won = prepare_won(records, BucketNamer(self.tenants.zone_for(tenant)))
        client_components(groups, won, by, "period", granularity, names)
        drop_zeros(groups)
        return groups

    def components(self, tenant: str, window: str, by: str | None, now: datetime) -> Groups:
        zone = self.tenants.zone_for(tenant)
        granularity, names = window_buckets(window, now, zone)
        sums: dict[tuple[str, tuple[str, ...]], int] = {}
        for name in names:
            for field, amount in self.buckets.get((tenant, granularity, name), {}).items():
                parts = decode_field(field)
                key = (parts[0], tuple(parts[1:]))
                sums[key] = sums.get(key, 0) + amount
        groups = group_components(sums, by)
        records = []
        for (owner, deal), raw in self.won.items():
            if owner == tenant:
                records.append(won_record(deal, raw))
        won = prepare_won(records, BucketNamer(zone))
        client_components(groups, won, by, window, granularity, names)
        config = self.tenants.get(tenant)
        total = groups[TOTAL_GROUP]
        now_us = to_us(now)
        for (owner, _deal), (pipeline, stage, since) in self.open.items():
            if owner != tenant:
                continue
            total[f"open:{pipeline}:{stage}"] = total.get(f"open:{pipeline}:{stage}", 0) + 1
            configured = config.pipelines.get(pipeline)
            if configured is None:
                continue
            ready = configured.ready_stages()
            if stage in ready:
                total[f"ready:{pipeline}:{stage}"] = total.get(f"ready:{pipeline}:{stage}", 0) + 1
            limit = configured.limit_hours_of(stage)
            if limit is not None and now_us - since > round(limit * 3_600_000_000):
                total[f"stuck:{pipeline}:{stage}"] = total.get(f"stuck:{pipeline}:{stage}", 0) + 1
        drop_zeros(groups)
        return groups
