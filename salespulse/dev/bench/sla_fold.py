"""The SLA stage's line of ``salespulse bench --fold-only``: its CPU per event, no broker
and no Redis.

The same synthetic events as the KPI stage's line (salespulse/dev/bench/fold.py), as on
the wire, through the SLA stage's own steps batch by batch: decode, load (the stored
states of the batch's conversations decoded, as SlaStore.load decodes them), fold (the
conversation keys and the fold, as SlaApplier.prepare runs them) and the packing of the
Redis script call. States are carried from batch to batch as the store would hold them.
What path (d) spends beyond these is the Kafka client, asyncio and the Redis round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent, decode_event, encode_event
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.sla_fold import ConversationStates, SlaFold, decode_conversation, fold_conversations
from streams.sla_store import SlaStore, conversation_keys

_KEYS = KpiKeys("sla-fold-bench:")
STEPS = ("decode", "load", "fold", "pack")


class SlaFolder:
    """Folds batches on the states the earlier batches left, stored as the script stores
    them (encoded), so that each batch decodes the states it reads, as SlaStore does."""

    def __init__(self) -> None:
        self._stored: dict[str, tuple[int, bytes]] = {}

    def fold(self, events: Sequence[CrmEvent], spent: dict[str, float]) -> SlaFold:
        started = time.process_time()
        keys = conversation_keys(_KEYS, events)
        middle = time.process_time()
        states: ConversationStates = {
            key: (held[0], decode_conversation(held[1]))
            for key in keys
            if (held := self._stored.get(key)) is not None
        }
        loaded = time.process_time()
        fold = fold_conversations(events, BENCH_TENANTS, _KEYS, states)
        spent["fold"] += time.process_time() - loaded + (middle - started)
        spent["load"] += loaded - middle
        for key, (version, blob) in fold.entity_writes.items():
            self._stored[key] = (version + 1, blob)
        return fold


def measure_sla_fold(events: int, batch: int) -> list[str]:
    """The report's line: the SLA stage's µs per event of decode, load, fold and packing."""
    wire = [encode_event(event) for event in synthetic_events(events, 1, "fold")]
    # Never connects: only its packing of a batch is measured.
    store = SlaStore(aioredis.Redis(), _KEYS, group="sla-fold-bench", day_ttl_s=1)
    folder = SlaFolder()
    spent = dict.fromkeys(STEPS, 0.0)
    for start in range(0, events, batch):
        started = time.process_time()
        chunk = [decode_event(raw) for raw in wire[start : start + batch]]
        spent["decode"] += time.process_time() - started
        fold = folder.fold(chunk, spent)
        started = time.process_time()
        store.arguments(fold, {"bench:0": start})
        spent["pack"] += time.process_time() - started
    per_event = {step: seconds / events * 1e6 for step, seconds in spent.items()}
    return [
        f"sla fold-only, {events:,} events in batches of {batch:,} (CPU µs per event): "
        + ", ".join(f"{step} {us:.2f}" for step, us in per_event.items())
        + f", together {sum(per_event.values()):.2f}"
    ]
