"""The conversation clock: worked examples and order/repeat independence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from salespulse.core.business_hours import BusinessCalendar, BusinessHours
from salespulse.core.events import CrmEvent
from streams.conversation_clock import (
    INBOUND,
    REPLY,
    ClosedWait,
    ConversationState,
    OpenWait,
    Waits,
    abandoned_calls,
    conversation_key,
    conversations,
    join_conversation,
    merge,
    role_of,
    waits,
)

T0 = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # a Tuesday


def event(event_id: str, kind: str, minute: float, **fields: Any) -> CrmEvent:
    values: dict[str, Any] = {"conversation_id": "conv-1", "manager_id": "m-1", **fields}
    return CrmEvent(
        event_id=event_id,
        tenant="acme",
        type=kind,  # type: ignore[arg-type]
        occurred_at=T0 + timedelta(minutes=minute),
        **values,
    )


def inbound(event_id: str, minute: float, **fields: Any) -> CrmEvent:
    return event(event_id, "message", minute, direction="in", channel="chat", **fields)


def reply(event_id: str, minute: float, **fields: Any) -> CrmEvent:
    return event(event_id, "message", minute, direction="out", channel="chat", **fields)


def waits_of(events: list[CrmEvent]) -> Waits:
    state = ConversationState()
    for each in events:
        join_conversation(state, each)
    return waits(state)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def test_roles() -> None:
    assert role_of(event("a", "lead_created", 0)) == INBOUND
    assert role_of(event("a", "lead_created", 0, automated=True)) == INBOUND
    assert role_of(inbound("a", 0)) == INBOUND
    assert role_of(event("a", "call", 0, direction="in", answered=False)) == INBOUND
    assert role_of(event("a", "meeting", 0, direction="in", channel="email")) == INBOUND
    assert role_of(reply("a", 0)) == REPLY
    assert role_of(event("a", "call", 0, direction="out", answered=False)) == REPLY
    assert role_of(event("a", "call", 0, direction="in", answered=True)) == REPLY
    assert role_of(reply("a", 0, automated=True)) is None
    assert role_of(inbound("a", 0, automated=True)) is None
    assert role_of(event("a", "deal_created", 0)) is None
    assert role_of(event("a", "meeting", 0, direction="in", channel="meeting")) is None


def test_first_and_next_responses() -> None:
    result = waits_of(
        [
            event("lead", "lead_created", 0, channel="web"),
            inbound("i1", 1),  # inside the open wait: does not restart it
            reply("r1", 5, manager_id="m-2"),
            reply("r2", 6),  # nothing waiting
            event("missed", "call", 30, direction="in", answered=False),
            event("callback", "call", 42, direction="out", answered=True),
            inbound("i2", 60),
        ]
    )
    assert result.closed == (
        ClosedWait(
            opened_at=at(0),
            closed_at=at(5),
            kind="first",
            channel="web",
            reply_channel="chat",
            manager="m-2",
            opened_by="lead",
            closed_by="r1",
        ),
        ClosedWait(
            opened_at=at(30),
            closed_at=at(42),
            kind="next",
            channel="phone",  # a call without a channel is on the phone
            reply_channel="phone",
            manager="m-1",
            opened_by="missed",
            closed_by="callback",
        ),
    )
    assert result.closed[1].seconds == 12 * 60
    assert result.open == OpenWait(
        opened_at=at(60), kind="next", channel="chat", manager="m-1", opened_by="i2"
    )


def test_a_call_without_channel_is_on_the_phone() -> None:
    result = waits_of([event("c", "call", 0, direction="in", answered=False)])
    assert result.open is not None
    assert result.open.channel == "phone"
    assert result.open.kind == "first"


def test_a_reply_before_the_contact_does_not_close_it() -> None:
    result = waits_of([reply("r", 0), inbound("i", 10)])
    assert result.closed == ()
    assert result.open is not None
    assert result.open.opened_at == at(10)


def test_a_reply_arriving_before_its_contact_leaves_no_phantom_wait() -> None:
    state = ConversationState()
    join_conversation(state, reply("r", 7))  # the reply reaches us first
    assert waits(state) == Waits()
    join_conversation(state, inbound("i", 2))  # the contact it answered, late
    result = waits(state)
    assert result.open is None
    assert [(w.opened_at, w.closed_at, w.kind) for w in result.closed] == [(at(2), at(7), "first")]


def test_a_reply_in_the_same_instant_answers_the_contact() -> None:
    # "z" sorts after "a": without the role tie-break the reply would come first.
    result = waits_of([reply("a", 3), inbound("z", 3)])
    assert result.open is None
    assert result.closed[0].seconds == 0


def test_bot_replies_do_not_stop_the_clock() -> None:
    result = waits_of([inbound("i", 0), reply("bot", 1, automated=True), reply("r", 20)])
    assert [(w.closed_by, w.seconds) for w in result.closed] == [("r", 1200)]


def test_conversation_key_falls_back_to_the_client() -> None:
    by_conversation = inbound("a", 0)
    by_client = inbound("b", 0, conversation_id=None, client_id="conv-1")
    assert conversation_key(by_conversation) != conversation_key(by_client)
    assert conversation_key(inbound("c", 0, conversation_id=None)) is None
    other = event("d", "deal_created", 0, entity_id="d")  # neither contact nor reply
    states = conversations([by_conversation, by_client, reply("r", 1), other])
    assert sorted(len(state.marks) for state in states.values()) == [1, 2]


def test_business_seconds_of_a_wait_across_a_weekend() -> None:
    # Friday 17:30 Berlin → Monday 09:20 Berlin: 30 min Friday + 20 min Monday
    berlin = BusinessCalendar(BusinessHours(timezone="Europe/Berlin", country="DE"))
    friday = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
    monday = datetime(2026, 11, 23, 8, 20, tzinfo=UTC)
    minutes = (monday - T0).total_seconds() / 60
    contact = inbound("i", (friday - T0).total_seconds() / 60)
    (wait,) = waits_of([contact, reply("r", minutes)]).closed
    assert berlin.business_seconds(wait.opened_at, wait.closed_at) == 50 * 60
    assert wait.seconds == (monday - friday).total_seconds()


def test_a_backfilled_contact_times_its_wait_but_is_no_client_waiting_now() -> None:
    history = inbound("old", 0, backfill=True)
    waiting = waits_of([history]).open
    assert waiting is not None
    assert (waiting.opened_at, waiting.live) == (at(0), False)
    # a later reply, live or backfilled, measures from the backfilled contact
    for answer in (reply("r", 9), reply("r", 9, backfill=True)):
        (wait,) = waits_of([history, answer]).closed
        assert (wait.opened_by, wait.seconds) == ("old", 9 * 60)
    # a live contact inside the wait: the client is waiting now, since the first contact
    both = waits_of([history, inbound("now", 5)]).open
    assert both is not None
    assert (both.opened_by, both.live) == ("old", True)
    # a backfilled contact after a live wait was answered opens a wait of history only
    later = waits_of([inbound("i", 0), reply("r", 1), inbound("old", 2, backfill=True)]).open
    assert later is not None
    assert (later.kind, later.live) == ("next", False)


def test_a_contact_that_also_arrived_live_is_live_whichever_copy_came_first() -> None:
    backfilled, live = inbound("i", 0, backfill=True), inbound("i", 0)
    for order in ([backfilled, live], [live, backfilled], [live, backfilled, backfilled]):
        state = ConversationState()
        for each in order:
            join_conversation(state, each)
        assert state.backfilled == []
        assert waits(state).open == OpenWait(
            opened_at=at(0), kind="first", channel="chat", manager="m-1", opened_by="i"
        )
    left, right = ConversationState(), ConversationState()
    join_conversation(left, backfilled)
    join_conversation(right, live)
    assert merge(left, right).backfilled == merge(right, left).backfilled == []
    assert merge(left, ConversationState()).backfilled == ["i"]


def test_a_state_stored_before_backfills_were_marked_reads_as_live() -> None:
    state = ConversationState()
    join_conversation(state, inbound("i", 0))
    # as it was stored: [marks, missed_calls], no list of backfilled contacts
    stored = msgspec.json.encode([state.marks, state.missed_calls])
    decoded = msgspec.json.decode(stored, type=ConversationState)
    assert decoded.backfilled == []
    assert waits(decoded).open is not None
    assert waits(decoded).open == waits(state).open


KINDS: list[tuple[str, dict[str, Any]]] = [
    ("message", {"direction": "in", "channel": "chat"}),
    ("message", {"direction": "out", "channel": "email"}),
    ("message", {"direction": "out", "channel": "chat", "automated": True}),
    ("call", {"direction": "in", "answered": False}),
    ("call", {"direction": "in", "answered": True}),
    ("call", {"direction": "out", "answered": False}),
    ("lead_created", {}),
    ("deal_created", {"entity_id": "d"}),
]


@st.composite
def histories(draw: st.DrawFn) -> list[CrmEvent]:
    history = []
    for index in range(draw(st.integers(0, 14))):
        kind, fields = draw(st.sampled_from(KINDS))
        minute = draw(st.integers(0, 20))  # few distinct minutes: many ties
        manager = draw(st.sampled_from(["m-1", "m-2", None]))
        backfill = draw(st.booleans())
        history.append(
            event(f"e{index}", kind, minute, manager_id=manager, backfill=backfill, **fields)
        )
    return history


@settings(deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(0, 10))
def test_any_order_and_any_repeats_give_the_same_waits(
    history: list[CrmEvent], rng: random.Random, repeats: int
) -> None:
    # a repeat may be the other copy of the event: live if the first was backfilled, or so
    again = [rng.choice(history) for _ in range(repeats if history else 0)]
    again = [replace(e, backfill=not e.backfill) if rng.random() < 0.5 else e for e in again]
    reference = waits_of(history + again)
    shuffled = history + again
    rng.shuffle(shuffled)
    assert waits_of(shuffled) == reference
    cut = rng.randint(0, len(shuffled))
    left, right = ConversationState(), ConversationState()
    for each in shuffled[:cut]:
        join_conversation(left, each)
    for each in shuffled[cut:]:
        join_conversation(right, each)
    assert waits(merge(left, right)) == waits(merge(right, left)) == reference


@settings(deadline=None)
@given(histories())
def test_waits_are_well_formed(history: list[CrmEvent]) -> None:
    result = waits_of(history)
    kinds = [w.kind for w in result.closed] + ([result.open.kind] if result.open else [])
    assert kinds == ["first", *["next"] * (len(kinds) - 1)][: len(kinds)]
    previous_close = None
    for wait in result.closed:
        assert wait.opened_at <= wait.closed_at
        assert previous_close is None or previous_close <= wait.opened_at
        previous_close = wait.closed_at
    if result.open is not None and previous_close is not None:
        assert previous_close <= result.open.opened_at
    # Every reply at or after an open wait's start would have closed it.
    replies = [e.occurred_at for e in history if role_of(e) == REPLY]
    if result.open is not None:
        assert all(when < result.open.opened_at for when in replies)


def test_a_join_given_the_instant_and_role_is_the_join_that_finds_them() -> None:
    """The SLA fold passes what it computed already; the state must not tell."""
    missed = event("c", "call", 3, direction="in", answered=False, backfill=True)
    stream = [inbound("a", 0), reply("b", 2), missed, inbound("a", 0, backfill=True)]
    found, given_them = ConversationState(), ConversationState()
    for each in stream:
        role = role_of(each)
        assert role is not None
        join_conversation(found, each)
        us = round(
            (each.occurred_at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
        )
        join_conversation(given_them, each, us, role)
    assert given_them == found
    assert found.missed_calls == ["c"]
    assert found.backfilled == ["c"]


def test_a_conversation_without_missed_calls_abandons_none() -> None:
    assert abandoned_calls(ConversationState()) == []
    state = ConversationState()
    for each in (inbound("a", 0), reply("b", 1), inbound("c", 2)):
        join_conversation(state, each)
    assert abandoned_calls(state) == []
    join_conversation(state, event("d", "call", 3, direction="in", answered=False))
    assert abandoned_calls(state) == [state.marks["d"]]
