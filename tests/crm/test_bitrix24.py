"""Bitrix24: the webhook normaliser and the REST-record normaliser, on real-format payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from handlers.crm import bitrix24
from handlers.crm.bitrix24_records import (
    activity_events,
    deal_events,
    lead_events,
    stage_dictionary,
    stage_kinds,
)
from handlers.crm.common import EnrichmentRequest, EntityState, Naming, epoch_ms
from handlers.crm.forms import parse_form
from metrics.views.kpi_view import present
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import StageKind
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from tests.crm.support import B24_MEMBER, B24_TOKEN, payload, payload_json
from tests.kpi_memory import MemoryStore
from tests.oracle.batch import TOTAL, compute_components

RECEIVED = datetime(2026, 3, 12, 13, 41, tzinfo=UTC)
MSK = ZoneInfo("Europe/Moscow")


def form(name: str) -> dict[str, Any]:
    return parse_form(payload(name))


def request(event: str, entity: str = "deal", entity_id: str = "7405") -> EnrichmentRequest:
    return EnrichmentRequest(
        crm="bitrix24",
        tenant="acme",
        account=B24_MEMBER,
        event=event,
        entity=entity,  # type: ignore[arg-type]  # the tests pass valid literals
        entity_id=entity_id,
        received_at=RECEIVED,
    )


def deal(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = payload_json("bitrix24_rest_deal.json")["result"]
    return {**record, **changes}


KINDS = stage_kinds(payload_json("bitrix24_rest_status_list_c1.json")["result"])
NAMING = Naming(stages={"C1:WON": "won"}, pipelines={"1": "sales"})


# --- the webhook ---------------------------------------------------------------------


def test_the_token_is_checked_in_constant_time_and_the_portal_when_configured() -> None:
    body = form("bitrix24_deal_update.form")
    assert bitrix24.authentic(body, B24_TOKEN)
    assert bitrix24.authentic(body, B24_TOKEN, member_id=B24_MEMBER, domain="ACME.bitrix24.ru")
    assert not bitrix24.authentic(body, "wrong-token")
    assert not bitrix24.authentic(body, B24_TOKEN, member_id="another-portal")
    assert not bitrix24.authentic(body, B24_TOKEN, domain="evil.bitrix24.ru")
    assert not bitrix24.authentic(parse_form(b"event=ONCRMDEALADD"), B24_TOKEN)


@pytest.mark.parametrize(
    ("name", "event", "entity", "entity_id"),
    [
        ("bitrix24_deal_update.form", "ONCRMDEALUPDATE", "deal", "7405"),
        ("bitrix24_deal_add.form", "ONCRMDEALADD", "deal", "7405"),
        ("bitrix24_deal_move_category.form", "ONCRMDEALMOVETOCATEGORY", "deal", "7405"),
        ("bitrix24_lead_add.form", "ONCRMLEADADD", "lead", "1024"),
        ("bitrix24_activity_add.form", "ONCRMACTIVITYADD", "activity", "999"),
    ],
)
def test_id_only_events_become_enrichment_requests(
    name: str, event: str, entity: str, entity_id: str
) -> None:
    result = bitrix24.normalise(form(name), tenant="acme", received_at=RECEIVED)
    assert result.events == []
    [queued] = result.requests
    assert (queued.crm, queued.event, queued.entity, queued.entity_id) == (
        "bitrix24",
        event,
        entity,
        entity_id,
    )
    assert queued.account == B24_MEMBER
    assert queued.key == b"acme:bitrix24"
    # Tokens the app subscription sends never travel further.
    assert "access_token" not in repr(queued)


def test_a_category_move_names_the_new_stage() -> None:
    result = bitrix24.normalise(
        form("bitrix24_deal_move_category.form"), tenant="acme", received_at=RECEIVED
    )
    assert result.requests[0].value == "C1:NEW"


def test_a_missed_incoming_call_is_a_call_event_at_its_start_time() -> None:
    result = bitrix24.normalise(
        form("bitrix24_call_end_missed.form"), tenant="acme", received_at=RECEIVED
    )
    [call] = result.events
    assert call.type == "call"
    assert call.direction == "in"
    assert call.answered is False
    assert call.duration_s == 0
    assert call.occurred_at == datetime(2026, 3, 11, 14, 28, 46, tzinfo=UTC)  # not `ts`
    assert call.received_at == RECEIVED
    assert call.manager_id == "1269"
    assert call.event_id == f"bitrix24:{B24_MEMBER}:call:externalCall.7b0c2f1a9d8e4c3b.1773239326"
    assert call.source == "bitrix24"


def test_an_answered_outgoing_call_keeps_duration_and_client() -> None:
    [call] = bitrix24.normalise(
        form("bitrix24_call_end_answered.form"), tenant="acme", received_at=RECEIVED
    ).events
    assert (call.direction, call.answered, call.duration_s) == ("out", True, 95.0)
    assert call.client_id == "C_84"
    # The phone number is in the payload but never in the event.
    assert "+7495" not in repr(call)


@pytest.mark.parametrize(
    ("changes", "answered", "direction"),
    [
        ({"data[CALL_FAILED_CODE]": "603-S"}, False, "in"),  # a string, not an int
        ({"data[CALL_FAILED_CODE]": "OTHER"}, False, "in"),
        ({"data[CALL_TYPE]": "3", "data[CALL_FAILED_CODE]": "200"}, True, "in"),
        ({"data[CALL_TYPE]": "4"}, False, "out"),
        ({"data[CALL_FAILED_CODE]": None, "data[CALL_DURATION]": "12"}, True, "in"),
    ],
)
def test_call_codes(changes: dict[str, str | None], answered: bool, direction: str) -> None:
    body = form("bitrix24_call_end_missed.form")
    for key, value in changes.items():
        name = key[len("data[") : -1]
        if value is None:
            body["data"].pop(name)
        else:
            body["data"][name] = value
    [call] = bitrix24.normalise(body, tenant="acme", received_at=RECEIVED).events
    assert (call.answered, call.direction) == (answered, direction)


def test_an_info_call_and_unknown_events_are_ignored() -> None:
    info = form("bitrix24_call_end_missed.form")
    info["data"]["CALL_TYPE"] = "5"
    assert bitrix24.normalise(info, tenant="acme", received_at=RECEIVED).ignored == [
        "ONVOXIMPLANTCALLEND:info_call"
    ]
    for name in ("bitrix24_contact_add.form", "bitrix24_openline_message.form"):
        result = bitrix24.normalise(form(name), tenant="acme", received_at=RECEIVED)
        assert result.events == []
        assert result.requests == []
        assert len(result.ignored) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"ts=1&auth[member_id]=m", "event"),
        (b"event=ONCRMDEALUPDATE&auth[member_id]=m", "data[FIELDS][ID]"),
        (b"event=ONCRMDEALUPDATE&data[FIELDS][ID]=abc&auth[member_id]=m", "data[FIELDS][ID]"),
        (b"event=ONCRMDEALUPDATE&data[FIELDS][ID]=5", "auth"),
        (b"event=ONVOXIMPLANTCALLEND&data[CALL_TYPE]=2&auth[member_id]=m", "data[CALL_ID]"),
        (
            b"event=ONVOXIMPLANTCALLEND&data[CALL_ID]=c1&data[CALL_TYPE]=2&auth[member_id]=m",
            "data[CALL_START_DATE]",
        ),
        (
            b"event=ONVOXIMPLANTCALLEND&data[CALL_ID]=c1&data[CALL_TYPE]=9&auth[member_id]=m",
            "data[CALL_TYPE]",
        ),
    ],
)
def test_unusable_known_events_are_422_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        bitrix24.normalise(parse_form(body), tenant="acme", received_at=RECEIVED)
    assert caught.value.reason == "unsupported_payload"
    assert caught.value.problems[0]["field"] == field


# --- the fetched records ---------------------------------------------------------------


def test_stage_dictionaries_read_both_semantics_shapes() -> None:
    assert KINDS == {
        "C1:NEW": "open",
        "C1:PREPARATION": "open",
        "C1:WON": "won",
        "C1:LOSE": "lost",
        "C1:3": "lost",  # a custom failure stage: only EXTRA.SEMANTICS says so
    }
    assert stage_dictionary("0") == "DEAL_STAGE"
    assert stage_dictionary("1") == "DEAL_STAGE_1"


def test_a_won_deal_after_a_known_stage_is_a_stage_change_with_revenue() -> None:
    state = EntityState(stage="C1:PREPARATION", pipeline="1", at_ms=epoch_ms(RECEIVED) - 10**8)
    events, new = deal_events(
        request("ONCRMDEALUPDATE"),
        deal(),
        kinds=KINDS,
        state=state,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED - timedelta(days=30),
    )
    [moved] = events
    assert moved.type == "deal_stage_changed"
    assert (moved.stage_from, moved.stage_to, moved.stage_kind) == ("C1:PREPARATION", "won", "won")
    assert moved.pipeline == "sales"
    assert (moved.amount, moved.currency) == (Decimal("1000000.00"), "RUB")
    assert moved.manager_id == "17"
    assert moved.occurred_at == datetime(2026, 3, 12, 13, 40, tzinfo=UTC)  # MOVED_TIME
    assert (moved.client_id, moved.lead_id, moved.source_channel) == ("C_84", "L_1024", "CALLBACK")
    assert moved.event_id == f"bitrix24:{B24_MEMBER}:deal:7405:stage:C1:WON:1773322800000"
    assert new == EntityState(stage="C1:WON", pipeline="1", at_ms=1773322800000)


def test_won_and_lost_come_from_semantics_not_codes() -> None:
    # A custom success stage; a misleading code.
    kinds: dict[str, StageKind] = {"C1:DONE": "won", "C1:WON": "open"}
    for stage, kind in (("C1:DONE", "won"), ("C1:WON", "open"), ("C1:UNLISTED", "won")):
        events, _ = deal_events(
            request("ONCRMDEALUPDATE"),
            deal(STAGE_ID=stage),  # STAGE_SEMANTIC_ID "S" is the fallback for unlisted stages
            kinds=kinds,
            state=None,
            naming=Naming(),
            naive_zone=MSK,
            backfill_since=RECEIVED - timedelta(days=30),
        )
        assert events[-1].stage_kind == kind


def test_the_same_deal_state_twice_gives_nothing_new() -> None:
    backfill = RECEIVED - timedelta(days=30)
    first, state = deal_events(
        request("ONCRMDEALADD"),
        deal(),
        kinds=KINDS,
        state=None,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=backfill,
    )
    assert [e.type for e in first] == ["deal_created", "deal_stage_changed"]
    assert first[1].stage_from is None
    again, unchanged = deal_events(
        request("ONCRMDEALUPDATE"),
        deal(),
        kinds=KINDS,
        state=state,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=backfill,
    )
    assert again == []
    assert unchanged is None
    replayed, _ = deal_events(
        request("ONCRMDEALADD"),
        deal(),
        kinds=KINDS,
        state=state,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=backfill,
    )
    # A repeated ADD repeats the creation with the same id: the worker drops it.
    assert [e.event_id for e in replayed] == [first[0].event_id]


def test_an_update_of_an_unknown_recent_deal_recovers_a_lost_add() -> None:
    events, state = deal_events(
        request("ONCRMDEALUPDATE"),
        deal(),
        kinds=KINDS,
        state=None,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED - timedelta(days=30),
    )
    add_events, _ = deal_events(
        request("ONCRMDEALADD"),
        deal(),
        kinds=KINDS,
        state=None,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED - timedelta(days=30),
    )
    assert [e.event_id for e in events] == [e.event_id for e in add_events]
    assert state is not None


def test_an_update_of_an_old_unknown_deal_only_remembers_its_stage() -> None:
    events, state = deal_events(
        request("ONCRMDEALUPDATE"),
        deal(),
        kinds=KINDS,
        state=None,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED + timedelta(days=1),
    )
    assert events == []
    assert state is not None
    assert state.stage == "C1:WON"


def test_an_older_record_than_the_state_does_not_rewind_it() -> None:
    newer = EntityState(stage="C1:LOSE", pipeline="1", at_ms=1773322800000 + 60_000)
    events, state = deal_events(
        request("ONCRMDEALUPDATE"),
        deal(),
        kinds=KINDS,
        state=newer,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED - timedelta(days=30),
    )
    assert events == []
    assert state is None


def test_naive_bitrix_dates_are_read_in_the_configured_zone() -> None:
    events, _ = deal_events(
        request("ONCRMDEALADD"),
        deal(DATE_CREATE="2026-03-02 10:15:00", MOVED_TIME="2026-03-02 10:15:00"),
        kinds=KINDS,
        state=None,
        naming=NAMING,
        naive_zone=MSK,
        backfill_since=RECEIVED - timedelta(days=30),
    )
    assert events[0].occurred_at == datetime(2026, 3, 2, 7, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"STAGE_ID": None}, "STAGE_ID"),
        ({"DATE_CREATE": None}, "DATE_CREATE"),
        ({"ID": "7406"}, "ID"),
        ({"OPPORTUNITY": "много"}, "OPPORTUNITY"),
        ({"MOVED_TIME": "yesterday"}, "MOVED_TIME"),
    ],
)
def test_unusable_deal_records(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        deal_events(
            request("ONCRMDEALUPDATE"),
            deal(**changes),
            kinds=KINDS,
            state=None,
            naming=NAMING,
            naive_zone=MSK,
            backfill_since=RECEIVED,
        )
    assert caught.value.problems[0].get("field") == field


def lead(**changes: Any) -> dict[str, Any]:
    return {**payload_json("bitrix24_rest_lead.json")["result"], **changes}


def test_a_new_lead_then_a_status_move() -> None:
    backfill = RECEIVED - timedelta(days=30)
    created, state = lead_events(
        request("ONCRMLEADADD", "lead", "1024"),
        lead(),
        state=None,
        naming=Naming(),
        naive_zone=MSK,
        backfill_since=backfill,
    )
    [new] = created
    assert (new.type, new.entity_id, new.source_channel) == ("lead_created", "L_1024", "WEB")
    assert new.occurred_at == datetime(2026, 3, 2, 6, 58, tzinfo=UTC)
    assert "Петров" not in repr(new)
    moved, _ = lead_events(
        request("ONCRMLEADUPDATE", "lead", "1024"),
        lead(STATUS_ID="JUNK", STATUS_SEMANTIC_ID="F", MOVED_TIME="2026-03-03T10:00:00+03:00"),
        state=state,
        naming=Naming(),
        naive_zone=MSK,
        backfill_since=backfill,
    )
    [status] = moved
    assert (status.type, status.stage_from, status.stage_to) == (
        "lead_stage_changed",
        "NEW",
        "JUNK",
    )
    assert status.stage_kind == "lost"


def test_an_email_activity_is_a_message_and_the_text_stays_behind() -> None:
    record = payload_json("bitrix24_rest_activity_email.json")["result"]
    [email] = activity_events(
        request("ONCRMACTIVITYADD", "activity", "999"), record, naive_zone=MSK
    )
    assert (email.type, email.channel, email.direction) == ("message", "email", "in")
    assert email.client_id == "C_84"
    assert email.event_id == f"bitrix24:{B24_MEMBER}:activity:999:email"
    assert "счёт" not in repr(email)


def test_meetings_count_when_done_and_telephony_activities_are_skipped() -> None:
    base = payload_json("bitrix24_rest_activity_email.json")["result"]
    meeting = {**base, "TYPE_ID": "1", "PROVIDER_ID": "CRM_MEETING", "OWNER_TYPE_ID": "2"}
    act = request("ONCRMACTIVITYUPDATE", "activity", "999")
    assert activity_events(act, meeting, naive_zone=MSK) == []
    [held] = activity_events(act, {**meeting, "COMPLETED": "Y"}, naive_zone=MSK)
    assert (held.type, held.entity_id) == ("meeting", "84")
    # The docs' crm.activity.get example: a telephony call, reported by ONVOXIMPLANTCALLEND.
    voximplant = {**base, "TYPE_ID": "2", "PROVIDER_ID": "VOXIMPLANT_CALL", "COMPLETED": "Y"}
    assert activity_events(act, voximplant, naive_zone=MSK) == []
    logged = {**base, "TYPE_ID": "2", "PROVIDER_ID": "CRM_TODO", "COMPLETED": "Y", "DIRECTION": "2"}
    [call] = activity_events(act, logged, naive_zone=MSK)
    assert (call.type, call.direction, call.answered) == ("call", "out", True)


def test_deals_already_mid_funnel_on_the_first_day_keep_conversion_at_most_one() -> None:
    """Issue 17 item 6: two updates of deals found in C1:PREPARATION (created long before
    the CRM was connected) and one add in C1:NEW gave new → preparation 2/1."""
    since = RECEIVED - timedelta(days=1)
    moved = "2026-03-12T15:00:00+03:00"
    events = []
    for deal_id, event, stage, created in (
        ("1", "ONCRMDEALUPDATE", "C1:PREPARATION", "2025-11-02T10:00:00+03:00"),
        ("2", "ONCRMDEALUPDATE", "C1:PREPARATION", "2025-12-02T10:00:00+03:00"),
        ("3", "ONCRMDEALADD", "C1:NEW", moved),
    ):
        found, _ = deal_events(
            request(event, entity_id=deal_id),
            deal(ID=deal_id, STAGE_ID=stage, DATE_CREATE=created, MOVED_TIME=moved),
            kinds=KINDS,
            state=None,
            naming=NAMING,
            naive_zone=MSK,
            backfill_since=since,
        )
        events += found
    assert [e.type for e in events] == [
        "deal_stage_changed", "deal_stage_changed", "deal_created", "deal_stage_changed",
    ]  # fmt: skip
    stages = [{"id": "C1:NEW"}, {"id": "C1:PREPARATION"}, {"id": "won", "kind": "won"}]
    config = TenantConfig.model_validate({"pipelines": {"sales": {"stages": stages}}})
    store = MemoryStore(TenantDirectory(TenantsFile(tenants={"acme": config})), with_sla=False)
    store.apply_batch(events)
    now = RECEIVED
    for window in ("today", "all"):
        group = store.components("acme", window, None, now)[TOTAL_GROUP]
        assert group == compute_components(events, config, "acme", window, None, now)[TOTAL]
        shown = {
            kpi.name: (kpi.numerator, kpi.denominator)
            for kpi in present(group, config, window, now)
            if dict(kpi.labels).get("from_stage") == "C1:NEW"
        }
        # flow: of the one entry into NEW, none moved on yet; cohort: the same deal.
        assert shown["conversion_flow"] == (0, 1)
        assert shown["conversion_cohort"] == (0, 1)
        assert group["stage_entries:sales:C1:PREPARATION"] == 2
