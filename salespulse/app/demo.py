"""Demo traffic: a small sales office posting canonical events to the real ingest over HTTP.

Six managers of a telesales office work one pipeline: leads arrive, deals move stage by
stage, most are lost on the way and some are won (about 15 an hour); calls and chat
messages flow in both directions. Clients who write or whose call was missed get an
answer after a while, mostly within the demo's SLA (tenants file), sometimes late, so the
waiting list and the SLA alerts live. Ids are synthetic; there is no personal data in it.

The office's history is posted first (``DemoOffice.month_so_far``): the day's deal flow
since midnight and the wins of the month's earlier days. A wall opened at 3 p.m. on the
20th then shows a day's and a month's revenue on pace with the plan, not an office that
opened when the command started. The demo tenant's monthly targets (demo_tenants.yaml) are
this rate of wins around the clock, so "vs pace" hovers around zero, as in a real office.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from mode import Service

logger = logging.getLogger(__name__)

TENANT = "demo"
# Opens the demo tenant's `office` wall screen (demo_tenants.yaml keeps its SHA-256).
WALL_TOKEN = "demo-wall"  # noqa: S105 - public on purpose, like the demo itself
PIPELINE = "sales"
STAGES = ("new", "qualified", "proposal", "negotiation")
MANAGERS = tuple(f"m-{n}" for n in range(101, 107))
CHANNELS = ("chat", "messenger", "email")
# Median reply delay (s) and its spread: most replies come within the SLA, some do not.
REPLY_MEDIAN_S = {"message": 45.0, "call": 90.0}
REPLY_SPREAD = 0.9
MAX_REPLY_S = 900.0
TICK_S = 0.4  # DemoTraffic posts one tick's events this often
# Per tick: a new deal, or a step of an open deal (next stage, or lost); else a call or a
# message. About 15 wins of ~$500 an hour (a step finding no open deal opens one).
NEW_DEAL_P = 0.004
ADVANCE_P = 0.017
CALL_P = 0.54  # of the ticks left: calls, the rest chat messages
LOST_P = 0.25  # each step of a deal
WON_USD = (100, 900)  # uniform, whole dollars
# The website's ad spend, posted as a `marketing_cost` event at the start of each day
# (event-fed costs: cost of acquisition and ROMI need no dates in the tenants file).
AD_SPEND_PER_DAY_USD = 1000
BACKFILL_CHUNK = 500


@dataclass
class _Deal:
    deal_id: str
    manager: str
    stage_index: int = 0


class DemoOffice:
    """Generates the next few events of a plausible office; pure apart from the RNG."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._deals: list[_Deal] = []
        # (due, sequence, reply to send): answers to clients who are waiting
        self._replies: list[tuple[datetime, int, dict[str, Any]]] = []
        self._sequence = 0
        self._spend_posted_for: date | None = None  # the last day whose ad spend was posted

    def next_events(self, now: datetime) -> list[dict[str, Any]]:
        if self._spend_posted_for != now.date():
            return [self._ad_spend(now)]
        due: list[dict[str, Any]] = []
        while self._replies and self._replies[0][0] <= now:
            reply = heapq.heappop(self._replies)[2]
            reply.update(self._base(reply.pop("type"), now, reply.pop("manager_id")))
            due.append(reply)
        if due:
            return due
        roll = self._rng.random()
        if roll < NEW_DEAL_P + ADVANCE_P:
            return self.deal_flow(now, new=roll < NEW_DEAL_P)
        if self._rng.random() < CALL_P:
            return [self._call(now)]
        return [self._message(now)]

    def deal_flow(self, now: datetime, *, new: bool | None = None) -> list[dict[str, Any]]:
        """A new deal or a step of an open one (new=None: drawn at the demo's ratio)."""
        if new is None:
            new = self._rng.random() < NEW_DEAL_P / (NEW_DEAL_P + ADVANCE_P)
        if new or not self._deals:
            return self._new_deal(now)
        return self._advance(now)

    def month_so_far(self, now: datetime) -> list[dict[str, Any]]:
        """The office's history this month, oldest first (the demo tenant's zone is UTC):
        only the wins of the days before today (~400 a day, what the month's figures
        need), then today's whole deal flow (``day_so_far``)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        history: list[dict[str, Any]] = []
        for day in range(1, midnight.day):
            start = midnight.replace(day=day)
            history.append(self._ad_spend(start))
            flow = self._deal_flow_between(start, start + timedelta(days=1))
            history += [event for event in flow if event.get("stage_kind") == "won"]
        return [*history, self._ad_spend(midnight), *self.day_so_far(now)]

    def day_so_far(self, now: datetime) -> list[dict[str, Any]]:
        """The deal flow since midnight, oldest first, at the live rate. Calls and messages
        are left out: a day of them is ~150,000 events, and they have no plan to be on
        pace with."""
        return self._deal_flow_between(now.replace(hour=0, minute=0, second=0, microsecond=0), now)

    def _deal_flow_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        step = timedelta(seconds=TICK_S / (NEW_DEAL_P + ADVANCE_P))
        events: list[dict[str, Any]] = []
        at = start + step
        while at < end:
            events += self.deal_flow(at)
            at += step
        return events

    def _ad_spend(self, day_start: datetime) -> dict[str, Any]:
        self._spend_posted_for = day_start.date()
        event = self._base("marketing_cost", day_start, self._rng.choice(MANAGERS))
        del event["manager_id"], event["team"]  # the office's spend, nobody's in particular
        event.update(amount=str(AD_SPEND_PER_DAY_USD), currency="USD", source_channel="website")
        return event

    def _base(self, kind: str, now: datetime, manager: str) -> dict[str, Any]:
        return {
            "event_id": f"demo-{uuid.UUID(int=self._rng.getrandbits(128))}",
            "tenant": TENANT,
            "source": "demo",
            "type": kind,
            "occurred_at": now.isoformat(),
            "manager_id": manager,
            "team": "team-a" if manager < "m-104" else "team-b",
        }

    def _call(self, now: datetime) -> dict[str, Any]:
        answered = self._rng.random() < 0.8
        manager = self._rng.choice(MANAGERS)
        event = self._base("call", now, manager)
        client = f"c-{self._rng.randrange(500)}"
        event.update(
            channel="phone",
            direction=self._rng.choice(("in", "out")),
            answered=answered,
            duration_s=round(self._rng.uniform(20, 600), 1) if answered else 0,
            client_id=client,
        )
        if event["direction"] == "in" and not answered:  # a missed call: call back later
            callback = {"channel": "phone", "direction": "out", "answered": True}
            callback.update(duration_s=round(self._rng.uniform(20, 300), 1), client_id=client)
            self._answer_later(now, "call", manager, callback)
        return event

    def _message(self, now: datetime) -> dict[str, Any]:
        manager = self._rng.choice(MANAGERS)
        event = self._base("message", now, manager)
        client = self._rng.randrange(500)
        conversation = {
            "channel": self._rng.choice(CHANNELS),
            "client_id": f"c-{client}",
            "conversation_id": f"conv-{client}",
        }
        writes = self._rng.random() < 0.25  # else a manager's follow-up
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

    def _new_deal(self, now: datetime) -> list[dict[str, Any]]:
        deal = _Deal(f"d-{self._rng.getrandbits(40):x}", self._rng.choice(MANAGERS))
        self._deals.append(deal)
        lead = self._base("lead_created", now, deal.manager)
        lead.update(entity_id=f"l-{deal.deal_id}", source_channel="website")
        created = self._base("deal_created", now, deal.manager)
        created.update(entity_id=deal.deal_id, pipeline=PIPELINE)
        entered = self._stage_event(now, deal, None, STAGES[0], "open")
        return [lead, created, entered]

    def _advance(self, now: datetime) -> list[dict[str, Any]]:
        deal = self._rng.choice(self._deals)
        current = STAGES[deal.stage_index]
        if self._rng.random() < LOST_P:
            self._deals.remove(deal)
            lost = self._stage_event(now, deal, current, "lost", "lost")
            lost["lost_reason"] = self._rng.choice(("price", "competitor", "no_budget"))
            return [lost]
        if deal.stage_index + 1 < len(STAGES):
            deal.stage_index += 1
            return [self._stage_event(now, deal, current, STAGES[deal.stage_index], "open")]
        self._deals.remove(deal)
        won = self._stage_event(now, deal, current, "won", "won")
        won.update(amount=str(Decimal(self._rng.randint(*WON_USD))), currency="USD")
        return [won]

    def _stage_event(
        self, now: datetime, deal: _Deal, stage_from: str | None, stage_to: str, kind: str
    ) -> dict[str, Any]:
        event = self._base("deal_stage_changed", now, deal.manager)
        event.update(entity_id=deal.deal_id, pipeline=PIPELINE, stage_to=stage_to, stage_kind=kind)
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._url = ingest_url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._interval_s = interval_s
        self._office = DemoOffice()

    async def on_started(self) -> None:
        self.add_future(self._post_forever())

    async def _post_forever(self) -> None:
        async with aiohttp.ClientSession() as session:
            await self._wait_for_ingest(session)
            await self._post_history(session)
            while not self.should_stop:
                await self._post(session, self._office.next_events(datetime.now(UTC)), "post")
                await asyncio.sleep(self._interval_s)

    async def _post_history(self, session: aiohttp.ClientSession) -> None:
        # Up to a month of deal flow to simulate (~140,000 steps): not on the event loop.
        events = await asyncio.to_thread(self._office.month_so_far, datetime.now(UTC))
        for first in range(0, len(events), BACKFILL_CHUNK):
            await self._post(session, events[first : first + BACKFILL_CHUNK], "history post")
        logger.info("demo: posted the office's history this month (%d events)", len(events))

    async def _post(
        self, session: aiohttp.ClientSession, events: list[dict[str, Any]], what: str
    ) -> None:
        """A failed post is logged and skipped: demo traffic is not worth retrying."""
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
