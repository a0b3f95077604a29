"""Demo traffic: a sales office posting canonical events to the real ingest over HTTP.

Ten telesales managers (salespulse/app/demo_offices.py: a Ukrainian office in UAH, a
Russian one in RUB or an English-speaking one in USD) work one pipeline: leads arrive from
the website, referrals and cold calls, deals move stage by stage, most are lost on the way
and a few a day per manager are won; calls and chat messages flow in both directions.
Clients who write or whose call was missed get an answer after a while, mostly within the
demo's SLA (tenants file), sometimes late, so the waiting list and the SLA alerts live.
Ids are synthetic; there is no client data in it.

Events come as a Poisson process at each manager's daily rates, spread over 24 hours
(``speed`` multiplies the rates: a busier office for a presentation or a test). The
office's history is posted first (``DemoOffice.month_so_far``): the wins of the month's
earlier days and today's whole activity since the office's midnight, so a wall opened at
3 p.m. on the 20th shows a day's and a month's figures on pace with the plan.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from mode import Service

from salespulse.app.demo_offices import (
    CALLS_PER_DAY,
    LEAD_SOURCES,
    MANAGERS,
    MAX_SPEED,
    MESSAGES_IN_PER_DAY,
    MESSAGES_OUT_PER_DAY,
    OFFICES,
    TEAMS,
    TENANT,
    WINS_PER_DAY,
    DemoLocale,
)

__all__ = ["PIPELINE", "TENANT", "WALL_TOKEN", "DemoOffice", "DemoTraffic"]

logger = logging.getLogger(__name__)

# Opens the demo tenant's `office` wall screen (demo_tenants.yaml keeps its SHA-256).
WALL_TOKEN = "demo-wall"  # noqa: S105 - public on purpose, like the demo itself
PIPELINE = "sales"
STAGES = ("new", "qualified", "proposal", "negotiation")
CHANNELS = ("chat", "messenger", "email")
# Median reply delay (s) and its spread: most replies come within the SLA, some do not.
REPLY_MEDIAN_S = {"message": 45.0, "call": 90.0}
REPLY_SPREAD = 0.9
MAX_REPLY_S = 900.0
TICK_S = 0.4  # DemoTraffic posts one tick's events this often
LOST_P = 0.25  # each step of a deal
WIN_P = (1 - LOST_P) ** len(STAGES)  # a new deal's chance to be won (four steps to pass)
# A deal's expected steps (each taken with the chance that it was not lost before). Steps
# come half again as often as the deals need, so the open pool stays small instead of
# wandering; a step with no open deal is idle, so every deal ends and wins are WIN_P of
# the new deals, as planned.
STEPS_PER_DEAL = sum((1 - LOST_P) ** n for n in range(len(STAGES)))
STEP_SURPLUS = 1.5
DAY_S = 86_400.0
BACKFILL_CHUNK = 500
_TEAM_OF = {manager: team for team, members in TEAMS.items() for manager in members}


@dataclass
class _Deal:
    deal_id: str
    manager: str
    source: str
    stage_index: int = 0


def _activity_rates() -> list[tuple[str, str, float]]:
    """(kind, manager, events a day) of everything the office does unprompted."""
    rates = []
    for manager in MANAGERS:
        new_deals = WINS_PER_DAY[manager] / WIN_P
        rates += [
            ("call", manager, float(CALLS_PER_DAY[manager])),
            ("message_out", manager, float(MESSAGES_OUT_PER_DAY)),
            ("message_in", manager, float(MESSAGES_IN_PER_DAY)),
            ("new_deal", manager, new_deals),
            ("advance", manager, new_deals * STEPS_PER_DEAL * STEP_SURPLUS),
        ]
    return rates


class DemoOffice:
    """Generates the next few events of a plausible office; pure apart from the RNG."""

    def __init__(
        self, seed: int | None = None, *, locale: DemoLocale = "en", speed: float = 1.0
    ) -> None:
        if not 0 < speed <= MAX_SPEED:
            raise ValueError(f"speed: between 0 and {MAX_SPEED:g}, not {speed}")
        self.office = OFFICES[locale]
        self.zone = ZoneInfo(self.office.timezone)
        self._rng = random.Random(seed)
        self._rates = _activity_rates()
        self._weights = [rate for _, _, rate in self._rates]
        # Events a second, office-wide: the history is the office's real pace, the live
        # traffic that times ``speed``.
        self._per_s = sum(self._weights) / DAY_S
        self._live_per_s = self._per_s * speed
        self._deals: dict[str, list[_Deal]] = {manager: [] for manager in MANAGERS}
        # (due, sequence, reply to send): answers to clients who are waiting
        self._replies: list[tuple[datetime, int, dict[str, Any]]] = []
        self._sequence = 0
        self._spend_posted_for: date | None = None  # the last local day whose spend was posted

    def next_events(self, now: datetime) -> list[dict[str, Any]]:
        """One tick's events: the day's ad spend when a day starts, replies due, and with
        the office's rate per tick one new piece of activity."""
        if self._spend_posted_for != now.astimezone(self.zone).date():
            return [self._ad_spend(now)]
        due = self._due_replies(now)
        if self._rng.random() < self._live_per_s * TICK_S:
            due += self._activity(now)
        return due

    def month_so_far(self, now: datetime) -> list[dict[str, Any]]:
        """The office's history this month, oldest first: each earlier day's ad spend and
        wins (what the month's figures need), then today's whole activity."""
        midnight = self._midnight(now)
        history: list[dict[str, Any]] = []
        for day in range(1, midnight.day):
            start = self._midnight(midnight.replace(day=day, hour=12))
            history.append(self._ad_spend(start))
            flow = self._between(start, self._midnight(start + timedelta(hours=36)), deals=True)
            history += [event for event in flow if event.get("stage_kind") == "won"]
        return [*history, self._ad_spend(midnight), *self.day_so_far(now)]

    def day_so_far(self, now: datetime) -> list[dict[str, Any]]:
        """Everything since the office's midnight, oldest first, at the live rate."""
        return self._between(self._midnight(now), now, deals=False)

    def _midnight(self, at: datetime) -> datetime:
        local = at.astimezone(self.zone)
        return datetime.combine(local.date(), datetime.min.time(), self.zone)

    def _between(self, start: datetime, end: datetime, *, deals: bool) -> list[dict[str, Any]]:
        """A Poisson process of the office's activity (only the deal flow if ``deals``)."""
        events: list[dict[str, Any]] = []
        for at in self._arrivals(start, end):
            events += self._due_replies(at)
            events += self._activity(at, deals_only=deals)
        return events

    def _arrivals(self, start: datetime, end: datetime) -> Iterator[datetime]:
        at = start
        while True:
            at += timedelta(seconds=self._rng.expovariate(self._per_s))
            if at >= end:
                return
            yield at

    def _due_replies(self, now: datetime) -> list[dict[str, Any]]:
        due: list[dict[str, Any]] = []
        while self._replies and self._replies[0][0] <= now:
            reply = heapq.heappop(self._replies)[2]
            reply.update(self._base(reply.pop("type"), now, reply.pop("manager_id")))
            due.append(reply)
        return due

    def _activity(self, now: datetime, *, deals_only: bool = False) -> list[dict[str, Any]]:
        kind, manager, _ = self._rng.choices(self._rates, weights=self._weights)[0]
        if kind == "new_deal":
            return self._new_deal(now, manager)
        if kind == "advance":
            return self._advance(now, manager)
        if deals_only:
            return []
        if kind == "call":
            return [self._call(now, manager)]
        return [self._message(now, manager, writes=kind == "message_in")]

    def _ad_spend(self, now: datetime) -> dict[str, Any]:
        self._spend_posted_for = now.astimezone(self.zone).date()
        event = self._base("marketing_cost", now, MANAGERS[0])
        del event["manager_id"], event["team"]  # the office's spend, nobody's in particular
        spend = self.office.ad_spend_per_day()
        event.update(amount=str(spend), currency=self.office.currency, source_channel="website")
        return event

    def _base(self, kind: str, now: datetime, manager: str) -> dict[str, Any]:
        return {
            "event_id": f"demo-{uuid.UUID(int=self._rng.getrandbits(128))}",
            "tenant": TENANT,
            "source": "demo",
            "type": kind,
            "occurred_at": now.isoformat(),
            "manager_id": manager,
            "team": _TEAM_OF[manager],
        }

    def _call(self, now: datetime, manager: str) -> dict[str, Any]:
        answered = self._rng.random() < 0.8
        event = self._base("call", now, manager)
        client = f"c-{self._rng.randrange(5000)}"
        # Telesales: most calls go out.
        direction = "out" if self._rng.random() < 0.75 else "in"
        event.update(
            channel="phone",
            direction=direction,
            answered=answered,
            duration_s=round(self._rng.uniform(20, 600), 1) if answered else 0,
            client_id=client,
        )
        if direction == "in" and not answered:  # a missed call: call back later
            callback = {"channel": "phone", "direction": "out", "answered": True}
            callback.update(duration_s=round(self._rng.uniform(20, 300), 1), client_id=client)
            self._answer_later(now, "call", manager, callback)
        return event

    def _message(self, now: datetime, manager: str, *, writes: bool) -> dict[str, Any]:
        event = self._base("message", now, manager)
        client = self._rng.randrange(5000)
        conversation = {
            "channel": self._rng.choice(CHANNELS),
            "client_id": f"c-{client}",
            "conversation_id": f"conv-{client}",
        }
        event.update(conversation, direction="in" if writes else "out")
        if writes:
            self._answer_later(now, "message", manager, {**conversation, "direction": "out"})
        return event

    def _answer_later(self, now: datetime, kind: str, manager: str, fields: dict[str, Any]) -> None:
        median = REPLY_MEDIAN_S[kind]
        delay = min(MAX_REPLY_S, median * math.exp(self._rng.gauss(0, REPLY_SPREAD)))
        self._sequence += 1
        reply = {**fields, "type": kind, "manager_id": manager}
        heapq.heappush(self._replies, (now + timedelta(seconds=delay), self._sequence, reply))

    def _new_deal(self, now: datetime, manager: str) -> list[dict[str, Any]]:
        sources = [source for source, _ in LEAD_SOURCES]
        source = self._rng.choices(sources, weights=[share for _, share in LEAD_SOURCES])[0]
        deal = _Deal(f"d-{self._rng.getrandbits(40):x}", manager, source)
        self._deals[manager].append(deal)
        lead = self._base("lead_created", now, manager)
        lead.update(entity_id=f"l-{deal.deal_id}", source_channel=source)
        created = self._base("deal_created", now, manager)
        created.update(entity_id=deal.deal_id, pipeline=PIPELINE, source_channel=source)
        entered = self._stage_event(now, deal, None, STAGES[0], "open")
        return [lead, created, entered]

    def _advance(self, now: datetime, manager: str) -> list[dict[str, Any]]:
        deals = self._deals[manager]
        if not deals:
            return []
        deal = self._rng.choice(deals)
        current = STAGES[deal.stage_index]
        if self._rng.random() < LOST_P:
            deals.remove(deal)
            lost = self._stage_event(now, deal, current, "lost", "lost")
            lost["lost_reason"] = self._rng.choice(("price", "competitor", "no_budget"))
            return [lost]
        if deal.stage_index + 1 < len(STAGES):
            deal.stage_index += 1
            return [self._stage_event(now, deal, current, STAGES[deal.stage_index], "open")]
        deals.remove(deal)
        won = self._stage_event(now, deal, current, "won", "won")
        office = self.office
        steps = (office.check_high - office.check_low) // office.step
        amount = office.check_low + office.step * self._rng.randint(0, steps)
        won.update(amount=str(Decimal(amount)), currency=office.currency)
        return [won]

    def _stage_event(
        self, now: datetime, deal: _Deal, stage_from: str | None, stage_to: str, kind: str
    ) -> dict[str, Any]:
        event = self._base("deal_stage_changed", now, deal.manager)
        event.update(
            entity_id=deal.deal_id,
            pipeline=PIPELINE,
            stage_to=stage_to,
            stage_kind=kind,
            source_channel=deal.source,
        )
        if stage_from:
            event["stage_from"] = stage_from
        return event


