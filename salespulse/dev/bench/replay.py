"""``salespulse bench --replay N``: a history import, end to end, in ``salespulse run``.

N synthetic events spread over two years are written to a JSON-lines file and sent with
``salespulse replay`` (salespulse/dev/replay.py: batches of 500, as a backfill) to a
``salespulse run`` started for the purpose, with its own embedded broker and Redis: the
composition a user runs. Timed from the first request until the KPI worker reports all
N applied (its /metrics counter), once a warm-up of 100 events was applied (the stages'
consumer groups have joined). Also read: the records the ingest had to spool to disk
(none should be while the broker acknowledges; in issue 19 the fold blocking the loop
sent 742,500 of 1,000,000 there), and Redis's CPU and longest Lua apply meanwhile.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec
import redis.asyncio as aioredis

from salespulse.app.embedded import free_port
from salespulse.core.events import CrmEvent
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.parts import clean_env, salespulse_process
from salespulse.dev.bench.redis_cost import RedisCost, RedisProbe
from salespulse.dev.replay import replay

HISTORY_DAYS = 730
TARGET_REPLAY_S_PER_MILLION = 30.0  # in `salespulse run` (issue 19)
START_BUDGET_S = 120.0
WARM_UP_EVENTS = 100
BATCHES = "salespulse_worker_batches_applied_total"
_REDIS_LINE = re.compile(r"embedded\s+redis-server (127\.0\.0\.1:\d+)")
_encoder = msgspec.json.Encoder()


def _metric(body: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def write_history(path: Path, events: int, id_prefix: str = "replay") -> None:
    with path.open("wb") as out:
        for event in synthetic_events(events, 19, id_prefix, span_days=HISTORY_DAYS):
            out.write(_encoder.encode(_plain(event)) + b"\n")


def _plain(event: CrmEvent) -> dict[str, object]:
    return {k: v for k, v in msgspec.to_builtins(event).items() if v is not None}


async def _replay_applied(
    url: str, history: Path, events: int, budget_s: float
) -> tuple[float, str]:
    """Replay the file; wait until the KPI stage counts ``events`` applied in all.
    Returns the seconds the sending took and the last /metrics body."""
    started = time.perf_counter()
    summary = await replay(history, url, io.StringIO())  # its progress is not the table's
    sent_s = time.perf_counter() - started
    if summary.rejected:
        raise RuntimeError(f"the ingest rejected events: {dict(summary.rejected)}")
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/metrics") as response:
                body = await response.text()
            applied = _metric(body, "salespulse_worker_events_applied_total")
            if applied >= events:
                return sent_s, body
            if time.perf_counter() - started > budget_s:
                raise TimeoutError(
                    f"replay: {applied:,.0f} of {events:,} applied in {budget_s:.0f}s"
                )
            await asyncio.sleep(0.2)


async def _measure(url: str, redis_url: str, history: Path, events: int) -> list[str]:
    # Warm-up, not timed: a new consumer group's first join takes about half the session
    # timeout on the embedded broker (~5 s of SALESPULSE_KAFKA_SESSION_TIMEOUT_S=10), a
    # constant that a 200,000-event replay would stretch to ~25 s per 1,000,000.
    warm_up = history.with_name("warm-up.jsonl")
    write_history(warm_up, WARM_UP_EVENTS, "warm-up")
    _, body = await _replay_applied(url, warm_up, WARM_UP_EVENTS, START_BUDGET_S)
    warm_up_batches = _metric(body, BATCHES)
    client = aioredis.Redis.from_url(redis_url)
    probe = RedisProbe(client)
    await probe.start()
    started = time.perf_counter()
    budget = START_BUDGET_S + events / 2_000  # a loaded machine folds ~5k/s at worst
    sent_s, body = await _replay_applied(url, history, WARM_UP_EVENTS + events, budget)
    applied_s = time.perf_counter() - started
    cost: RedisCost = await probe.stop()
    await client.aclose()
    spooled = _metric(body, "salespulse_ingest_spooled_records_total")
    # Fewer, bigger batches share more of their day and month fields: Redis's work per
    # event grows as batches shrink (a caught-up stage folds what one fetch brings).
    batches = _metric(body, BATCHES) - warm_up_batches
    per_million = applied_s / events * 1e6
    verdict = "PASS" if per_million < TARGET_REPLAY_S_PER_MILLION else "FAIL"
    return [
        f"replay of {events:,} events (2 years of history) in `salespulse run`, its "
        f"stages already consuming: sent in {sent_s:.1f}s, all applied after {applied_s:.1f}s "
        f"({events / applied_s:,.0f} events/s); records spooled: {spooled:,.0f}",
        f"  during the replay: {cost.describe(events)}",
        f"  KPI stage: {batches:,.0f} batches, {events / max(batches, 1):,.0f} events each",
        f"target replay < {TARGET_REPLAY_S_PER_MILLION:.0f}s per 1,000,000 events in `run` "
        f"({per_million:.1f}s): {verdict}",
    ]


def run_replay(events: int) -> int:
    """Start ``salespulse run``, replay, print; 0 when all N were applied."""
    with tempfile.TemporaryDirectory(prefix="sp-bench-replay-") as workdir:
        work = Path(workdir)
        history = work / "history.jsonl"
        write_history(history, events)
        port = free_port()
        env = clean_env(http_port=str(port), data_dir=str(work / "data"))
        log = work / "run.log"
        try:
            with salespulse_process(["run"], env, log, "SalesPulse is running.", START_BUDGET_S):
                found = _REDIS_LINE.search(log.read_text(errors="replace"))
                if found is None:
                    print("replay FAILED: `salespulse run` did not say where its Redis is")
                    return 1
                url, redis_url = f"http://127.0.0.1:{port}", f"redis://{found.group(1)}/0"
                lines = asyncio.run(_measure(url, redis_url, history, events))
        except (OSError, RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
            print(f"replay FAILED: {exc!r}")
            return 1
        print(*lines, sep="\n")
        return 0
