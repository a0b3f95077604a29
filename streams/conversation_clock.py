"""The conversation clock: which client contacts waited for a reply, and how long. Pure.

**Conversation.** Events of one tenant with the same ``conversation_id``; an event without
one belongs to its ``client_id``'s conversation; an event with neither has no
conversation (:func:`conversation_key` is None) and is ignored here.

**Inbound contact** (the client is waiting from then on):

* ``lead_created`` (a new lead or an unsorted request), automated or not: however a lead
  arrives, a person has to answer it;
* ``message`` with direction ``in`` (chat, e-mail, messenger, sms, ...);
* any other non-call event on channel ``email`` or ``chat`` with direction ``in``;
* ``call`` with direction ``in`` that was not answered (a missed call).

**Reply** (a person answered):

* ``message`` with direction ``out``;
* ``call`` with direction ``out`` (answered or not: the manager tried);
* ``call`` with direction ``in`` that was answered.

Automated events (bots, auto-replies, system notes) are neither, except ``lead_created``:
an auto-reply must not stop the clock, and a client's out-of-office answer or a CRM
system note must not start it.

**Waits.** Contacts and replies are ordered by ``(occurred_at, role, event_id)`` with
contacts before replies at the same instant (a reply stamped in the same second answers
the contact; CRM clocks are often only that precise). Walking that order: a wait *opens*
at the earliest contact after the last reply (or after the start) and *closes* at the
next reply. A reply with no open wait closes nothing; contacts inside an open wait do not
restart it. The first wait of the conversation is ``first``; every later one ``next``.
A wait still open after the last event is the conversation's *open wait*.

Because this depends only on occurred_at, never on arrival, a reply that reaches us
before the contact it answered still closes it (no phantom wait), and a reply that
happened before a contact never closes it.

**State.** A :class:`ConversationState` is a *join* of the conversation's events: the
set of marks (one per contact or reply, by event_id; for a repeated id the smallest
mark). Set union is commutative, associative and idempotent, so any arrival order with
any repeats gives the same state and the same waits (as streams/entity_state.py's states).
Every mark is kept: a late reply can split a wait, and then the contact that opens the
later part is one that looked redundant before.

**Backfilled contacts.** A contact sent as history (``CrmEvent.backfill``) is a mark like
any other: it opens and times waits, so a later reply measures from it. But the state
also keeps it among ``backfilled``, and an open wait whose contacts are all backfilled is
not *live* (:attr:`OpenWait.live`): nobody is waiting now, and it stays off the waiting
list (docs/sla.md). A contact that also arrived live is live, whichever copy came first:
a backfilled copy is recorded as backfilled only when its id is not yet a mark, and a
live copy takes it out of ``backfilled``. That keeps the join free of order and repeats.
(An older worker, during an upgrade, decodes a state with the list and ignores it.)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal

import msgspec

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import from_us, to_us
from salespulse.core.kpi.codecs import StateCodec
from salespulse.core.kpi.redis_layout import SEP

INBOUND: Final = 0  # sorts before REPLY at the same instant (see module docstring)
REPLY: Final = 1
Role = Literal[0, 1]
WaitKind = Literal["first", "next"]
_INBOUND_CHANNELS: Final = frozenset({"email", "chat"})

# event_id → (µs, role, channel, manager, team, pipeline)
Mark = tuple[int, int, str | None, str | None, str | None, str | None]


class ConversationState(msgspec.Struct, kw_only=True, array_like=True):
    marks: dict[str, Mark] = msgspec.field(default_factory=dict)
    # event ids of the missed inbound calls among the marks, sorted: abandonment needs to
    # tell them from other contacts (last, so states stored before it decode)
    missed_calls: list[str] = msgspec.field(default_factory=list)
    # event ids of the contacts among the marks that only ever arrived as a backfill,
    # sorted (last, so states stored before it decode: their contacts all read as live)
    backfilled: list[str] = msgspec.field(default_factory=list)


# How a state is stored ({p}ent:{tenant}:conv:{ref}, salespulse/core/kpi/redis_layout.py).
CONVERSATION_STATE = StateCodec(ConversationState)


class OpenWait(msgspec.Struct, frozen=True, kw_only=True):
    opened_at: datetime
    kind: WaitKind
    # The channel the client used, and the manager (team) the contact was assigned to.
    channel: str | None
    manager: str | None
    opened_by: str  # event_id of the contact
    team: str | None = None
    pipeline: str | None = None
    # False: every contact of the wait was backfilled, so it is history, not a client
    # waiting now (module docstring)
    live: bool = True


class ClosedWait(msgspec.Struct, frozen=True, kw_only=True):
    opened_at: datetime
    closed_at: datetime
    kind: WaitKind
    channel: str | None  # of the contact that opened the wait (SLA targets are per channel)
    reply_channel: str | None
    manager: str | None  # who replied
    opened_by: str
    closed_by: str
    team: str | None = None  # as the reply names it
    pipeline: str | None = None  # of the contact, else of the reply (SLA policies use it)

    @property
    def seconds(self) -> float:
        """Calendar seconds waited; business seconds come from a BusinessCalendar."""
        return (self.closed_at - self.opened_at).total_seconds()


class Waits(msgspec.Struct, frozen=True, kw_only=True):
    closed: tuple[ClosedWait, ...] = ()
    open: OpenWait | None = None


def conversation_key(event: CrmEvent) -> str | None:
    """tenant + conversation (or client); prefixed so the two id spaces never collide."""
    if event.conversation_id is not None:
        return f"{event.tenant}{SEP}c{SEP}{event.conversation_id}"
    if event.client_id is not None:
        return f"{event.tenant}{SEP}k{SEP}{event.client_id}"
    return None


def role_of(event: CrmEvent) -> Role | None:
    """INBOUND, REPLY, or None for events that neither open nor close a wait."""
    if event.type == "lead_created":
        return INBOUND
    if event.automated:
        return None
    if event.type == "call":
        if event.direction == "out":
            return REPLY
        if event.direction == "in":
            # `answered` is required for calls; a missing one is read as missed, so that
            # the client's call is not silently taken for an answer.
            return REPLY if event.answered is True else INBOUND
        return None
    if event.type == "message":
        if event.direction == "in":
            return INBOUND
        if event.direction == "out":
            return REPLY
        return None
    if event.direction == "in" and event.channel in _INBOUND_CHANNELS:
        return INBOUND
    return None


def _channel_of(event: CrmEvent) -> str | None:
    if event.channel is None and event.type == "call":
        return "phone"
    return event.channel


def join_conversation(
    state: ConversationState, event: CrmEvent, us: int | None = None, role: Role | None = None
) -> None:
    """Add one event of the conversation to its state (in place, like join_deal).
    ``us`` and ``role``: the event's instant and role_of(event), when the caller has them."""
    if role is None:
        role = role_of(event)
        if role is None:
            return
    if us is None:
        us = to_us(event.occurred_at)
    mark: Mark = (us, role, _channel_of(event), event.manager_id, event.team, event.pipeline)
    held = state.marks.get(event.event_id)
    if role == INBOUND:
        if not event.backfill:
            _discard(state.backfilled, event.event_id)
        elif held is None:  # a contact already marked arrived live before (or is repeated)
            _add_sorted(state.backfilled, event.event_id)
    # Repeats carry identical content; taking the minimum keeps the join order-free anyway.
    if held is None or _order(mark) < _order(held):
        state.marks[event.event_id] = mark
    if role == INBOUND and event.type == "call":
        _add_sorted(state.missed_calls, event.event_id)


