"""``salespulse soak``: a steady event rate for N minutes; does memory level off?

Everything on loopback: an embedded broker and redis-server, and SalesPulse (ingest,
worker and exporter in one process, as ``salespulse run``) in a child process. A steady
mix of single-event POSTs goes to the ingest: calls over a bounded set of clients,
messages over a bounded set of conversations, deal lifecycles that close (won or lost)
and new leads. Every sample prints the RSS of each process, Redis ``used_memory``, its
key count and the bytes of each key family; the end compares the slope of the second
half with the first's. Levelling off: the late slope is a small fraction of the early one.

The retentions are set short (a fifth of the run), and the worker's entity cache small
(2 MiB), so that levelling shows in minutes;
this bypasses their floors above the lateness limit on purpose (the soak sends no late
events). Two families cannot level off in minutes and are reported apart: minute/hour
KPI buckets (2 h and 2 days by design) and event-id sets (one per day, kept 40 days).
The embedded Tansu broker keeps every record in memory, so its RSS grows by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from salespulse.app.embedded import free_port, start_broker, start_redis
from salespulse.core.settings import Settings
from salespulse.dev.bench.parts import stage_processes_of

TENANTS = ("north", "south")
CLIENTS = 2000
CONVERSATIONS = 500  # per tenant
MANAGERS = 20
MAX_IN_FLIGHT = 32
SOAK_CACHE_BYTES = 2 * 1024 * 1024
_DAY_S = 86_400
# key family → the part of the key after the prefix that names it
FAMILIES = (
    ("deal/lead state", "ent:*:deal:*", "ent:*:lead:*"),
    ("conversation state", "ent:*:conv:*"),
    ("waiting list", "waiting:*"),
    ("won/open indexes", "won:*", "open:*", "openkeys:*"),
    ("KPI buckets m/h (2 h / 2 d)", "kpi:*:m:*", "kpi:*:h:*"),
    ("KPI buckets d/w/mo/all", "kpi:*:d:*", "kpi:*:w:*", "kpi:*:mo:*", "kpi:*:all:*"),
    ("event ids (per day, 40 d)", "seen:*"),
    ("event marks (per day, kept)", "mark:*"),
    ("SLA marks (per day, kept)", "smark:*"),
)
# the families a retention bounds within minutes: their slope must level off
RETAINED = frozenset({"deal/lead state", "conversation state", "waiting list"})


@dataclass
class Sample:
    minute: float
    sent: int
    rss: dict[str, int]
    used_memory: int
    keys: int
    families: dict[str, int]


class Traffic:
    """The event mix; deals move created → qualified → proposal → won/lost, then new ones."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - traffic, not secrets
        self._count = 0
        self._deals: dict[tuple[str, int], int] = {}  # (tenant, deal) → steps done
        self._next_deal = 0

    def next_event(self) -> dict[str, Any]:
        rng = self._rng
        self._count += 1
        tenant = rng.choice(TENANTS)
        event: dict[str, Any] = {
            "event_id": f"soak-{self._count}",
            "tenant": tenant,
            "occurred_at": datetime.now(UTC).isoformat(),
            "manager_id": f"m-{rng.randrange(MANAGERS)}",
            "source": "soak",
        }
        roll = rng.random()
        direction = rng.choice(("in", "out"))
        if roll < 0.40:
            answered = rng.random() < 0.75
            event.update(type="call", channel="phone", direction=direction, answered=answered)
            event.update(client_id=f"c-{rng.randrange(CLIENTS)}")
            event["duration_s"] = round(rng.uniform(5, 600), 1) if answered else 0.0
        elif roll < 0.75:
            event.update(type="message", channel="chat", direction=direction)
            event["conversation_id"] = f"conv-{rng.randrange(CONVERSATIONS)}"
        elif roll < 0.80:
            event.update(type="lead_created", entity_id=f"l-{self._count}")
        else:
            event.update(self._deal_step(tenant))
        return event

    def _deal_step(self, tenant: str) -> dict[str, Any]:
        rng = self._rng
        open_deals = [deal for deal in self._deals if deal[0] == tenant]
        if len(open_deals) < 50 or rng.random() < 0.25:
            self._next_deal += 1
            self._deals[tenant, self._next_deal] = 0
            return {"type": "deal_created", "entity_id": f"d-{self._next_deal}",
                    "pipeline": "sales"}  # fmt: skip
        deal = rng.choice(open_deals)
        steps = self._deals[deal] = self._deals[deal] + 1
        step = {"type": "deal_stage_changed", "entity_id": f"d-{deal[1]}", "pipeline": "sales"}
        if steps < 3:
            step.update(stage_to=("qualified", "proposal")[steps - 1], stage_kind="open")
            return step
        del self._deals[deal]
        if rng.random() < 0.4:
            step.update(stage_to="won", stage_kind="won", amount="1500.00", currency="USD")
            step["client_id"] = f"c-{rng.randrange(CLIENTS)}"
        else:
            step.update(stage_to="lost", stage_kind="lost", lost_reason="price")
        return step


