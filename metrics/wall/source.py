"""Frames from Redis: today's and this month's sums per tenant, read again only when needed.

A poller asks for a frame several times a second. The KPI sums of a tenant are re-read
only when a worker has applied a batch since (the KPI and SLA consumers' offset
watermarks, two small hashes) or after ``refresh_s`` (the calendar day rolls over
without any event); otherwise the frame is rebuilt from the sums already read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis

from metrics.read.kpi_reader import KpiReader, RawSums
from metrics.read.waiting import WaitingReader
from metrics.read.won_deals import RecentWin
from metrics.wall.frame import Frame, WallKey, build_frame
from metrics.wall.wins import RECENT_WINS_S
from salespulse.core.tenants import TenantDirectory


@dataclass
class _Sums:
    watermark: bytes
    read_at: float
    today: RawSums
    month: RawSums
    wins: list[RecentWin]
    won_today: int
    names: dict[str, str]  # manager id → display name, re-read with the sums


class WallSource:
    def __init__(
        self,
        reader: KpiReader,
        client: redis.Redis,
        tenants: TenantDirectory,
        offsets_keys: tuple[str, ...],
        *,
        waiting: WaitingReader | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._staff = reader.staff_reader()
        self._client = client
        self._tenants = tenants
        self._offsets_keys = offsets_keys
        self._waiting = waiting
        self._refresh_s = refresh_s
        self._clock = clock
        self._sums: dict[str, _Sums] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def frame(self, key: WallKey) -> Frame:
        sums = await self._tenant_sums(key.tenant)
        now = self._reader.now()
        waits = None
        if self._waiting is not None:
            waits = await asyncio.to_thread(self._waits, self._waiting, key, now)
        return build_frame(
            key,
            self._tenants.get(key.tenant),
            now,
            sums.today,
            sums.month,
            waiting=waits,
            wins=sums.wins,
            names=sums.names,
        )

    @staticmethod
    def _waits(reader: WaitingReader, key: WallKey, now: datetime) -> list[dict[str, object]]:
        """The key's waits as GET /v1/waiting shows them, timed at the frame's instant."""
        return [
            wait.as_json()
            for wait in reader.waiting(key.tenant, now)
            if key.team is None or wait.team == key.team
        ]

    async def _tenant_sums(self, tenant: str) -> _Sums:
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:  # pollers of several teams of one tenant share one read
            held = self._sums.get(tenant)
            watermark = await asyncio.to_thread(self._watermark)
            fresh = held is not None and self._clock() - held.read_at < self._refresh_s
            if held is not None and fresh and held.watermark == watermark:
                return held
            started = self._clock()
            today, month, wins, won_today = await asyncio.to_thread(
                self._read, tenant, self._reader.now(), held
            )
            # A sync changes names without any batch: they refresh at least every refresh_s.
            names = await asyncio.to_thread(self._staff.names, tenant)
            held = self._sums[tenant] = _Sums(
                watermark, started, today, month, wins, won_today, names
            )
            return held

    def _watermark(self) -> bytes:
        pipe = self._client.pipeline(transaction=False)
        for key in self._offsets_keys:
            pipe.hgetall(key)
        return repr([sorted(offsets.items()) for offsets in pipe.execute()]).encode()

    def _read(
        self, tenant: str, now: datetime, held: _Sums | None
    ) -> tuple[RawSums, RawSums, list[RecentWin], int]:
        """Today's and the month's sums, and the recent wins when today's won count moved.

        The won-deal index holds every won deal of the tenant: it is read again only when
        today's count of won deals changed, not for each batch of calls and messages.
        """
        today = self._reader.raw(tenant, "today", now)
        month = self._reader.raw(tenant, "month", now)
        won_today = sum(amount for (component, _), amount in today.items() if component == "won")
        if held is not None and held.won_today == won_today:
            return today, month, held.wins, won_today
        wins = self._reader.recent_wins(tenant, now - timedelta(seconds=RECENT_WINS_S))
        return today, month, wins, won_today

    def forget(self, tenant: str) -> None:
        """Drop a tenant's cached sums when no wall shows it any more."""
        self._sums.pop(tenant, None)