class DemoTraffic(Service):
    """Posts the office's events to the ingest URL a few times a second."""

    def __init__(
        self,
        ingest_url: str,
        *,
        interval_s: float = TICK_S,
        token: str | None = None,
        locale: DemoLocale = "en",
        speed: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._url = ingest_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._interval_s = interval_s
        self._office = DemoOffice(locale=locale, speed=speed)

    async def on_started(self) -> None:
        self.add_future(self._post_forever())

    async def _post_forever(self) -> None:
        async with aiohttp.ClientSession() as session:
            await self._wait_for_ingest(session)
            await self._post_history(session)
            while not self.should_stop:
                await self._post(
                    session, self._office.next_events(datetime.now(self._office.zone)), "post"
                )
                await asyncio.sleep(self._interval_s)

    async def _post_history(self, session: aiohttp.ClientSession) -> None:
        # Up to a month of deal flow to simulate (~140,000 steps): not on the event loop.
        events = await asyncio.to_thread(self._office.month_so_far, datetime.now(self._office.zone))
        for first in range(0, len(events), BACKFILL_CHUNK):
            await self._post(session, events[first : first + BACKFILL_CHUNK], "history post")
        logger.info("demo: posted the office's history this month (%d events)", len(events))

    async def _post(
        self, session: aiohttp.ClientSession, events: list[dict[str, Any]], what: str
    ) -> None:
        """A failed post is logged and skipped: demo traffic is not worth retrying."""
        if not events:  # a quiet tick (most are, at a real office's pace): nothing to post
            return
        try:
            async with session.post(self._url, json=events, headers=self._headers) as response:
                if response.status >= 300:
                    logger.warning("demo %s answered %d", what, response.status)
        except aiohttp.ClientError as exc:
            logger.warning("demo %s failed: %r", what, exc)

    async def _wait_for_ingest(self, session: aiohttp.ClientSession) -> None:
        """The web server starts after the services; don't greet it with errors."""
        health_url = self._url.rsplit("/v1/", 1)[0] + "/healthz"
        while not self.should_stop:
            try:
                async with session.get(health_url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
