"""amoCRM / Kommo webhooks on real-format bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from handlers.crm import amocrm
from handlers.crm.common import Context, Naming, Normalised
from handlers.crm.forms import parse_form
from salespulse.core.errors import InvalidEventError
from tests.crm.support import AMO_ACCOUNT, payload

RECEIVED = datetime(2024, 9, 17, 13, 40, tzinfo=UTC)
CTX = Context(
    tenant="acme",
    received_at=RECEIVED,
    naming=Naming(pipelines={"5389528": "sales"}),
    zone=ZoneInfo("Europe/Moscow"),
    currency="RUB",
)
ACCOUNT = str(AMO_ACCOUNT)


def normalise(name: str, ctx: Context = CTX) -> Normalised:
    return amocrm.normalise(parse_form(payload(name)), ctx, ACCOUNT)


def test_the_url_secret_and_the_account_are_checked() -> None:
    assert amocrm.authentic_url_secret("s3cret", "s3cret")
    assert not amocrm.authentic_url_secret("s3cre", "s3cret")
    assert not amocrm.authentic_url_secret("", "")
    form = parse_form(payload("amocrm_leads_status.form"))
    assert amocrm.authentic_account(form, AMO_ACCOUNT)
    assert not amocrm.authentic_account(form, 1)
    # An item of another account inside a body that claims ours.
    form["leads"]["status"][0]["account_id"] = "777"  # type: ignore[index,call-overload]  # test edit
    assert not amocrm.authentic_account(form, AMO_ACCOUNT)
    # [U] no account id anywhere: the URL secret alone vouches for it.
    assert amocrm.authentic_account(parse_form(b"leads[delete][0][id]=5"), AMO_ACCOUNT)


def test_a_status_change_to_142_is_a_won_deal_and_a_lead_stage_change() -> None:
    deal, lead = normalise("amocrm_leads_status.form").events
    assert deal.type == "deal_stage_changed"
    assert (deal.entity_id, deal.pipeline) == ("25399013", "sales")
    assert (deal.stage_from, deal.stage_to, deal.stage_kind) == ("7039101", "142", "won")
    assert (deal.amount, deal.currency) == (Decimal(22500), "RUB")
    assert deal.manager_id == "2079676"
    assert deal.lead_id == "L_25399013"
    assert deal.occurred_at == datetime.fromtimestamp(1726572758, UTC)
    assert deal.event_id == f"amocrm:{ACCOUNT}:deal:25399013:stage:142:1726572758"
    assert (lead.type, lead.entity_id, lead.stage_to) == ("lead_stage_changed", "L_25399013", "142")
    assert "Заявка" not in repr(deal) + repr(lead)


def test_lost_is_143_in_any_pipeline() -> None:
    body = payload("amocrm_leads_status.form").replace(b"status_id%5D=142", b"status_id%5D=143")
    deal, _ = amocrm.normalise(parse_form(body), CTX, ACCOUNT).events
    assert deal.stage_kind == "lost"


def test_a_new_lead_is_a_lead_a_deal_and_an_entry_into_its_first_stage() -> None:
    lead, deal, entry = normalise("amocrm_leads_add.form").events
    assert (lead.type, lead.entity_id) == ("lead_created", "L_25399013")
    assert (deal.type, deal.entity_id, deal.pipeline) == ("deal_created", "25399013", "sales")
    assert (entry.stage_from, entry.stage_to, entry.stage_kind) == (None, "7039101", "open")
    assert lead.occurred_at == deal.occurred_at == datetime.fromtimestamp(1726566309, UTC)


def test_a_short_status_item_uses_arrival_time_and_the_transition_as_identity() -> None:
    deal, _ = normalise("amocrm_leads_status_short.form").events
    assert deal.occurred_at == RECEIVED
    assert deal.event_id == f"amocrm:{ACCOUNT}:deal:916659:stage:45648904:from-45648901"
    assert deal.pipeline == "5080363"  # not in pipeline_map: the CRM id stands


def test_an_update_without_a_status_change_is_ignored_but_one_with_it_counts() -> None:
    assert normalise("amocrm_leads_update.form").ignored == ["leads[update]"]
    moved = payload("amocrm_leads_status.form").replace(b"%5Bstatus%5D", b"%5Bupdate%5D")
    events = amocrm.normalise(parse_form(moved), CTX, ACCOUNT).events
    # Same ids as the leads[status] webhook for the same move: counted once.
    assert [e.event_id for e in events] == [
        e.event_id for e in normalise("amocrm_leads_status.form").events
    ]


def test_call_notes_in_and_out_with_duration_and_outcome() -> None:
    incoming, outgoing = normalise("amocrm_call_note.form").events
    assert (incoming.type, incoming.direction, incoming.answered) == ("call", "in", True)
    assert incoming.duration_s == 73
    assert incoming.entity_id == "25399013"
    assert incoming.event_id == f"amocrm:{ACCOUNT}:note:148276633"
    assert incoming.occurred_at == datetime.fromtimestamp(1726580291, UTC)
    assert (outgoing.direction, outgoing.answered, outgoing.client_id) == (
        "out",
        False,
        "C_31245587",
    )
    # Local time "2024-09-17 16:40:00" in Moscow (UTC+3): no created_at on this note.
    assert outgoing.occurred_at == datetime(2024, 9, 17, 13, 40, tzinfo=UTC)
    assert "+7916" not in repr(incoming) + repr(outgoing)


@pytest.mark.parametrize(
    ("text", "answered", "duration"),
    [
        ('{"DURATION": "40", "call_status": "7"}', False, 40.0),  # busy
        ('{"call_status": "4"}', True, None),
        ('{"call_status": "3"}', False, None),
        ("Входящий звонок", False, None),  # a text that is not JSON
        ('{"DURATION": 15}', True, 15.0),
    ],
)
def test_call_outcome_from_the_note_text(text: str, answered: bool, duration: float | None) -> None:
    form = parse_form(payload("amocrm_call_note.form"))
    form["leads"]["note"][0]["note"]["text"] = text  # type: ignore[index,call-overload]  # test edit
    [call, _] = amocrm.normalise(form, CTX, ACCOUNT).events
    assert (call.answered, call.duration_s) == (answered, duration)


def test_chat_messages_in_both_directions_without_their_text() -> None:
    incoming, outgoing = normalise("amocrm_message_add.form").events
    assert (incoming.type, incoming.direction, incoming.channel) == ("message", "in", "messenger")
    assert (incoming.conversation_id, incoming.client_id) == ("166", "C_31245587")
    assert incoming.entity_id == "25399013"
    assert incoming.source_channel == "telegram"
    assert incoming.event_id == f"amocrm:{ACCOUNT}:message:b26bbe6d-a691-4a8b-b269-29df5fb9dbea"
    assert outgoing.direction == "out"
    assert outgoing.entity_id is None  # this one names no lead
    assert "Здравствуйте" not in repr(incoming)
    assert "Иван" not in repr(incoming)


def test_a_talk_rating_counts_and_an_unrated_talk_is_ignored() -> None:
    result = normalise("amocrm_talk_update.form")
    [rating] = result.events
    assert (rating.type, rating.rating, rating.conversation_id) == ("rating", 5, "166")
    assert result.ignored == ["talk[add]"]


def test_contacts_updates_are_ignored() -> None:
    result = normalise("amocrm_contacts_update.form")
    assert result.events == []
    assert result.ignored == ["contacts[update]"]


@pytest.mark.parametrize(
    "body",
    [
        b"leads[status][0][status_id]=142&leads[status][0][pipeline_id]=1",
        b"leads[status][0][id]=5&leads[status][0][pipeline_id]=1",
        b"message[add][0][id]=m1&message[add][0][type]=sideways&message[add][0][created_at]=1",
        b"message[add][0][id]=m1&message[add][0][type]=incoming",
        b"leads[note][0][note][note_type]=10&leads[note][0][note][id]=7",
        b"leads[status][0][id]=5&leads[status][0][status_id]=1&leads[status][0][pipeline_id]=1"
        b"&leads[status][0][price]=lots",
    ],
)
def test_unusable_items_are_422(body: bytes) -> None:
    with pytest.raises(InvalidEventError) as caught:
        amocrm.normalise(parse_form(body), CTX, ACCOUNT)
    assert caught.value.reason == "unsupported_payload"


def test_unknown_groups_and_scalars_are_ignored() -> None:
    result = amocrm.normalise(
        parse_form(b"task[add][0][id]=1&unsorted[add][0][uid]=x&weird=1"), CTX, ACCOUNT
    )
    assert sorted(result.ignored) == ["task[add]", "unsorted[add]", "weird"]
