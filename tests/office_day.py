"""A realistic working hour of one sales office, as canonical events (JSON-ready dicts).

Two teams of managers work one pipeline: leads arrive and are called back, deals move
stage by stage and are won (with amounts) or lost (with reasons), some stay too long in
a stage; calls go both ways, some inbound calls are missed and called back; clients
write on chat, e-mail, messenger and sms and are answered, late or not yet. Times are
relative to ``now`` and lie within the last 40 minutes, in a tenant zone where it is
about noon, so that "today", the sliding windows and business hours all hold data
whatever the hour of the test run. Seeded: the same ``now`` gives the same events.

:func:`history` is what happened before the test (replayed), :func:`waiting_now` the
clients still waiting (posted live: a replayed contact never waits); :func:`live_round` is a
minute of live traffic, posted in rounds while Prometheus watches, so that counters and
histograms grow between scrapes (rates and quantiles need that).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import yaml

TENANT = "office"
PIPELINE = "sales"
TEAMS = {"north": ("m-11", "m-12", "m-13"), "south": ("m-21", "m-22")}
TEAM_OF = {manager: team for team, managers in TEAMS.items() for manager in managers}
MANAGERS = tuple(TEAM_OF)
CHANNELS = ("chat", "email", "messenger", "sms")
OPEN_STAGES = ("new", "qualified", "proposal", "negotiation")
LOST_REASONS = ("price", "competitor", "no_budget")
SPAN = timedelta(minutes=40)
# Seconds to the first reply: mostly quick, some slow, some past the SLA target.
REPLY_DELAYS = ((0.6, 20, 240), (0.3, 240, 900), (0.1, 900, 1800))

Event = dict[str, Any]


def noon_zone(now: datetime) -> str:
    """A fixed-offset zone in which ``now`` is between 11:30 and 12:30 local time."""
    hours = 12 - round(now.hour + now.minute / 60)
    hours = max(-12, min(hours, 14))
    if hours == 0:
        return "Etc/GMT"
    return f"Etc/GMT{-hours:+d}"  # POSIX sign: Etc/GMT-3 is three hours *ahead* of UTC


def tenants_file(now: datetime) -> str:
    """The office's settings: teams, monthly targets, stage limits, hours and SLA policies."""
    every_day = {day: ["08:00-20:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    office = {
        "timezone": noon_zone(now),
        "currency": "USD",
        "pipelines": {
            PIPELINE: {
                "stages": [
                    {"id": "new", "limit_hours": 0.1},
                    {"id": "qualified", "warm": True, "limit_hours": 0.2},
                    {"id": "proposal", "limit_hours": 0.3},
                    {"id": "negotiation"},
                    {"id": "won", "kind": "won"},
                    {"id": "lost", "kind": "lost"},
                ]
            }
        },
        "teams": {team: {"managers": list(managers)} for team, managers in TEAMS.items()},
        "targets": {
            "managers": {m: {"revenue": "300000", "deals_won": 15} for m in MANAGERS},
            "teams": {
                "north": {"revenue": "900000", "deals_won": 45},
                "south": {"revenue": "600000", "deals_won": 30},
            },
        },
        "business_hours": {"weekly": every_day},
        "sla": {
            "policies": [
                {"channel": "chat", "first_response": "5m", "next_response": "10m"},
                {"channel": "phone", "first_response": "10m"},
                # Wide warning band: a wait is "at risk" for most of the test's hour.
                {"channel": "email", "first_response": "2h", "warning": "20m"},
                {"first_response": "15m"},
            ]
        },
    }
    return yaml.safe_dump({"tenants": {TENANT: office}}, sort_keys=False)


class _Office:
    def __init__(self, now: datetime, seed: int) -> None:
        self.now = now
        self.rng = random.Random(seed)
        self.events: list[Event] = []

    def add(self, kind: str, at: datetime, manager: str, **fields: Any) -> None:
        if at >= self.now:  # has not happened yet
            return
        self.events.append(
            {
                "event_id": f"office-{len(self.events):05d}-{self.rng.getrandbits(32):08x}",
                "tenant": TENANT,
                "source": "office-day",
                "type": kind,
                "occurred_at": at.isoformat(),
                "manager_id": manager,
                "team": TEAM_OF[manager],
                **{name: value for name, value in fields.items() if value is not None},
            }
        )

    def moment(self, earliest: datetime, latest: datetime) -> datetime:
        return earliest + (latest - earliest) * self.rng.random()

    def deal(self, number: int) -> None:
        rng = self.rng
        deal, client = f"deal-{number}", f"client-{number}"
        manager = rng.choice(MANAGERS)
        at = self.moment(self.now - SPAN, self.now - timedelta(minutes=4))
        self.add("lead_created", at, manager, entity_id=f"lead-{number}", client_id=client,
                 source_channel=rng.choice(("website", "ads")))  # fmt: skip
        # The manager calls the new lead back: a reply to the lead's wait, and a call.
        self.call(at + timedelta(seconds=rng.uniform(40, 400)), manager, client, "out")
        self.add("deal_created", at, manager, entity_id=deal, pipeline=PIPELINE,
                 client_id=client)  # fmt: skip
        stage: str | None = None
        for next_stage in OPEN_STAGES:
            self.add("deal_stage_changed", at, manager, entity_id=deal, pipeline=PIPELINE,
                     stage_from=stage, stage_to=next_stage, stage_kind="open",
                     client_id=client)  # fmt: skip
            stage = next_stage
            at += timedelta(seconds=rng.uniform(30, 420))
            roll = rng.random()
            if roll < 0.12:
                self.close(at, manager, deal, client, next_stage, won=False)
                return
            if roll < 0.3:  # stays here (maybe past the stage's limit: stuck)
                return
        self.close(at, manager, deal, client, OPEN_STAGES[-1], won=rng.random() < 0.65)

    def close(
        self, at: datetime, manager: str, deal: str, client: str, stage: str, *, won: bool
    ) -> None:
        fields: Event = {"entity_id": deal, "pipeline": PIPELINE, "stage_from": stage,
                         "client_id": client}  # fmt: skip
        if won:
            amount = self.rng.randrange(1_000, 40_000) * 5
            self.add("deal_stage_changed", at, manager, stage_to="won", stage_kind="won",
                     amount=str(amount), currency="USD", **fields)  # fmt: skip
        else:
            self.add("deal_stage_changed", at, manager, stage_to="lost", stage_kind="lost",
                     lost_reason=self.rng.choice(LOST_REASONS), **fields)  # fmt: skip

    def call(self, at: datetime, manager: str, client: str, direction: str) -> None:
        answered = self.rng.random() < (0.85 if direction == "out" else 0.75)
        duration = round(self.rng.uniform(25, 600), 1) if answered else 0
        self.add("call", at, manager, channel="phone", direction=direction, answered=answered,
                 duration_s=duration, client_id=client)  # fmt: skip

    def inbound_call(self, number: int) -> None:
        manager, client = self.rng.choice(MANAGERS), f"caller-{number}"
        at = self.moment(self.now - SPAN, self.now)
        self.add("call", at, manager, channel="phone", direction="in", answered=False,
                 duration_s=0, client_id=client)  # fmt: skip
        if self.rng.random() < 0.8:  # called back
            self.call(at + timedelta(seconds=self.rng.uniform(60, 900)), manager, client, "out")

    def conversation(self, number: int) -> None:
        rng = self.rng
        manager, channel = rng.choice(MANAGERS), rng.choice(CHANNELS)
        conversation = f"conv-{number}"
        at = self.moment(self.now - SPAN, self.now - timedelta(minutes=1))
        for turn in range(rng.choice((1, 1, 2, 3))):
            self.message(at, manager, channel, conversation, "in")
            if rng.random() < 0.3:  # a bot's instant auto-reply stops no clock
                self.message(at + timedelta(seconds=2), manager, channel, conversation, "out",
                             automated=True)  # fmt: skip
            if turn == 0 and rng.random() < 0.12:  # not answered yet
                return
            at += timedelta(seconds=self.delay())
            self.message(at, manager, channel, conversation, "out")
            at += timedelta(seconds=rng.uniform(30, 600))

    def delay(self) -> float:
        roll = self.rng.random()
        for share, low, high in REPLY_DELAYS:
            if roll < share:
                return self.rng.uniform(low, high)
            roll -= share
        return self.rng.uniform(*REPLY_DELAYS[-1][1:])

    def message(
        self, at: datetime, manager: str, channel: str, conversation: str, direction: str,
        **fields: Any,
    ) -> None:  # fmt: skip
        self.add("message", at, manager, channel=channel, direction=direction,
                 conversation_id=conversation, **fields)  # fmt: skip

    def backlog(self) -> None:
        """Clients waiting right now: some at risk, some past the target; and per team a
        first and a next contact past their targets that live rounds 2 and 4 answer late.
        """
        for number, (channel, minutes) in enumerate(
            (("email", 25), ("email", 30), ("chat", 12), ("chat", 20), ("sms", 2))
        ):
            manager = MANAGERS[number % len(MANAGERS)]
            self.message(self.now - timedelta(minutes=minutes), manager, channel,
                         f"waiting-{number}", "in")  # fmt: skip
        for team, managers in TEAMS.items():
            ago = self.now - timedelta(minutes=15)
            self.message(ago, managers[0], "chat", f"late-first-{team}", "in")
            second = f"late-next-{team}"
            self.message(ago - timedelta(minutes=15), managers[0], "chat", second, "in")
            self.message(ago - timedelta(minutes=13), managers[0], "chat", second, "out")
            self.message(ago, managers[0], "chat", second, "in")


def history(now: datetime, seed: int = 20261122, *, waiting: bool = True) -> list[Event]:
    """The office's last 40 minutes before ``now``, in time order; without the clients
    waiting now if not ``waiting`` (a replay is history: its contacts never wait, so a
    test that replays the rest posts those live, :func:`waiting_now`)."""
    office = _Office(now, seed)
    for number in range(70):
        office.deal(number)
    for number in range(60):
        office.inbound_call(number)
        manager = office.rng.choice(MANAGERS)
        office.call(office.moment(now - SPAN, now), manager, f"prospect-{number}", "out")
    for number in range(90):
        office.conversation(number)
    if waiting:
        office.backlog()
    return sorted(office.events, key=lambda event: str(event["occurred_at"]))


def waiting_now(now: datetime, seed: int = 20261122) -> list[Event]:
    """The contacts of the clients waiting at ``now`` (what :func:`history` leaves out when
    not ``waiting``), in time order: posted live, they open waits."""
    office = _Office(now, seed)
    office.backlog()
    return sorted(office.events, key=lambda event: str(event["occurred_at"]))


def live_round(now: datetime, number: int) -> list[Event]:
    """Round ``number`` of live traffic: every team and channel gets contacts and replies.

    Round r: a new client writes in on each channel of each team, the client of round
    r-1 is answered, the client of round r-2 writes again and the client of round r-3
    gets that second answer (a next response); one deal is won and a call made. Rounds
    2 and 4 answer the history's late first and next contacts: SLA breaches.
    """
    office = _Office(now + timedelta(seconds=1), seed=number)
    for team, managers in TEAMS.items():
        manager = managers[number % len(managers)]
        for channel in CHANNELS:
            client = f"live-{team}-{channel}"
            office.message(now, manager, channel, f"{client}-{number}", "in")
            office.message(now, manager, channel, f"{client}-{number - 1}", "out")
            office.message(now, manager, channel, f"{client}-{number - 2}", "in")
            office.message(now, manager, channel, f"{client}-{number - 3}", "out")
        office.call(now, manager, f"live-caller-{number}", "out")
        late = {2: f"late-first-{team}", 4: f"late-next-{team}"}.get(number)
        if late:
            office.message(now, managers[0], "chat", late, "out")
        deal = f"live-deal-{team}-{number}"
        office.add("deal_stage_changed", now, manager, entity_id=deal, pipeline=PIPELINE,
                   stage_to="negotiation", stage_kind="open")  # fmt: skip
        office.close(now, manager, deal, f"live-client-{number}", "negotiation", won=True)
    for event in office.events:
        event["event_id"] = f"live-{number}-{event['event_id']}"
    return office.events
