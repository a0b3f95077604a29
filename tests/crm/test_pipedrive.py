"""Pipedrive webhooks v2 (and v1) on real-format bodies; HTTP Basic auth."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from handlers.crm import pipedrive
from handlers.crm.common import Context, Naming, Normalised
from salespulse.core.errors import InvalidEventError
from tests.crm.support import payload

RECEIVED = datetime(2026, 5, 15, 18, 0, 5, tzinfo=UTC)
CTX = Context(tenant="acme", received_at=RECEIVED, naming=Naming(pipelines={"1": "sales"}))


def normalise(name: str) -> Normalised:
    return pipedrive.normalise(pipedrive.view(pipedrive.parse(payload(name))), CTX)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth() -> None:
    assert pipedrive.authentic(
        basic("salespulse", "pw:with:colons"), "salespulse", "pw:with:colons"
    )
    assert pipedrive.authentic(
        basic("salespulse", "pw").replace("Basic", "basic"), "salespulse", "pw"
    )
    assert not pipedrive.authentic(basic("salespulse", "nope"), "salespulse", "pw")
    assert not pipedrive.authentic(basic("other", "pw"), "salespulse", "pw")
    assert not pipedrive.authentic("Bearer abc", "salespulse", "pw")
    assert not pipedrive.authentic("Basic %%%", "salespulse", "pw")
    assert not pipedrive.authentic(None, "salespulse", "pw")
    assert not pipedrive.authentic(basic("salespulse", ""), "salespulse", "")


def test_a_won_deal_is_a_stage_change_to_won_from_its_stage() -> None:
    [won] = normalise("pipedrive_v2_deal_won.json").events
    assert (won.stage_from, won.stage_to, won.stage_kind) == ("5", "won", "won")
    assert (won.amount, won.currency) == (Decimal(25000), "EUR")
    assert (won.manager_id, won.pipeline, won.client_id) == ("23836724", "sales", "C_1201")
    assert won.occurred_at == datetime(2026, 5, 15, 18, 0, tzinfo=UTC)
    assert won.event_id == "pipedrive:13923453:deal:746:won:1778868000000"


def test_a_stage_move_comes_from_previous() -> None:
    [moved] = normalise("pipedrive_v2_deal_stage.json").events
    assert (moved.stage_from, moved.stage_to, moved.stage_kind) == ("3", "5", "open")
    assert moved.occurred_at == datetime(2026, 5, 10, 12, 0, tzinfo=UTC)


def test_v1_and_v2_of_the_same_move_share_the_event_id() -> None:
    [v1] = normalise("pipedrive_v1_deal_updated.json").events
    [v2] = normalise("pipedrive_v2_deal_stage.json").events
    assert v1.event_id == v2.event_id
    assert (v1.stage_from, v1.stage_to, v1.manager_id) == ("3", "5", "23836724")


def test_a_created_deal_is_created_and_enters_its_stage() -> None:
    created, entry = normalise("pipedrive_v2_deal_create.json").events
    assert (created.type, created.entity_id, created.client_id) == ("deal_created", "747", "CO_89")
    assert created.occurred_at == datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
    assert (entry.stage_from, entry.stage_to, entry.currency) == (None, "1", "USD")


def test_reopening_a_won_deal_enters_its_stage_again() -> None:
    body = (
        payload("pipedrive_v2_deal_won.json")
        .replace(b'"status":"won"', b'"status":"open"')
        .replace(b'"previous":{"status":"open"}', b'"previous":{"status":"won"}')
    )
    [reopened] = pipedrive.normalise(pipedrive.view(pipedrive.parse(body)), CTX).events
    assert (reopened.stage_from, reopened.stage_to, reopened.stage_kind) == ("won", "5", "open")


def test_a_call_marked_done_is_a_call() -> None:
    [call] = normalise("pipedrive_v2_activity_call.json").events
    assert (call.type, call.direction, call.answered, call.duration_s) == (
        "call",
        "out",
        True,
        240.0,
    )
    assert (call.entity_id, call.client_id) == ("746", "C_1201")
    assert call.event_id == "pipedrive:13923453:activity:5521:done"


def test_a_rename_and_other_entities_are_ignored() -> None:
    assert normalise("pipedrive_v2_person_change.json").ignored == ["person.change"]
    rename = payload("pipedrive_v2_deal_stage.json").replace(
        b'"previous":{"stage_id":3,', b'"previous":{"title":"Acme Corp",'
    )
    assert pipedrive.normalise(pipedrive.view(pipedrive.parse(rename)), CTX).ignored == [
        "deal.change"
    ]
    assert "Jane" not in repr(normalise("pipedrive_v2_person_change.json"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "malformed_payload"),
        (b"[]", "unsupported_payload"),
        (b'{"data": {}}', "unsupported_payload"),
        (
            b'{"meta": {"action": "create", "entity": "deal"}, "data": {"stage_id": 1}}',
            "unsupported_payload",
        ),
        (
            b'{"meta": {"action": "create", "entity": "deal"}, "data": {"id": 1, "stage_id": 1}}',
            "unsupported_payload",  # no time anywhere
        ),
    ],
)
def test_bodies_we_cannot_use(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        pipedrive.normalise(pipedrive.view(pipedrive.parse(body)), CTX)
    assert caught.value.reason == reason


def test_meta_timestamp_as_unix_seconds_is_read_too() -> None:
    body = (
        b'{"meta": {"action": "create", "entity": "deal", "timestamp": 1778837400,'
        b' "company_id": 1}, "data": {"id": 9, "stage_id": 1, "pipeline_id": 1}}'
    )
    created, _ = pipedrive.normalise(pipedrive.view(pipedrive.parse(body)), CTX).events
    assert created.occurred_at == datetime.fromtimestamp(1778837400, UTC)
