"""The KPI stage: ``crm.events`` folded into the KPI store (streams/applier.py).

Of the two stages over the topic, this one dead-letters (and counts) the events that
arrive too late to count: the SLA stage skips them, so each is dead-lettered once.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord

from streams.applier import Prepared
from streams.store_stage import AppliedBatch, DeadLetter, StoreStage


class KpiStage(StoreStage[Prepared]):
    stage_name = "kpi"

    def too_late(self, record: ConsumerRecord) -> DeadLetter:
        self._metrics.events_too_late.inc()
        late = f"received more than {self._lateness.days} days after it happened"
        return (record, "too_late", late)

    def count_applied(self, folds: list[AppliedBatch], applied_at: float) -> None:
        self._metrics.batches_applied.inc()
        for fold in folds:
            self._metrics.events_applied.inc(fold.events)
            self._metrics.duplicates_dropped.inc(fold.duplicates)
            self._metrics.observe_latencies(fold.received_at, applied_at)