def soak_settings(base: Settings, workdir: Path, retention_s: float, **wiring: Any) -> Settings:
    """The process's settings: loopback wiring and short retentions (floors bypassed)."""
    day = retention_s / _DAY_S
    return base.model_copy(
        update={
            **wiring,
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "data_dir": workdir / "data",
            "tenants_file": None,
            "ingest_token": None,
            "entity_retention_days": day,
            "conversation_retention_days": day,
            "wait_max_age_days": day / 2,
            # small, so that the worker's cache reaches its bound within the run
            "entity_cache_bytes": SOAK_CACHE_BYTES,
        }
    )


def rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def family_bytes(client: aioredis.Redis, prefix: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name, *patterns in FAMILIES:
        total = 0
        for pattern in patterns:
            keys = [key async for key in client.scan_iter(f"{prefix}{pattern}", count=1000)]
            for start in range(0, len(keys), 500):
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + 500]:
                    pipe.memory_usage(key)
                total += sum(int(size or 0) for size in await pipe.execute())
        sizes[name] = total
    return sizes


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minute, value)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def report(samples: list[Sample]) -> list[str]:
    """Early vs late slope per series; the halves share the middle sample."""
    half = len(samples) // 2
    early, late = samples[: half + 1], samples[half:]
    series: dict[str, list[float]] = {}
    for sample in samples:
        for name, value in sample.rss.items():
            series.setdefault(f"RSS {name}", []).append(value)
        series.setdefault("Redis used_memory", []).append(sample.used_memory)
        retained = sum(v for k, v in sample.families.items() if k in RETAINED)
        series.setdefault("Redis retained states", []).append(retained)
        for name, value in sample.families.items():
            series.setdefault(f"  {name}", []).append(value)
    lines = [f"{'series':<36} {'early KiB/min':>14} {'late KiB/min':>13} {'late/early':>10}"]
    for name, values in series.items():
        slopes = []
        for part, offset in ((early, 0), (late, half)):
            points = [(s.minute, values[offset + i]) for i, s in enumerate(part)]
            slopes.append(slope_per_minute(points) / 1024)
        ratio = f"{slopes[1] / slopes[0]:.2f}" if slopes[0] > 1 else "-"
        lines.append(f"{name:<36} {slopes[0]:>14.1f} {slopes[1]:>13.1f} {ratio:>10}")
    return lines


