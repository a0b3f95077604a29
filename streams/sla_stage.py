"""The SLA stage: ``crm.events`` into the conversation clock (streams/sla_store.py).

Its own consumer group over the same topic, so response times and waiting clients
neither slow the KPI fold nor wait for it.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord

from streams.sla_store import PreparedSla
from streams.store_stage import AppliedBatch, StoreStage


class SlaStage(StoreStage[PreparedSla]):
    stage_name = "sla"

    def too_late(self, record: ConsumerRecord) -> None:
        """Skipped: the KPI stage dead-letters (and counts) it, once."""
        return None

    def count_applied(self, folds: list[AppliedBatch], applied_at: float) -> None:
        for fold in folds:
            self._metrics.sla_batch_applied(fold.events)
