"""The SLA stage: ``crm.events`` into the conversation clock (streams/sla_store.py).

Its own consumer group over the same topic, so response times and waiting clients
neither slow the KPI fold nor wait for it.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord

from salespulse.core.events import CrmEvent
from streams.sla_store import PreparedSla
from streams.store_stage import AppliedBatch, DeadLetter, StoreStage


class SlaStage(StoreStage[PreparedSla]):
    stage_name = "sla"

    async def too_late(self, late: list[tuple[ConsumerRecord, CrmEvent]]) -> list[DeadLetter]:
        """Skipped: the KPI stage dead-letters (and counts) them, once."""
        return []

    def count_applied(self, folds: list[AppliedBatch], applied_at: float) -> None:
        for fold in folds:
            self._metrics.sla_batch_applied(fold.events)
