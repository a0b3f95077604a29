"""``salespulse bench --fold-only``: where a worker core goes, without broker or Redis.

Path (a)'s synthetic events, encoded as on the wire, go through the worker's own steps
batch by batch: decode, fold (entity states carried from batch to batch, as the
applier's cache carries them) and the packing of the Redis write. It prints CPU µs per
event for each step and the fold's cost by event type. What path (a) spends beyond
these is the Kafka client, asyncio and the Redis round trip.

Timers on a shared VM vary by ±25 %: to compare two versions of the fold, run this under
``valgrind --tool=callgrind`` (instruction counts are deterministic) or interleave runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent, decode_event, encode_event
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.contributions import Derived
from streams.fold import BatchFold, States, entity_ref, fold_batch
from streams.redis_sink import RedisKpiSink

_KEYS = KpiKeys("fold-bench:")


class _Folder:
    """Folds batches on the states the earlier batches left, as KpiApplier does."""

    def __init__(self) -> None:
        self._states: States = {}
        self._derived: dict[str, Derived] = {}

    def fold(self, events: Sequence[CrmEvent]) -> tuple[float, BatchFold]:
        touched = {ref[0] for event in events if (ref := entity_ref(_KEYS, event))}
        states = {key: self._states[key] for key in touched if key in self._states}
        derived = {key: self._derived[key] for key in states if key in self._derived}
        started = time.process_time()
        fold = fold_batch(events, BENCH_TENANTS, _KEYS, states, derived=derived)
        spent = time.process_time() - started
        for key, (version, _) in fold.entity_writes.items():
            self._states[key] = (version + 1, fold.new_states[key])
            self._derived[key] = fold.new_derived[key]
        return spent, fold


def measure_fold(events: int, batch: int) -> list[str]:
    """The report's lines: µs per event of decode, fold and packing; fold by event type."""
    wire = [encode_event(event) for event in synthetic_events(events, 1, "fold")]
    # Never connects: only its packing of a batch is measured.
    sink = RedisKpiSink(aioredis.Redis(), _KEYS, group="fold-bench", dedupe_ttl_s=1, day_ttl_s=1)
    folder = _Folder()
    spent = dict.fromkeys(("decode", "fold", "pack"), 0.0)
    decoded: list[CrmEvent] = []
    for start in range(0, events, batch):
        started = time.process_time()
        chunk = [decode_event(raw) for raw in wire[start : start + batch]]
        spent["decode"] += time.process_time() - started
        seconds, fold = folder.fold(chunk)
        spent["fold"] += seconds
        started = time.process_time()
        sink.arguments(fold, {"bench:0": start})
        spent["pack"] += time.process_time() - started
        decoded += chunk
    per_event = {step: seconds / events * 1e6 for step, seconds in spent.items()}
    lines = [
        f"fold-only, {events:,} events in batches of {batch:,} (CPU µs per event): "
        + ", ".join(f"{step} {us:.2f}" for step, us in per_event.items())
        + f", together {sum(per_event.values()):.2f}"
    ]
    kinds = Counter(event.type for event in decoded)
    for kind, count in kinds.most_common():
        of_kind = [event for event in decoded if event.type == kind]
        kind_folder, seconds = _Folder(), 0.0
        for start in range(0, count, batch):
            seconds += kind_folder.fold(of_kind[start : start + batch])[0]
        lines.append(
            f"  fold of {kind} alone: {seconds / count * 1e6:.2f} µs each, "
            f"{count / events:.0%} of events, {seconds / events * 1e6:.2f} µs per event of the mix"
        )
    return lines
