"""Parsing ingest bodies: every bad-input case names its field and problem."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from handlers.validation import parse_events
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import decode_event, encode_event

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
CALL = {
    "event_id": "bx-1",
    "tenant": "acme",
    "type": "call",
    "occurred_at": "2026-11-22T09:00:00+03:00",
    "direction": "in",
    "answered": True,
    "duration_s": 42,
    "manager_id": "17",
}


def body(payload: object) -> bytes:
    return msgspec.json.encode(payload)


def rejected(raw: bytes) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        parse_events(raw, NOW)
    return info.value


def test_one_event_is_parsed_and_stamped_with_received_at() -> None:
    [event] = parse_events(body(CALL), NOW)
    assert event.event_id == "bx-1"
    assert event.occurred_at == datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    assert event.received_at == NOW
    assert event.duration_s == 42


def test_an_array_of_events_is_parsed_in_order() -> None:
    events = parse_events(body([CALL, {**CALL, "event_id": "bx-2"}]), NOW)
    assert [e.event_id for e in events] == ["bx-1", "bx-2"]


def test_malformed_json_is_named() -> None:
    error = rejected(b'{"event_id": "x",')
    assert error.reason == "malformed_json"
    assert "malformed" in str(error.problems[0]["problem"])


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ({"duration_s": "long"}, "duration_s", "Expected `float | null`, got `str`"),
        ({"answered": "yes"}, "answered", "Expected `bool | null`, got `str`"),
        ({"type": "teleport"}, "type", "Invalid enum value 'teleport'"),
        ({"occurred_at": "2026-11-22T09:00:00"}, "occurred_at", "timezone"),
        ({"tenant": "Acme Corp"}, "tenant", "matching regex"),
        ({"currency": "usd"}, "currency", "matching regex"),
        ({"rating": 9}, "rating", "<= 5"),
    ],
)
def test_wrong_types_name_the_field(override: dict[str, object], field: str, fragment: str) -> None:
    error = rejected(body({**CALL, **override}))
    assert error.reason == "invalid_event"
    assert error.problems[0]["field"] == field
    assert fragment in str(error.problems[0]["problem"])


@pytest.mark.parametrize("missing", ["event_id", "tenant", "type", "occurred_at"])
def test_missing_required_fields_are_named(missing: str) -> None:
    payload = {k: v for k, v in CALL.items() if k != missing}
    error = rejected(body(payload))
    assert error.problems == [{"field": missing, "problem": "required field is missing"}]


def test_problem_in_an_array_names_the_index() -> None:
    error = rejected(body([CALL, {**CALL, "duration_s": "x"}]))
    assert error.problems[0]["index"] == 1
    assert error.problems[0]["field"] == "duration_s"


def test_fields_required_by_type_are_checked_after_decoding() -> None:
    payload = {k: v for k, v in CALL.items() if k != "direction"}
    error = rejected(body([CALL, payload]))
    assert error.problems == [
        {"index": 1, "field": "direction", "problem": "required for type 'call'"}
    ]


def test_negative_amount_is_rejected() -> None:
    won = {
        **CALL,
        "type": "deal_stage_changed",
        "entity_id": "d1",
        "pipeline": "p",
        "stage_to": "won",
        "stage_kind": "won",
        "amount": "-5",
        "currency": "EUR",
    }
    error = rejected(body(won))
    assert error.problems == [
        {"field": "amount", "problem": "must be a decimal from 0 to 100,000,000,000,000"}
    ]


def test_an_empty_array_is_rejected() -> None:
    assert rejected(b"[]").reason == "empty_batch"


def test_a_json_value_that_is_not_an_event_is_rejected() -> None:
    error = rejected(b'"hello"')
    assert error.reason == "invalid_event"
    assert "Expected" in str(error.problems[0]["problem"])


def test_unknown_fields_are_tolerated_for_forward_compatibility() -> None:
    [event] = parse_events(body({**CALL, "added_in_v2": 1}), NOW)
    assert event.event_id == "bx-1"


def test_the_backfill_flag_is_the_senders_header_never_the_bodys() -> None:
    [live] = parse_events(body({**CALL, "backfill": True}), NOW)
    assert live.backfill is False  # a live post cannot hide its contacts from the list
    [history] = parse_events(body(CALL), None, backfill=True)
    assert history.backfill is True
    # on the topic: written only when set, and a record without it reads as live
    assert b'"backfill":true' in encode_event(history)
    assert b"backfill" not in encode_event(live)
    assert decode_event(encode_event(live)).backfill is False
    assert decode_event(encode_event(history)).backfill is True
