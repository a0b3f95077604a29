"""One poller per (tenant, team) on screen, shared by every wall watching it.

A poller computes its key's frame every ``poll_s`` while anyone watches, and hands a frame
on only when its signature changed. Each watcher keeps just the newest frame per key
(a slow screen skips frames, it never queues them), and its stream writes at most once
per ``min_interval_s``: changes are coalesced to a few frames a second under any load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import redis

from metrics.wall.frame import Frame, WallKey

logger = logging.getLogger(__name__)

Compute = Callable[[WallKey], Awaitable[Frame]]


class Watcher:
    """One open stream's mailbox: the newest unsent frame of each key it watches."""

    def __init__(self, keys: Sequence[WallKey]) -> None:
        self.keys = tuple(keys)
        self._pending: dict[WallKey, Frame] = {}
        self._wake = asyncio.Event()
        self.closed = False

    def offer(self, key: WallKey, frame: Frame) -> None:
        self._pending[key] = frame
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self, timeout_s: float) -> list[Frame]:
        """The frames that changed since the last call; [] after ``timeout_s`` or on close."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        self._wake.clear()
        frames = list(self._pending.values())
        self._pending.clear()
        return frames


@dataclass
class _Channel:
    watchers: set[Watcher] = field(default_factory=set)
    latest: Frame | None = None
    task: asyncio.Task[None] | None = None


class WallHub:
    def __init__(
        self,
        compute: Compute,
        *,
        poll_s: float = 0.25,
        on_idle: Callable[[WallKey], None] | None = None,
    ) -> None:
        self._compute = compute
        self._poll_s = poll_s
        self._on_idle = on_idle
        self._channels: dict[WallKey, _Channel] = {}
        self._closed = False

    @property
    def pollers(self) -> int:
        return sum(1 for channel in self._channels.values() if channel.task is not None)

    @contextlib.asynccontextmanager
    async def watch(self, keys: Sequence[WallKey]) -> AsyncIterator[Watcher]:
        watcher = Watcher(keys)
        if self._closed:
            watcher.close()
        for key in watcher.keys:
            channel = self._channels.setdefault(key, _Channel())
            channel.watchers.add(watcher)
            if channel.latest is not None:
                watcher.offer(key, channel.latest)
            if channel.task is None and not self._closed:
                channel.task = asyncio.create_task(self._poll(key, channel))
                channel.task.add_done_callback(_report_crash)
        try:
            yield watcher
        finally:
            for key in watcher.keys:
                await self._leave(key, watcher)

    async def _leave(self, key: WallKey, watcher: Watcher) -> None:
        channel = self._channels.get(key)
        if channel is None:
            return
        channel.watchers.discard(watcher)
        if channel.watchers:
            return
        del self._channels[key]
        if channel.task is not None:
            channel.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await channel.task
        if self._on_idle is not None:
            self._on_idle(key)

    async def close(self) -> None:
        """End every stream (the web server waits for its handlers before it stops)."""
        self._closed = True
        for channel in list(self._channels.values()):
            for watcher in list(channel.watchers):
                watcher.close()

    async def _poll(self, key: WallKey, channel: _Channel) -> None:
        loop = asyncio.get_running_loop()
        signature: bytes | None = None
        failing = False
        while True:
            started = loop.time()
            try:
                frame = await self._compute(key)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                if not failing:
                    logger.warning(
                        "wall %s/%s: cannot read the KPI store: %r", key.tenant, key.name, exc
                    )
                failing = True
                frame = unavailable(key)
            else:
                if failing:
                    logger.info("wall %s/%s: KPI store answers again", key.tenant, key.name)
                failing = False
            if frame.signature != signature:
                signature = frame.signature
                channel.latest = frame
                for watcher in channel.watchers:
                    watcher.offer(key, frame)
            await asyncio.sleep(max(0.0, self._poll_s - (loop.time() - started)))


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a wall poller stopped", exc_info=task.exception())


def unavailable(key: WallKey) -> Frame:
    payload: dict[str, object] = {
        "key": key.name,
        "team": key.team,
        "error": "kpi_store_unavailable",
    }
    return Frame(payload, msgspec.json.encode(payload))
