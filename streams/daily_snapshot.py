"""Once per tenant and local day: the snapshot KPIs the day ended with.

Open, ready and stuck deals and waiting clients are states, not sums: a past period
answers them at its end (docs/kpi-semantics.md, "Periods"). The KPI applier calls
``before_commit`` before it writes a batch; the first batch of a tenant on local day W
finds the store as every earlier batch left it, which is how day W-1 ended (a day with no
batch after it keeps its end state until the next batch, so the reader takes the first
snapshot on or after the day it wants). Stuck deals are judged at that moment.

One Redis round trip per tenant and day after the first; the counts are written with
HSET then EXPIRE (two workers racing write the same counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.codecs import split_stage_member
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory


class DailySnapshot:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KpiKeys,
        tenants: TenantDirectory,
        *,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._keys = keys
        self._tenants = tenants
        self._ttl_s = ttl_s
        self._clock = clock
        self._done: set[tuple[str, date]] = set()

    async def before_commit(self, events: Sequence[CrmEvent]) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC)
        for tenant in sorted({event.tenant for event in events}):
            today = now.astimezone(self._tenants.zone_for(tenant)).date()
            if (tenant, today) in self._done:
                continue
            if len(self._done) > 100_000:
                self._done.clear()
            ended = today - timedelta(days=1)
            key = self._keys.day_snapshot(tenant, ended.isoformat())
            if not await self._client.exists(key):
                counts = await self.counts(tenant, now)
                pipe = self._client.pipeline(transaction=False)
                # an empty hash cannot be stored: "none" marks a day that ended with none
                fields: dict[str | bytes, int] = {"none": 0}
                fields.update(counts)
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # stub too narrow
                pipe.expire(key, self._ttl_s)
                await pipe.execute()
            self._done.add((tenant, today))

    async def counts(self, tenant: str, now: datetime) -> dict[str, int]:
        """Open, ready and stuck deals per stage and waiting clients, as the reader's live
        counts (metrics/read/kpi_reader.py) reckon them."""
        config = self._tenants.get(tenant)
        members = await self._client.smembers(self._keys.open_keys(tenant))
        now_us = round(now.timestamp() * 1_000_000)
        pipe = self._client.pipeline(transaction=False)
        plan: list[str] = []
        for member in sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members):
            pipeline, stage = split_stage_member(member)
            key = self._keys.open_stage(tenant, pipeline, stage)
            pipe.zcard(key)
            plan.append(f"open:{pipeline}:{stage}")
            configured = config.pipelines.get(pipeline)
            if configured is None:
                continue
            if stage in configured.ready_stages():
                pipe.zcard(key)
                plan.append(f"ready:{pipeline}:{stage}")
            limit = configured.limit_hours_of(stage)
            if limit is not None:
                pipe.zcount(key, "-inf", f"({now_us - round(limit * 3_600_000_000)}")
                plan.append(f"stuck:{pipeline}:{stage}")
        pipe.zcard(self._keys.waiting(tenant))
        plan.append("waiting")
        return {
            name: int(count)
            for name, count in zip(plan, await pipe.execute(), strict=True)
            if count
        }
