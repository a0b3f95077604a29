"""What the KPI writes cost Redis: its CPU per event, and the longest single Lua apply.

Redis runs one command at a time, so one long ``EVALSHA`` blocks every reader and writer
(a /metrics scrape, the other stage); and its CPU, not the workers', is what caps a
deployment that shares one Redis. Both come from Redis itself: ``INFO cpu`` (the
server's own user + system CPU seconds) and ``INFO commandstats`` (time inside each
command), deltas over a measured section; the longest call from ``SLOWLOG``, which the
probe points at calls of 1 ms or more for the section and sets back afterwards.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from salespulse.dev.bench.parts import delete_keys
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink

SLOWLOG_FROM_US = 1000
SLOWLOG_LENGTH = 10_000
SWEEP_MANAGERS = (10, 200, 2000)
TARGET_REDIS_US = 5.0  # per event at 200 managers (issue 19)
TARGET_LUA_MS = 20.0
# batches as the worker writes them (SALESPULSE_BATCH_MAX_RECORDS' default)
_SWEEP_BATCH = 5000


@dataclass(frozen=True)
class RedisCost:
    cpu_s: float  # Redis's user + system CPU over the section
    script_s: float  # of which inside EVALSHA (commandstats)
    scripts: int  # EVALSHA calls
    longest_ms: float  # the longest single EVALSHA (nan: none took 1 ms)

    def per_event_us(self, events: int) -> float:
        return self.cpu_s / events * 1e6 if events else math.nan

    def describe(self, events: int) -> str:
        longest = "< 1 ms" if math.isnan(self.longest_ms) else f"{self.longest_ms:,.1f} ms"
        return (
            f"Redis CPU {self.per_event_us(events):,.1f} µs/event "
            f"({self.script_s / max(events, 1) * 1e6:,.1f} µs of it in {self.scripts:,} Lua "
            f"applies), longest Lua apply {longest}"
        )


async def _cpu_and_scripts(client: aioredis.Redis) -> tuple[float, float, int]:
    cpu = await client.info("cpu")
    stats = await client.info("commandstats")
    script = stats.get("cmdstat_evalsha", {})
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        float(script.get("usec", 0)) / 1e6,
        int(script.get("calls", 0)),
    )


class RedisProbe:
    """``start`` before a section, ``stop`` after it; Redis's settings are put back."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._before = (0.0, 0.0, 0)
        self._config: dict[str | None, str | None] = {}
        self._started = time.time()

    async def start(self) -> None:
        client = self._client
        try:
            self._config = await client.config_get("slowlog-*")
            await client.config_set("slowlog-log-slower-than", SLOWLOG_FROM_US)
            await client.config_set("slowlog-max-len", SLOWLOG_LENGTH)
        except RedisError:  # a managed Redis may refuse CONFIG: no longest call then
            self._config = {}
        self._started = time.time()
        self._before = await _cpu_and_scripts(client)

    async def stop(self) -> RedisCost:
        client = self._client
        cpu, script_s, scripts = await _cpu_and_scripts(client)
        longest = math.nan
        if self._config:
            started_us = self._started * 1e6
            for entry in await client.slowlog_get(SLOWLOG_LENGTH):
                command = entry["command"]
                words = command.split() if isinstance(command, bytes) else [b""]
                if words[0].upper() == b"EVALSHA" and entry["start_time"] * 1e6 >= started_us - 1e6:
                    duration_ms = entry["duration"] / 1000
                    longest = duration_ms if math.isnan(longest) else max(longest, duration_ms)
            for name, value in self._config.items():
                if name is not None and value is not None:
                    await client.config_set(name, value)
        before_cpu, before_script_s, before_scripts = self._before
        return RedisCost(
            cpu - before_cpu, script_s - before_script_s, scripts - before_scripts, longest
        )


async def redis_cost_by_managers(redis_url: str, events: int) -> list[str]:
    """Redis CPU per event as the number of managers grows: the same traffic applied
    straight through the product's applier (no broker: Redis is what is measured)."""
    client = aioredis.Redis.from_url(redis_url)
    lines: list[str] = []
    figures: dict[int, float] = {}
    try:
        for managers in SWEEP_MANAGERS:
            keys = KpiKeys(f"spcost-{uuid.uuid4().hex[:8]}:")
            sink = RedisKpiSink(client, keys, group="bench-cost", dedupe_ttl_s=3600, day_ttl_s=7200)
            applier = KpiApplier(sink, BENCH_TENANTS, keys)
            batch = list(
                synthetic_events(
                    events, managers, f"cost{managers}", managers_per_tenant=max(1, managers // 2)
                )
            )
            probe = RedisProbe(client)
            await probe.start()
            # Hash fields the batches write: what Redis's work per event grows with, as
            # more managers leave fewer events sharing a (bucket, field) within a batch.
            fields = 0
            for start in range(0, len(batch), _SWEEP_BATCH):
                fold = await applier.apply(batch[start : start + _SWEEP_BATCH], {})
                fields += sum(map(len, fold.increments.values()))
            cost = await probe.stop()
            figures[managers] = cost.per_event_us(events)
            lines.append(
                f"  {managers:>5,} managers: {cost.describe(events)}; "
                f"{fields / events:,.1f} hash fields written per event"
            )
            await delete_keys(client, f"{keys.prefix}*")
    finally:
        await client.aclose()
    at_200 = figures.get(200, math.nan)
    flat = figures[SWEEP_MANAGERS[-1]] / figures[SWEEP_MANAGERS[0]]
    verdict = {True: "PASS", False: "FAIL"}
    return [
        f"Redis per event by managers ({events:,} events each, batches of {_SWEEP_BATCH:,}):",
        *lines,
        f"target Redis CPU <= {TARGET_REDIS_US:.0f} µs/event at 200 managers: "
        f"{verdict[at_200 <= TARGET_REDIS_US]}",
        f"target Redis CPU flat in managers (2,000 vs 10: {flat:,.2f}x, <= 1.25x): "
        f"{verdict[flat <= 1.25]}",
    ]