def _add_sorted(ids: list[str], event_id: str) -> None:
    at = bisect_left(ids, event_id)
    if at == len(ids) or ids[at] != event_id:
        ids.insert(at, event_id)


def _discard(ids: list[str], event_id: str) -> None:
    at = bisect_left(ids, event_id)
    if at < len(ids) and ids[at] == event_id:
        del ids[at]


def abandoned_calls(state: ConversationState) -> list[Mark]:
    """The missed inbound calls no reply followed (at the same instant or later): the
    client gave up, or is still waiting (docs/kpi-semantics.md, "Call centre")."""
    if not state.missed_calls:
        return []  # most conversations: no walk over every mark to find the last reply
    replies = [mark[0] for mark in state.marks.values() if mark[1] == REPLY]
    last_reply = max(replies, default=None)
    marks = [state.marks[event_id] for event_id in state.missed_calls]
    return [mark for mark in marks if last_reply is None or last_reply < mark[0]]


def _order(mark: Mark) -> tuple[int, int, str, str, str, str]:
    us, role, channel, manager, team, pipeline = mark
    return us, role, channel or "", manager or "", team or "", pipeline or ""


def merge(left: ConversationState, right: ConversationState) -> ConversationState:
    """The join of two states (e.g. two partitions' partial states of one conversation)."""
    merged = ConversationState(marks=dict(left.marks), missed_calls=list(left.missed_calls))
    for event_id, mark in right.marks.items():
        held = merged.marks.get(event_id)
        if held is None or _order(mark) < _order(held):
            merged.marks[event_id] = mark
    for event_id in right.missed_calls:
        _add_sorted(merged.missed_calls, event_id)
    # backfilled on one side and known (hence live) on the other: live
    left_backfilled, right_backfilled = set(left.backfilled), set(right.backfilled)
    merged.backfilled = sorted(
        event_id
        for event_id in left_backfilled | right_backfilled
        if (event_id in right_backfilled or event_id not in right.marks)
        and (event_id in left_backfilled or event_id not in left.marks)
    )
    return merged


