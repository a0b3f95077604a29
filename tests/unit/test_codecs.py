"""The store's codecs (salespulse/core/kpi/codecs.py): every value reads back as written,
and is written byte for byte as the store already holds it (the formats each side spelled
out before the codecs), so existing data stays readable."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from metrics.read.waiting import classify
from metrics.read.won_deals import won_record
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import NO_VALUE
from salespulse.core.kpi.codecs import (
    FIELD_WIDTH,
    WaitingMember,
    WonDeal,
    conversation_ref,
    decode_field,
    decode_received_s,
    decode_waiting_member,
    decode_won,
    encode_field,
    encode_received_ms,
    encode_waiting_member,
    encode_won,
    frame_state,
    public_conversation_id,
    split_stage_member,
    split_state,
    stage_member,
)
from salespulse.core.kpi.redis_layout import SEP
from streams.conversation_clock import CONVERSATION_STATE, conversations, waits
from streams.entity_state import DEAL_STATE, LEAD_STATE, DealState, LeadState, join_deal, join_lead
from streams.fold import DEAL_TYPES, LEAD_TYPES
from streams.sla_fold import waiting_member
from tests.helpers import T0, make_event
from tests.histories import CONFIG, histories

# What events.Ident admits: no control characters (so no SEP), up to 200 characters, and
# what a JSON body can carry (no lone surrogates: UTF-8 cannot encode them).
ids = st.text(st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1, max_size=200)
optional_ids = st.none() | ids
instants = st.integers(min_value=0, max_value=2**53 - 1)


@given(st.lists(ids | st.just(NO_VALUE), min_size=FIELD_WIDTH, max_size=FIELD_WIDTH))
def test_a_kpi_field_reads_back_whatever_its_ids_hold(parts: list[str]) -> None:
    assert decode_field(encode_field(tuple(parts))) == parts


def test_a_kpi_field_leaves_out_its_empty_dimensions_at_the_end() -> None:
    assert encode_field(("calls", "m-7", "none", "none", "none")) == b'["calls","m-7"]'
    pipeline_only = ("won", "none", "none", "sales", "none")
    assert encode_field(pipeline_only) == b'["won","none","none","sales"]'
    assert encode_field(("none", "none", "none", "none", "none")) == b'["none"]'
    # the full arrays a store written before holds read back as the shorter ones
    full = b'["calls","m-7","none","none","none"]'
    assert decode_field(full) == decode_field(b'["calls","m-7"]')


@given(st.integers(min_value=0, max_value=2**53), st.text())
def test_a_framed_state_splits_into_its_version_and_json(version: int, text: str) -> None:
    state_json = text.encode()
    stored = frame_state(version, state_json)
    # what apply_batch.lua stored itself before: string.format('%d:', version) .. json
    assert stored == f"{version}:{text}"
    assert split_state(stored.encode()) == (version, state_json)


def _joined(events: list[CrmEvent]) -> tuple[dict[str, DealState], dict[str, LeadState]]:
    deals: dict[str, DealState] = {}
    leads: dict[str, LeadState] = {}
    for event in events:
        if event.entity_id is None:
            continue
        if event.type in DEAL_TYPES:
            join_deal(deals.setdefault(event.entity_id, DealState()), event)
        elif event.type in LEAD_TYPES:
            join_lead(leads.setdefault(event.entity_id, LeadState()), event)
    return deals, leads


@given(histories(), st.integers(min_value=0, max_value=2**40))
def test_entity_states_load_back_as_stored(events: list[CrmEvent], version: int) -> None:
    deals, leads = _joined(events)
    for deal in deals.values():
        blob = DEAL_STATE.encode(deal)
        assert blob == msgspec.json.encode(deal)  # the fold's encoding before the codec
        assert DEAL_STATE.load(frame_state(version, blob).encode()) == (version, deal)
    for lead in leads.values():
        blob = LEAD_STATE.encode(lead)
        assert blob == msgspec.json.encode(lead)
        assert LEAD_STATE.load(frame_state(version, blob).encode()) == (version, lead)
    for conversation in conversations(events).values():
        blob = CONVERSATION_STATE.encode(conversation)
        assert blob == msgspec.json.encode(conversation)
        assert CONVERSATION_STATE.load(frame_state(version, blob).encode()) == (
            version,
            conversation,
        )


def test_a_deal_state_keeps_its_array_form() -> None:
    state = DealState(
        created=5, entries={f"sales{SEP}new": 6}, current=(6, "e", "sales", "new", "")
    )
    # the trailing {} is `again`, the re-entries (added last so older states decode)
    assert DEAL_STATE.encode(state) == b'[5,{"sales\\u001fnew":6},[6,"e","sales","new",""],{},{}]'
    older = b'[5,{"sales\\u001fnew":6},[6,"e","sales","new",""],{}]'
    assert DEAL_STATE.decode(older) == state


won_deals = st.builds(
    WonDeal,
    instants,
    st.none() | st.integers(min_value=-(2**53), max_value=2**53),
    optional_ids,
    optional_ids,
    ids,
    ids,
    ids,
    ids,
)


@given(won_deals, ids)
def test_a_won_record_reads_back_as_written(record: WonDeal, deal: str) -> None:
    raw = encode_won(record)
    # the list streams/entities.py made before the codec
    assert raw == msgspec.json.encode(
        [record.won_us, record.units, record.client, record.lead, *record.dims]
    )
    assert decode_won(raw) == record
    assert won_record(deal.encode(), raw) == (
        record.won_us,
        deal,
        record.units,
        record.client,
        record.lead,
        record.dims,
    )


waiting_members = st.builds(
    WaitingMember,
    ids.map(lambda ident: f"c{SEP}{ident}"),
    st.sampled_from(["first", "next"]),
    ids,
    st.just("") | ids,
    st.just("") | ids,
    st.just("") | ids,
)


@given(waiting_members)
def test_a_waiting_member_reads_back_as_written(member: WaitingMember) -> None:
    raw = encode_waiting_member(member)
    # the list streams/sla_fold.py made before the codec
    assert raw == msgspec.json.encode(list(msgspec.structs.astuple(member))).decode()
    assert decode_waiting_member(raw) == member
    assert decode_waiting_member(raw.encode()) == member


def test_the_reader_takes_the_member_the_fold_writes() -> None:
    contact = make_event(
        "in-1", "message", conversation_id="conv-1", manager_id="m3", pipeline="sales"
    )
    (state,) = conversations([contact]).values()
    wait = waits(state).open
    ref = conversation_ref(contact)
    assert wait is not None
    assert ref is not None
    member, score = waiting_member(ref, wait)
    read = classify(member, score, CONFIG, T0)
    assert (read.conversation, read.kind, read.channel) == ("conv-1", "first", "chat")
    assert (read.manager, read.team, read.pipeline) == ("m3", "south", "sales")


@given(ids)
def test_a_conversation_ref_shows_as_its_public_id(ident: str) -> None:
    by_conversation = make_event("e", "message", conversation_id=ident, client_id="x")
    by_client = make_event("e", "message", conversation_id=None, client_id=ident)
    conversation, client = conversation_ref(by_conversation), conversation_ref(by_client)
    assert conversation == f"c{SEP}{ident}"
    assert client == f"k{SEP}{ident}"
    assert public_conversation_id(conversation) == ident
    assert public_conversation_id(client) == f"client:{ident}"
    assert conversation_ref(make_event("e", "call")) is None


@given(ids, ids)
def test_a_stage_member_splits_into_pipeline_and_stage(pipeline: str, stage: str) -> None:
    member = stage_member(pipeline, stage)
    assert member == f"{pipeline}\x1f{stage}"
    assert split_stage_member(member) == (pipeline, stage)


@given(st.integers(min_value=0, max_value=2**53))
def test_a_receipt_time_reads_back_in_seconds(ms: int) -> None:
    raw = encode_received_ms(ms)
    assert raw == str(ms)
    assert decode_received_s(raw) == ms / 1000
    assert decode_received_s(raw.encode()) == ms / 1000
