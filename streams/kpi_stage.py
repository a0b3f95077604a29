"""The KPI stage: ``crm.events`` folded into the KPI store (streams/applier.py).

Of the two stages over the topic, this one dead-letters (and counts) the events that
arrive too late to count: the SLA stage skips them, so each is dead-lettered once. The
ingest decides at the door (``POST /v1/events`` answers 422, handlers/http_ingest.py; a
CRM webhook's are dead-lettered there, handlers/too_late.py), so this is the safety net:
events a CRM's REST API completed later (enrichment), records of an older ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import ConsumerRecord

from salespulse.core.events import CrmEvent
from salespulse.core.retry import retry
from streams.applier import Prepared
from streams.store_stage import AppliedBatch, DeadLetter, StoreStage


class LateMarks(Protocol):
    async def mark_late(self, events: Sequence[CrmEvent]) -> int:
        """Remember the events as too late; returns how many were not remembered yet."""
        ...


class KpiStage(StoreStage[Prepared]):
    stage_name = "kpi"

    def __init__(self, *, late_marks: LateMarks | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._late_marks = late_marks

    async def too_late(self, late: list[tuple[ConsumerRecord, CrmEvent]]) -> list[DeadLetter]:
        # Counted by event id: a batch redelivered after a crash, or an event the CRM sent
        # twice, is dead-lettered again (a harmless copy) but counted once.
        events = [event for _, event in late]
        if self._late_marks is None:
            new = len(events)
        else:
            marks = self._late_marks
            new = await retry("mark too-late events", lambda: marks.mark_late(events))
        self._metrics.events_too_late.inc(new)
        problem = f"received more than {self._lateness.days} days after it happened"
        return [(record, "too_late", problem) for record, _ in late]

    def count_applied(self, folds: list[AppliedBatch], applied_at: float) -> None:
        self._metrics.batches_applied.inc()
        for fold in folds:
            self._metrics.events_applied.inc(fold.events)
            self._metrics.duplicates_dropped.inc(fold.duplicates)
            self._metrics.observe_latencies(fold.received_at, applied_at)