def waits(state: ConversationState) -> Waits:
    """The closed waits, in time order, and the open wait, if any (module docstring)."""
    # Sorted as plain tuples: no key function called per mark. An event id is unique, so
    # the comparison never reaches the mark itself.
    ordered = sorted([(mark[0], mark[1], event_id, mark) for event_id, mark in state.marks.items()])
    closed: list[ClosedWait] = []
    opening: tuple[str, Mark] | None = None
    backfilled = frozenset(state.backfilled)
    live = False  # a contact of the wait being walked arrived live
    for _, _, event_id, mark in ordered:
        if mark[1] == INBOUND:
            if opening is None:
                opening, live = (event_id, mark), False
            live = live or event_id not in backfilled
            continue
        if opening is None:
            continue  # a reply with nothing waiting: an outbound contact, or a follow-up
        opened_by, (opened_us, _, channel, _, _, pipeline) = opening
        closed.append(
            ClosedWait(
                opened_at=from_us(opened_us),
                closed_at=from_us(mark[0]),
                kind="next" if closed else "first",
                channel=channel,
                reply_channel=mark[2],
                manager=mark[3],
                opened_by=opened_by,
                closed_by=event_id,
                team=mark[4],
                pipeline=pipeline or mark[5],
            )
        )
        opening = None
    still_open = None
    if opening is not None:
        opened_by, (opened_us, _, channel, assigned, team, pipeline) = opening
        still_open = OpenWait(
            opened_at=from_us(opened_us),
            kind="next" if closed else "first",
            channel=channel,
            manager=assigned,
            opened_by=opened_by,
            team=team,
            pipeline=pipeline,
            live=live,
        )
    return Waits(closed=tuple(closed), open=still_open)


def conversations(events: Iterable[CrmEvent]) -> dict[str, ConversationState]:
    """Batch form: the state of every conversation the events touch."""
    states: dict[str, ConversationState] = {}
    for event in events:
        key = conversation_key(event)
        if key is not None and role_of(event) is not None:
            join_conversation(states.setdefault(key, ConversationState()), event)
    return states
