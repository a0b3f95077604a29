"""Pieces every benchmark path shares: marks, rows of the table, waits and cleanup."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from mode import Service
from redis.exceptions import RedisError

CLEANUP_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mark:
    applied: int
    wall: float
    cpu: float


@dataclass
class Row:
    """One path. Timed from its first processed batch to its last: ``timed`` events."""

    path: str
    events: int
    timed: int = 0
    wall_s: float = math.nan
    cpu_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    error: str = ""

    @classmethod
    def between(cls, path: str, events: int, first: Mark, last: Mark) -> Row:
        wall_s, cpu_s = last.wall - first.wall, last.cpu - first.cpu
        return cls(path, events, last.applied - first.applied, wall_s, cpu_s)

    @property
    def rate(self) -> float:
        return self.timed / self.wall_s if self.timed and self.wall_s > 0 else math.nan


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, service: Service
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if service.crashed:
            raise RuntimeError(f"{what}: {service.label} crashed: {service.crash_reason!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


async def close_quietly(what: str, closing: Awaitable[object]) -> None:
    """Cleanup that cannot hang: after a Ctrl-C the embedded broker and Redis got the same
    SIGINT and are gone, and a client politely waiting for them would wait forever."""
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT_S):
            await closing
    except (TimeoutError, KafkaError, RedisError, OSError) as exc:
        logger.warning("%s did not close cleanly: %r", what, exc)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Exact nearest-rank percentile of an already sorted sequence."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


async def delete_keys(client: aioredis.Redis, pattern: str) -> None:
    """A shared Redis should not keep a measurement's keys. Waits until Redis has really
    freed them: its lazy-free thread would otherwise share this machine's cores with the
    next figure (the /metrics scrape read ~60 % slower right after a path's cleanup)."""
    page: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=5000):
        page.append(key)
        if len(page) == 5000:  # one round trip per page, not per key (a run leaves ~100k)
            await client.unlink(*page)
            page.clear()
    if page:
        await client.unlink(*page)
    for _ in range(600):  # a minute at most: a figure a little off beats no figure
        if not int((await client.info("memory")).get("lazyfree_pending_objects", 0)):
            return
        await asyncio.sleep(0.1)


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any SALESPULSE_* setting, plus ``settings`` (lower-case
    names, without the prefix): a benchmark's process configured by the bench alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    return env | {f"SALESPULSE_{name.upper()}": value for name, value in settings.items()}


@contextmanager
def salespulse_process(
    args: list[str], env: dict[str, str], log: Path, ready: str, start_budget_s: float = 120.0
) -> Iterator[int]:
    """A ``salespulse`` process, yielded (its pid) once ``ready`` is in its log; stopped
    with Ctrl-C (SIGINT) as a person stops it."""
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own CLI, with the bench's arguments
            [sys.executable, "-m", "salespulse.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )
    try:
        deadline = time.monotonic() + start_budget_s
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`salespulse {args[0]}` did not start:\n{tail}")
            time.sleep(0.2)
        yield process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def stage_processes_of(pid: int) -> list[int]:
    """``salespulse run``'s worker stage processes (salespulse/app/worker_process.py)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found
