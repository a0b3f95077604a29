"""A CRM webhook's events that are too late to count, decided at the door.

The worker counts nothing received more than SALESPULSE_LATENESS_DAYS after it
happened (streams/store_stage.py). ``POST /v1/events`` tells its sender with a 422, but a
CRM cannot resend history with the backfill header, and to a CRM a 4xx is a failed
delivery: some retry it, amoCRM switches a webhook that keeps failing off. So a webhook's
too-late events never reach ``crm.events``: its body goes to the dead-letter topic (reason
``too_late``), the events are counted in the too-late counter, and the CRM is answered
2xx, which ends its retries. The worker's check stays as the safety net (events that the
CRM's REST API completes later, records of an older ingest).

Counted once per event id: a CRM that resends the same delivery (its own duplicate, or a
retry after a 503) is dead-lettered again, a harmless copy, but not counted again. The
ids are remembered by this process, the most recent ``remember`` of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Final

from salespulse.core.events import CrmEvent

REMEMBERED_IDS: Final = 100_000


class LateDoor:
    def __init__(self, lateness_s: float | None, *, remember: int = REMEMBERED_IDS) -> None:
        """``lateness_s``: SALESPULSE_LATENESS_DAYS in seconds; None lets every event in."""
        self._lateness = timedelta(seconds=lateness_s) if lateness_s is not None else None
        self._remember = remember
        self._counted: OrderedDict[tuple[str, str], None] = OrderedDict()

    @property
    def limit_days(self) -> float | None:
        return None if self._lateness is None else self._lateness / timedelta(days=1)

    def split(self, events: Sequence[CrmEvent]) -> tuple[list[CrmEvent], list[CrmEvent]]:
        """(in time, too late), each in the order given."""
        timely: list[CrmEvent] = []
        late: list[CrmEvent] = []
        for event in events:
            (late if self._too_late(event) else timely).append(event)
        return timely, late

    def problems(self, late: Iterable[CrmEvent]) -> list[dict[str, object]]:
        """One problem per too-late event, by id (a webhook body has no index to name)."""
        days = self.limit_days
        return [
            {
                "event_id": event.event_id,
                "field": "occurred_at",
                "problem": f"happened more than {days:g} days before it was received "
                "(SALESPULSE_LATENESS_DAYS): too late to count",
            }
            for event in late
        ]

    def answer(self, late: Sequence[CrmEvent]) -> dict[str, object]:
        """What the CRM's answer says of them (nothing when none)."""
        if not late:
            return {}
        return {
            "too_late": [event.event_id for event in late],
            "lateness_limit_days": self.limit_days,
            "dead_lettered": True,
        }

    def first_seen(self, late: Iterable[CrmEvent]) -> int:
        """How many of the events this process has not counted yet; they are now."""
        new = 0
        for event in late:
            key = (event.tenant, event.event_id)
            if key in self._counted:
                self._counted.move_to_end(key)
                continue
            new += 1
            self._counted[key] = None
            if len(self._counted) > self._remember:
                self._counted.popitem(last=False)
        return new

    def _too_late(self, event: CrmEvent) -> bool:
        # As the worker judges it (streams/store_stage.py): from the event's own receipt.
        received = event.received_at
        if self._lateness is None or received is None:
            return False
        return received - event.occurred_at > self._lateness
