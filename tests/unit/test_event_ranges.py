"""The door: only values the engine can count exactly are accepted, at the ingest and in
every CRM adapter (each builds its events through the same checks)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from handlers.crm import amocrm, pipedrive
from handlers.crm.common import Context, Naming
from handlers.crm.forms import parse_form
from handlers.validation import parse_events
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import EARLIEST, MAX_AMOUNT, CrmEvent, semantic_problems
from tests.crm.support import AMO_ACCOUNT, payload

RECEIVED = datetime(2026, 12, 3, 10, 15, tzinfo=UTC)
WON = {
    "event_id": "p2",
    "tenant": "acme",
    "type": "deal_stage_changed",
    "occurred_at": "2026-12-03T10:16:00Z",
    "entity_id": "d1",
    "pipeline": "sales",
    "stage_to": "won",
    "stage_kind": "won",
    "amount": "100",
    "currency": "USD",
}


def problems_of(
    event: Mapping[str, object], received_at: datetime | None = RECEIVED
) -> list[tuple[str, str]]:
    with pytest.raises(InvalidEventError) as caught:
        parse_events(msgspec.json.encode(event), received_at)
    assert caught.value.reason == "invalid_event"
    return [(str(p["field"]), str(p["problem"])) for p in caught.value.problems]


@pytest.mark.parametrize("amount", ["1e30", "1e24", "1845000000000000", "100000000000000.0001"])
def test_an_amount_the_engine_cannot_hold_is_refused_naming_the_range(amount: str) -> None:
    assert problems_of({**WON, "amount": amount}) == [
        ("amount", "must be a decimal from 0 to 100,000,000,000,000")
    ]


@pytest.mark.parametrize("amount", ["0", "10000000000000", "100000000000000", "0.00005"])
def test_amounts_up_to_the_limit_are_accepted(amount: str) -> None:
    [event] = parse_events(msgspec.json.encode({**WON, "amount": amount}), RECEIVED)
    assert event.amount == Decimal(amount)
    assert Decimal(amount) <= MAX_AMOUNT


def test_a_cost_has_the_same_range() -> None:
    assert [field for field, _ in problems_of({**WON, "cost": "1e15"})] == ["cost"]


@pytest.mark.parametrize(
    ("occurred_at", "fragment"),
    [
        ("9999-12-31T23:59:59Z", "a day after receipt"),
        ("2026-12-04T10:16:00Z", "2026-12-04T10:15:00+00:00"),
        ("1999-12-31T23:59:59Z", "must be from 2000-01-01T00:00:00+00:00"),
        ("0001-01-01T00:00:00+05:00", "must be from 2000-01-01"),
    ],
)
def test_occurred_at_is_bounded_by_2000_and_a_day_after_receipt(
    occurred_at: str, fragment: str
) -> None:
    [(field, problem)] = problems_of({**WON, "occurred_at": occurred_at})
    assert field == "occurred_at"
    assert fragment in problem


def test_the_edges_of_the_time_range_are_accepted() -> None:
    latest = (RECEIVED + timedelta(days=1)).isoformat()
    for occurred_at in (EARLIEST.isoformat(), latest):
        [event] = parse_events(msgspec.json.encode({**WON, "occurred_at": occurred_at}), RECEIVED)
        assert event.received_at == RECEIVED


def test_a_backfill_is_bounded_by_its_own_receipt_or_by_now() -> None:
    far = {**WON, "occurred_at": "9999-12-31T23:59:59Z"}
    assert [f for f, _ in problems_of(far, None)] == ["occurred_at"]
    recorded = {**WON, "occurred_at": "2024-01-01T00:00:00Z", "received_at": "2024-01-01T00:01:00Z"}
    [event] = parse_events(msgspec.json.encode(recorded), None)
    assert event.received_at == datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    future_receipt = {**recorded, "received_at": "9999-12-31T23:59:59Z"}
    assert [f for f, _ in problems_of(future_receipt, None)] == ["received_at"]


def test_durations_and_ratings_are_checked_on_events_built_without_the_ingest_schema() -> None:
    """The CRM adapters decode into the unconstrained CrmEvent: the ranges live here too."""
    base = {"event_id": "c", "tenant": "acme", "occurred_at": RECEIVED, "received_at": RECEIVED}
    call = msgspec.convert(
        {**base, "type": "call", "direction": "in", "answered": True, "duration_s": 1e20},
        CrmEvent,
    )
    rating = msgspec.convert({**base, "type": "rating", "rating": 10**30}, CrmEvent)
    not_a_number = msgspec.structs.replace(call, duration_s=float("nan"))
    assert [f for f, _ in semantic_problems(call)] == ["duration_s"]
    assert [f for f, _ in semantic_problems(rating)] == ["rating"]
    assert [f for f, _ in semantic_problems(not_a_number)] == ["duration_s"]


def test_an_amocrm_price_of_1e30_is_refused_not_published() -> None:
    ctx = Context(
        tenant="acme",
        received_at=datetime(2024, 9, 17, 13, 40, tzinfo=UTC),
        naming=Naming(pipelines={"5389528": "sales"}),
        currency="RUB",
    )
    form = payload("amocrm_leads_status.form").replace(b"price%5D=22500", b"price%5D=1e30")
    with pytest.raises(InvalidEventError) as caught:
        amocrm.normalise(parse_form(form), ctx, str(AMO_ACCOUNT))
    assert caught.value.reason == "unsupported_payload"
    assert caught.value.problems[0]["field"] == "amount"


def test_a_pipedrive_value_of_1e30_is_refused_not_published() -> None:
    body = json.loads(payload("pipedrive_v2_deal_won.json"))
    body["data"]["value"] = 1e30
    ctx = Context(
        tenant="acme",
        received_at=datetime(2026, 5, 15, 18, 0, 5, tzinfo=UTC),
        naming=Naming(pipelines={"1": "sales"}),
    )
    with pytest.raises(InvalidEventError) as caught:
        pipedrive.normalise(pipedrive.view(pipedrive.parse(json.dumps(body).encode())), ctx)
    assert caught.value.reason == "unsupported_payload"
    assert caught.value.problems[0]["field"] == "amount"
