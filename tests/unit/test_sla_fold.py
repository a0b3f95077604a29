"""SLA policies and the SLA fold: worked examples, and any split or order of a stream of
conversation events gives the same totals and the same waiting index."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.read.waiting import Wait, classify
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.codecs import decode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.kpi.sketch import bin_key
from salespulse.core.sla_policy import SlaConfig, SlaPolicy, SlaTarget, parse_duration
from salespulse.core.tenants import TenantDirectory, TenantsFile, TenantsFileError, load_tenants
from streams.conversation_clock import ConversationState
from streams.sla_fold import (
    ConversationStates,
    SlaFold,
    WaitLimit,
    business_ms,
    decode_conversation,
    fold_conversations,
    response_bucket,
)

KEYS = KpiKeys("t:")
FRIDAY = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)  # 17:50 in Berlin


def tenants(**acme: Any) -> TenantDirectory:
    return TenantDirectory(TenantsFile.model_validate({"tenants": {"acme": acme}}))


BERLIN_OFFICE = {
    "timezone": "Europe/Berlin",
    "business_hours": {"weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}},
    "teams": {"north": {"managers": ["m-1", "m-2"]}},
    "sla": {
        "policies": [
            {"channel": "chat", "first_response": "5m", "next_response": "15m"},
            {"first_response": "1h", "basis": "calendar"},
        ]
    },
}


def ev(event_id: str, kind: str, at: datetime, **fields: Any) -> CrmEvent:
    values: dict[str, Any] = {"conversation_id": "conv-1", "manager_id": "m-1", **fields}
    if kind == "message":
        values.setdefault("channel", "chat")
    return CrmEvent(event_id=event_id, tenant="acme", type=kind, occurred_at=at, **values)  # type: ignore[arg-type]


class Store:
    """What Redis holds after applying SlaFolds: totals per all-time field, waiting index."""

    def __init__(self) -> None:
        self.states: ConversationStates = {}
        self.totals: Counter[tuple[str, ...]] = Counter()
        self.waiting: dict[str, int] = {}

    def apply(self, fold: SlaFold) -> None:
        for key, (version, blob) in fold.entity_writes.items():
            assert self.states.get(key, (0, None))[0] == version
            self.states[key] = (version + 1, decode_conversation(blob))
        for (_, gran, _), fields in fold.increments.items():
            if gran == "all":
                for encoded, amount in fields.items():
                    self.totals[tuple(decode_field(encoded))] += amount
        for _, removed, added, score in fold.waiting_moves:
            if removed is not None:
                del self.waiting[removed]
            if added is not None:
                self.waiting[added] = score

    def fold(self, events: list[CrmEvent], directory: TenantDirectory) -> None:
        self.apply(fold_conversations(events, directory, KEYS, dict(self.states)))

    def nonzero(self) -> dict[tuple[str, ...], int]:
        return {key: amount for key, amount in self.totals.items() if amount}


def test_durations_and_policy_choice() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration(90) == 90
    for bad in ("5 minutes", "0s", True, "31d"):
        with pytest.raises(ValueError, match=r"duration|expected seconds|target"):
            parse_duration(bad)
    config = SlaConfig(
        policies=[
            SlaPolicy(first_response=3600),
            SlaPolicy(pipeline="vip", first_response=600),
            SlaPolicy(channel="chat", first_response=300, next_response=900),
            SlaPolicy(channel="chat", pipeline="vip", first_response=60, warning=30),
        ]
    )
    assert config.target_for("chat", "vip", "first", "calendar") == SlaTarget(60, 30, "calendar")
    assert config.target_for("chat", None, "next", "business") == SlaTarget(900, 720, "business")
    assert config.target_for("phone", "vip", "first", "calendar") == SlaTarget(600, 480, "calendar")
    assert config.target_for("email", None, "first", "calendar") == SlaTarget(
        3600, 2880, "calendar"
    )
    assert SlaConfig().target_for("chat", None, "first", "calendar") is None


def test_business_basis_without_business_hours_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        "tenants:\n  acme:\n    sla:\n      basis: business\n"
        "      policies: [{first_response: 5 minutes}]\n"
    )
    with pytest.raises(TenantsFileError) as caught:
        load_tenants(path)
    assert "acme.sla.policies.0.first_response" in str(caught.value)
    path.write_text(
        "tenants:\n  acme:\n    sla: {basis: business, policies: [{first_response: 5m}]}\n"
    )
    with pytest.raises(TenantsFileError, match="needs the tenant's business_hours"):
        load_tenants(path)


def test_a_chat_answered_after_the_weekend_breaches_in_business_seconds() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    monday_reply = FRIDAY + timedelta(days=2, hours=15, minutes=30)  # Monday 09:20 Berlin
    store.fold([ev("in-1", "message", FRIDAY, direction="in")], directory)
    (member, opened) = next(iter(store.waiting.items()))
    # ids as the event gave them (no team on it): the team is resolved at read time
    assert msgspec.json.decode(member) == ["c\x1fconv-1", "first", "chat", "m-1", "", ""]
    assert opened == int(FRIDAY.timestamp() * 1_000_000)
    store.fold([ev("out-1", "message", monday_reply, direction="out", manager_id="m-2")], directory)
    assert store.waiting == {}
    dims = ("m-2", "north", "none", "none")
    # 10 business minutes on Friday + 20 on Monday; the calendar says 2 days 15.5 hours.
    calendar_s = (monday_reply - FRIDAY).total_seconds()
    assert store.nonzero() == {
        ("resp_n:first:chat", *dims): 1,
        ("resp_ms:first:chat", *dims): int(calendar_s * 1000),
        ("resp_bms:first:chat", *dims): 30 * 60 * 1000,
        (f"resp_hist:first:chat:c{response_bucket(calendar_s)}", *dims): 1,
        (f"resp_hist:first:chat:b{response_bucket(1800)}", *dims): 1,
        (f"resp_qb:first:{bin_key(int(calendar_s * 1000))}", *dims): 1,
        ("sla_breach:first:chat", *dims): 1,
    }


def test_a_late_reply_before_the_contact_never_opens_a_phantom_wait() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    # The reply reaches us first, the contact it answered afterwards.
    store.fold([ev("out-1", "message", FRIDAY + timedelta(minutes=2), direction="out")], directory)
    store.fold([ev("in-1", "message", FRIDAY, direction="in")], directory)
    assert store.waiting == {}
    assert store.totals[("sla_met:first:chat", "m-1", "north", "none", "none")] == 1


def test_repeats_write_nothing() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    contact = ev("in-1", "message", FRIDAY, direction="in")
    store.fold([contact], directory)
    again = fold_conversations([contact, contact], directory, KEYS, dict(store.states))
    assert again.entity_writes == {}
    assert again.increments == {}
    assert again.waiting_moves == []


def test_marks_by_utc_day_and_a_marked_event_joins_only_a_state_holding_it() -> None:
    directory = tenants(**BERLIN_OFFICE)
    late = FRIDAY.replace(hour=23, minute=30)  # Saturday already in Berlin
    contact = ev("in-1", "message", late, direction="in")
    reply = ev("out-1", "message", late + timedelta(minutes=2), direction="out")
    note = ev("note-1", "note", late)  # neither opens nor closes a wait: no mark
    fold = fold_conversations([contact, reply, note, contact], directory, KEYS, {})
    assert fold.marked == {("acme", "2026-11-20"): ["in-1", "out-1"]}
    counted = frozenset({("acme", "in-1"), ("acme", "out-1")})
    # its state forgotten: the marked events count nothing and write no state
    forgotten = fold_conversations([contact, reply], directory, KEYS, {}, skip=counted)
    assert (forgotten.entity_writes, forgotten.increments, forgotten.marked) == ({}, {}, {})
    assert forgotten.duplicates == 2
    # its state kept: they join it as repeats (nothing changes), unmarked again
    store = Store()
    store.fold([contact, reply], directory)
    kept = fold_conversations([contact, reply], directory, KEYS, dict(store.states), skip=counted)
    assert (kept.entity_writes, kept.increments, kept.marked, kept.duplicates) == ({}, {}, {}, 0)


def test_a_wait_past_its_maximum_when_folded_never_enters_the_list() -> None:
    office = {**BERLIN_OFFICE, "sla": {"max_wait": "2d", "policies": [
        {"channel": "chat", "first_response": "5m", "max_wait": "1h"},
        {"first_response": "1h"},
    ]}}  # fmt: skip
    directory = tenants(**office)
    now_us = int((FRIDAY + timedelta(minutes=90)).timestamp() * 1_000_000)
    limit = WaitLimit(now_us, default_max_wait_s=7 * 86_400)
    chat = ev("in-chat", "message", FRIDAY, direction="in", conversation_id="c1")
    mail = ev("in-mail", "message", FRIDAY, direction="in", conversation_id="c2", channel="email")
    fold = fold_conversations([chat, mail], directory, KEYS, {}, limit)
    # chat: 90 min old, its policy allows 1 h; email: the tenant's 2 days.
    assert [member for _, _, member, _ in fold.waiting_moves if member] == [
        m for _, _, m, _ in fold_conversations([mail], directory, KEYS, {}).waiting_moves
    ]
    assert fold.waits_expired == 1
    assert fold_conversations([chat], directory, KEYS, {}).waits_expired == 0  # no limit


def test_a_backfilled_contact_never_waits_but_its_reply_is_a_response() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    now_us = int((FRIDAY + timedelta(hours=2)).timestamp() * 1_000_000)
    limit = WaitLimit(now_us, default_max_wait_s=7 * 86_400)
    history = [
        ev("in-1", "message", FRIDAY, direction="in", backfill=True),
        ev("missed", "call", FRIDAY, direction="in", answered=False, channel="phone",
           conversation_id="conv-2", backfill=True),
    ]  # fmt: skip
    fold = fold_conversations(history, directory, KEYS, {}, limit)
    store.apply(fold)
    assert store.waiting == {}
    assert fold.waits_expired == 0  # history: never a live wait, so never an expired one
    dims = ("m-1", "north", "none", "none")
    assert store.nonzero() == {("calls_abandoned", *dims): 1}
    # a live reply 3 minutes later answers the backfilled chat: a first response, on time
    store.fold([ev("out-1", "message", FRIDAY + timedelta(minutes=3), direction="out")], directory)
    assert store.waiting == {}
    assert store.totals[("resp_n:first:chat", *dims)] == 1
    assert store.totals[("resp_ms:first:chat", *dims)] == 3 * 60 * 1000
    assert store.totals[("sla_met:first:chat", *dims)] == 1
    # a backfilled call-back 61 minutes later takes the abandoned call back, and breaches
    # the phone's 1-hour target
    back_at = FRIDAY + timedelta(minutes=61)
    callback = ev("back", "call", back_at, direction="out", answered=True, channel="phone",
                  conversation_id="conv-2", backfill=True)  # fmt: skip
    store.fold([callback], directory)
    assert store.totals[("calls_abandoned", *dims)] == 0
    assert store.totals[("sla_breach:first:phone", *dims)] == 1


def test_a_live_contact_in_a_backfilled_wait_puts_the_client_on_the_list() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    store.fold([ev("in-1", "message", FRIDAY, direction="in", backfill=True)], directory)
    assert store.waiting == {}
    # the same contact arriving live, or a newer live one: the client is waiting now,
    # since the wait's first contact
    for live in ("in-1", "in-2"):
        listed = Store()
        listed.states = dict(store.states)
        at = FRIDAY if live == "in-1" else FRIDAY + timedelta(minutes=1)
        listed.fold([ev(live, "message", at, direction="in")], directory)
        assert list(listed.waiting.values()) == [int(FRIDAY.timestamp() * 1_000_000)], live


def test_max_wait_is_the_policys_then_the_tenants_then_none() -> None:
    sla = SlaConfig.model_validate(
        {"max_wait": "3d", "policies": [{"channel": "chat", "first_response": 60, "max_wait": 600}]}
    )
    assert sla.max_wait_for("chat", None) == 600
    assert sla.max_wait_for("phone", None) == 3 * 86_400
    assert SlaConfig().max_wait_for("chat", None) is None
    with pytest.raises(ValueError, match="at most 30 days"):
        SlaConfig.model_validate({"max_wait": "40d"})


def conversation_events(rng: random.Random, count: int) -> list[CrmEvent]:
    events: list[CrmEvent] = []
    start = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
    for index in range(count):
        at = start + timedelta(minutes=rng.randrange(0, 6 * 24 * 60))
        conversation = f"conv-{rng.randrange(4)}"
        manager = rng.choice(["m-1", "m-2", "m-9", None])
        kind = rng.choice(["in", "out", "call-missed", "call-out", "bot", "lead"])
        common: dict[str, Any] = {"conversation_id": conversation, "manager_id": manager}
        eid = f"e{index}"
        common["backfill"] = rng.random() < 0.3
        if kind in ("in", "out"):
            events.append(ev(eid, "message", at, direction=kind, **common))
        elif kind == "bot":
            events.append(ev(eid, "message", at, direction="out", automated=True, **common))
        elif kind == "lead":
            events.append(ev(eid, "lead_created", at, entity_id=f"lead-{index}", **common))
        else:
            direction = "in" if kind == "call-missed" else "out"
            events.append(
                ev(eid, "call", at, direction=direction, answered=False, channel="phone", **common)
            )
    return events


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 40))
def test_any_split_order_and_repeats_give_the_same_totals(seed: int, count: int) -> None:
    rng = random.Random(seed)
    directory = tenants(**BERLIN_OFFICE)
    events = conversation_events(rng, count)
    # CRM retries, and copies of history also seen live (or live events also replayed)
    again = [
        msgspec.structs.replace(e, backfill=not e.backfill) if rng.random() < 0.5 else e
        for e in rng.sample(events, k=min(len(events), 5))
    ]
    reference = Store()
    reference.fold(events + again, directory)

    shuffled = events + again
    rng.shuffle(shuffled)
    streamed = Store()
    position = 0
    while position < len(shuffled):
        size = rng.randint(1, 6)
        streamed.fold(shuffled[position : position + size], directory)
        position += size

    assert streamed.nonzero() == reference.nonzero()
    assert streamed.waiting == reference.waiting
    assert {k: (s.marks, s.backfilled) for k, (_, s) in streamed.states.items()} == {
        k: (s.marks, s.backfilled) for k, (_, s) in reference.states.items()
    }
    # Every conversation with an open wait is in the index exactly once.
    assert len(streamed.waiting) <= len(streamed.states)
    assert all(isinstance(s, ConversationState) for _, s in streamed.states.values())


def test_a_wait_is_judged_in_business_seconds_at_the_instant_of_the_read() -> None:
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    opened = FRIDAY + timedelta(minutes=5)  # 17:55 Berlin: 5 business minutes left on Friday
    store.fold([ev("in-1", "message", opened, direction="in")], directory)
    ((member, score),) = store.waiting.items()
    config = directory.get("acme")

    def at(instant: datetime) -> Wait:
        return classify(member, score, config, instant)

    soon = at(opened + timedelta(minutes=2))
    assert (soon.business_age_seconds, soon.state) == (120, "ok")
    friday_close = at(FRIDAY + timedelta(minutes=10))
    assert (friday_close.business_age_seconds, friday_close.state) == (300, "at_risk")
    saturday = at(FRIDAY + timedelta(days=1))  # closed: the business clock stood still
    assert saturday.business_age_seconds == 300
    assert saturday.age_seconds == 86_100
    assert saturday.state == "at_risk"  # 5 of 5 minutes: past 80 %, not past the target
    monday = at(datetime(2026, 11, 23, 8, 1, tzinfo=UTC))  # 09:01 Berlin
    assert (monday.business_age_seconds, monday.state) == (360, "breached")
    assert monday.conversation == "conv-1"
    assert (monday.team, monday.manager, monday.kind) == ("north", "m-1", "first")


def test_a_waits_state_agrees_with_the_age_it_reports() -> None:
    """The state is judged on the reported (millisecond) age: 3600.0004 s reads as 3600.0, at
    the 1-hour target, not past it (a wallboard showing "breached" at 1:00:00 is wrong)."""
    directory = tenants(**BERLIN_OFFICE)
    store = Store()
    opened = FRIDAY
    store.fold(
        [ev("in-1", "call", opened, direction="in", answered=False, channel="phone")], directory
    )
    ((member, score),) = store.waiting.items()
    config = directory.get("acme")
    at_target = classify(member, score, config, opened + timedelta(hours=1, microseconds=400))
    assert (at_target.basis, at_target.target_seconds) == ("calendar", 3600)
    assert (at_target.age_seconds, at_target.state) == (3600.0, "at_risk")
    past = classify(member, score, config, opened + timedelta(hours=1, microseconds=600))
    assert (past.age_seconds, past.state) == (3600.001, "breached")


def test_business_time_of_a_new_calendar_is_its_own_even_at_a_reused_address() -> None:
    # A freed calendar's address is soon reused by the next one CPython allocates; a memo
    # keyed by id() alone then answered with the freed calendar's hours (9 h for 1 h).
    opened = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
    closed = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    for attempt in range(40):
        hours = "09:00-18:00" if attempt % 2 == 0 else "10:00-11:00"
        config = TenantsFile.model_validate(
            {"tenants": {"t": {"timezone": "UTC", "business_hours": {"weekly": {"mon": [hours]}}}}}
        ).tenants["t"]
        expected_ms = 9 * 3_600_000 if attempt % 2 == 0 else 3_600_000
        assert business_ms(config, None, opened, closed) == expected_ms, attempt
        del config  # freed now, by its reference count: its address is free again