async def _post_steadily(
    url: str, rate: float, seconds: float, max_events: int, statuses: Counter[int]
) -> None:
    traffic = Traffic(seed=7)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(event: dict[str, Any]) -> None:
            try:
                async with session.post(url, json=[event]) as response:
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[0] += 1
            finally:
                gate.release()

        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        for i in range(max_events):
            due = start + i / rate
            if due - start > seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the sender, not synchronisation
            await gate.acquire()
            task = asyncio.create_task(post(traffic.next_event()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


async def _sample_until(
    done: asyncio.Task[None],
    every_s: float,
    pids: dict[str, int],
    redis_url: str,
    prefix: str,
    statuses: Counter[int],
    out: list[Sample],
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    start = time.monotonic()
    try:
        while True:
            info = await client.info("memory")
            sample = Sample(
                minute=(time.monotonic() - start) / 60,
                sent=sum(statuses.values()),
                rss={name: rss_bytes(pid) for name, pid in pids.items()},
                used_memory=int(info["used_memory"]),
                keys=int(await client.dbsize()),
                families=await family_bytes(client, prefix),
            )
            out.append(sample)
            rss = "  ".join(f"{name} {v / 2**20:7.1f}" for name, v in sample.rss.items())
            print(  # noqa: T201 - the soak's table is its output
                f"{sample.minute:6.2f} min  sent {sample.sent:>8}  RSS MiB: {rss}  "
                f"redis used {sample.used_memory / 2**20:7.2f} MiB  keys {sample.keys:>7}",
                flush=True,
            )
            if done.done():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), every_s)
    finally:
        await client.aclose()


def _wait_ready(url: str, process: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"SalesPulse exited with code {process.exitcode}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - loopback
        ):
            if response.status == 200:
                return
        time.sleep(0.2)  # polling readiness
    raise RuntimeError("SalesPulse did not become ready within 120 s")


def _serve(settings: Settings) -> None:
    from salespulse.app.launcher import serve

    raise SystemExit(serve(settings, None))


def run_soak(base: Settings, minutes: float, rate: float, sample_every_s: float) -> int:
    seconds = minutes * 60
    retention_s = max(10.0, seconds / 5)
    workdir = Path(tempfile.mkdtemp(prefix="salespulse-soak-"))
    with start_broker(workdir / "broker") as broker, start_redis(workdir / "redis") as redis:
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        settings = soak_settings(
            base, workdir, retention_s,
            kafka_bootstrap=f"127.0.0.1:{broker.port}", redis_url=redis_url,
        )  # fmt: skip
        process = multiprocessing.get_context("spawn").Process(target=_serve, args=(settings,))
        process.start()
        try:
            base_url = f"http://127.0.0.1:{settings.http_port}"
            _wait_ready(f"{base_url}/readyz", process)
            print(  # noqa: T201
                f"soak: {rate:g} events/s for {minutes:g} min; retentions {retention_s:.0f} s "
                f"(waits {retention_s / 2:.0f} s), entity cache {SOAK_CACHE_BYTES >> 20} MiB; "
                f"sampling every {sample_every_s:g} s",
                flush=True,
            )
            assert process.pid is not None
            pids = {"salespulse": process.pid, "tansu": broker.pid, "redis": redis.pid}
            # `run`'s KPI and SLA stages fold in processes of their own: watched too
            for number, pid in enumerate(sorted(stage_processes_of(process.pid or 0))):
                pids[f"stage {number + 1}"] = pid
            samples = asyncio.run(
                _soak(settings, base_url, rate, seconds, sample_every_s, pids, redis_url)
            )
        finally:
            _stop(process)
    print("", *report(samples), sep="\n")  # noqa: T201
    print(  # noqa: T201
        "\nTansu holds every record in memory (its RSS grows by design); KPI buckets m/h "
        "and event ids level off only after their 2 h / 40 d retentions; event marks (~10 B "
        "per event counted per event) are kept, like the all-time buckets."
    )
    return 0


async def _soak(
    settings: Settings,
    base_url: str,
    rate: float,
    seconds: float,
    every_s: float,
    pids: dict[str, int],
    redis_url: str,
) -> list[Sample]:
    statuses: Counter[int] = Counter()
    samples: list[Sample] = []
    posting = asyncio.create_task(
        _post_steadily(f"{base_url}/v1/events", rate, seconds, int(rate * seconds) + 1, statuses)
    )
    await _sample_until(
        posting, every_s, pids, redis_url, settings.redis_key_prefix, statuses, samples
    )
    await posting
    print(f"answers: {dict(sorted(statuses.items()))} (0 = no answer)", flush=True)  # noqa: T201
    return samples


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.terminate()
        process.join(30)
    if process.is_alive():
        process.kill()
        process.join()
