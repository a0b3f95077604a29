"""The door's too-late judgement of CRM webhook events, and its once-per-event count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.too_late import LateDoor
from salespulse.core.events import CrmEvent

RECEIVED = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY_S = 86_400


def call(event_id: str, age: timedelta, tenant: str = "acme") -> CrmEvent:
    return CrmEvent(
        event_id=event_id,
        tenant=tenant,
        type="call",
        occurred_at=RECEIVED - age,
        received_at=RECEIVED,
        direction="in",
        answered=True,
    )


def test_late_is_past_the_limit_from_the_events_own_receipt() -> None:
    door = LateDoor(35 * DAY_S)
    on_the_limit = call("a", timedelta(days=35))
    past = call("b", timedelta(days=35, seconds=1))
    assert door.split([past, on_the_limit]) == ([on_the_limit], [past])
    assert LateDoor(None).split([past]) == ([past], [])
    assert door.answer([]) == {}
    assert door.answer([past]) == {
        "too_late": ["b"],
        "lateness_limit_days": 35,
        "dead_lettered": True,
    }
    [problem] = door.problems([past])
    assert problem["event_id"] == "b"


def test_each_event_is_counted_once_per_tenant_within_the_remembered_ids() -> None:
    door = LateDoor(DAY_S, remember=2)
    late = [call("a", timedelta(days=9)), call("b", timedelta(days=9))]
    assert door.first_seen(late) == 2
    assert door.first_seen(late) == 0  # the CRM delivered it again
    assert door.first_seen([call("a", timedelta(days=9), tenant="other")]) == 1
    # only the last two are remembered: "a" of acme was forgotten first
    assert door.first_seen([call("a", timedelta(days=9))]) == 1
