"""``salespulse replay FILE``: send a JSON-lines history through the real pipeline.

Each line is a canonical event (batched to ``POST /v1/events``) or a recorded webhook
``{"webhook": {"path": "/v1/webhooks/...", "content_type": "...", "body": "..."}}``
(posted as recorded). Progress goes to stderr; a summary follows. Replaying the same
file again changes no KPI: event ids make every event count once.

With ``wait`` (``--wait``), it returns only once the worker has applied everything it
sent: the ingest's 202 to a backfill names the offsets its records landed at, and the
replay waits until both stages' applied offsets (``GET /v1/applied``,
salespulse/app/applied.py) reach the highest of them on every partition, so
the KPIs read right after are complete. The progress bar shows what is applied as well
as what is sent. The ingest acknowledges a backfill only once the broker has it (it is
not spooled while the broker is merely busy), so the sender goes at the broker's pace.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import msgspec

BATCH = 500
# Events sorted by time in windows of this many (salespulse replay holds one window:
# ~1 KB an event decoded, so ~50 MB)
SORT_WINDOW = 50_000
CONCURRENCY = 4
APPLIED_POLL_S = 0.25


class IngestUnauthorizedError(Exception):
    """The ingest answered 401: its token is missing or wrong."""


class AppliedUnknownError(Exception):
    """The URL does not say what the worker applied (GET /v1/applied)."""


@dataclass
class ReplaySummary:
    lines: int = 0
    events_accepted: int = 0
    webhooks_accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    # with wait: records the stages applied since the start, and the seconds waited for
    # them after the last acknowledgement (None: not waited)
    applied: int | None = None
    waited_s: float | None = None
    # topic:partition → the offset after the last record the ingest placed there (202
    # answers of a backfill); unplaced: batches accepted into the ingest's spool instead
    offsets: dict[str, int] = field(default_factory=dict)
    unplaced: int = 0

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        parts = [
            f"replayed {self.lines:,} lines in {self.seconds:.1f}s ({rate:,.0f} lines/s)",
            f"  events accepted:   {self.events_accepted:,}",
            f"  webhooks accepted: {self.webhooks_accepted:,}",
        ]
        if self.applied is not None and self.waited_s is not None:
            parts.append(
                f"  applied by the worker: {self.applied:,} records "
                f"({self.waited_s:.1f}s after the last acknowledgement)"
            )
        for reason, count in sorted(self.rejected.items()):
            parts.append(f"  rejected ({reason}): {count:,}")
        return "\n".join(parts)


def _batches(path: Path, summary: ReplaySummary) -> Iterator[tuple[str, Any]]:
    window: list[Any] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            summary.lines += 1
            try:
                item = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                summary.rejected[f"line {number}: not JSON"] += 1
                continue
            if isinstance(item, dict) and "webhook" in item:
                yield "webhook", item["webhook"]
                continue
            window.append(item)
            if len(window) >= SORT_WINDOW:
                yield from _in_time_order(window)
                window = []
    yield from _in_time_order(window)


def _in_time_order(events: list[Any]) -> Iterator[tuple[str, Any]]:
    """Batches of BATCH events, sorted by when they happened.

    Why: the worker writes a batch's counts into one hash per day (and month, and mark
    set) its events fall on. An export concatenated file by file (calls, then deals), or
    shuffled, puts two years in every batch: in `salespulse bench --replay` each batch then
    named ~730 days, and Redis spent ~55 µs per event creating small hashes. In time order
    a batch names a handful. The KPIs do not depend on the order (stream equals batch).
    """
    events.sort(key=_occurred_key)
    for start in range(0, len(events), BATCH):
        yield "events", events[start : start + BATCH]


def _occurred_key(item: Any) -> float:
    """Seconds since the epoch; an event without a readable time first (the ingest then
    refuses those together, not beside good ones)."""
    occurred = item.get("occurred_at") if isinstance(item, dict) else None
    if not isinstance(occurred, str):
        return -math.inf
    try:
        moment = datetime.fromisoformat(occurred)
    except ValueError:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def replay(
    path: Path,
    base_url: str,
    progress: TextIO = sys.stderr,
    *,
    token: str | None = None,
    wait: bool = False,
    wait_timeout_s: float = 3600.0,
) -> ReplaySummary:
    """``token``: the ingest's SALESPULSE_INGEST_TOKEN, if it has one (the webhooks carry
    their own credentials). ``wait``: return once the worker applied what was sent
    (AppliedUnknownError when the URL cannot say; TimeoutError after ``wait_timeout_s``)."""
    summary = ReplaySummary()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    total = sum(1 for line in path.open("rb") if line.strip())
    started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(base_url.rstrip("/")) as session:
        bar = _Progress(progress, total, started)
        watcher: asyncio.Task[None] | None = None
        if wait:
            at_start = await _read_applied(session)
            # Unknown for now (503): the bar then counts applied offsets from 0.
            bar.baseline = _applied_floor(at_start) if at_start is not None else {}
            watcher = asyncio.create_task(_watch_applied(session, bar))

        async def send(kind: str, payload: Any) -> None:
            async with gate:
                if kind == "events":
                    await _post_events(session, payload, summary, auth)
                    bar.sent += len(payload)
                else:
                    await _post_webhook(session, payload, summary)
                    bar.sent += 1
            bar.draw()

        pending: set[asyncio.Task[None]] = set()
        try:
            for kind, payload in _batches(path, summary):
                pending.add(asyncio.create_task(send(kind, payload)))
                if len(pending) >= CONCURRENCY * 2:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # a refused token stops the replay at once
            if pending:
                await asyncio.gather(*pending)
            if wait:
                sent_at = time.monotonic()
                bar.target = dict(summary.offsets)
                if summary.unplaced:
                    # Spooled (the broker was down): they land behind the end read now,
                    # once the spool drains; wait at least for that end.
                    ends = await _read_applied(session)
                    for name, end in (ends or {"end": {}})["end"].items():
                        bar.target[name] = max(bar.target.get(name, 0), end)
                async with asyncio.timeout(wait_timeout_s):
                    while not bar.reached():
                        await bar.updated.wait()
                        bar.updated.clear()
                summary.applied = bar.applied
                summary.waited_s = time.monotonic() - sent_at
        finally:
            for task in pending:
                task.cancel()
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    summary.seconds = time.monotonic() - started
    bar.draw()
    progress.write("\n")
    return summary


Offsets = dict[str, int]


class _Progress:
    """The bar: lines sent, and with --wait the records the worker's stages applied."""

    def __init__(self, out: TextIO, total: int, started: float) -> None:
        self.out = out
        self.total = total
        self.started = started
        self.sent = 0
        self.baseline: Offsets | None = None  # applied offsets at the start (None: no wait)
        self.latest: Offsets = {}  # applied by every stage, now
        self.target: Offsets | None = None  # the topic's end after the last acknowledgement
        self.updated = asyncio.Event()

    @property
    def applied(self) -> int:
        base = self.baseline or {}
        return sum(max(0, n - base.get(p, 0)) for p, n in self.latest.items())

    def reached(self) -> bool:
        if self.target is None:
            return False
        return all(self.latest.get(p, 0) >= end for p, end in self.target.items())

    def draw(self) -> None:
        share = self.sent / self.total if self.total else 1.0
        width = 30
        bar = "#" * int(share * width)
        rate = self.sent / max(time.monotonic() - self.started, 1e-9)
        line = f"\r[{bar:<{width}}] {self.sent:,}/{self.total:,} lines {share:6.1%}  {rate:,.0f}/s"
        if self.baseline is not None:
            line += f"  applied {self.applied:,} records"
            if self.target is not None:
                base = self.baseline
                line += f" of {sum(max(0, n - base.get(p, 0)) for p, n in self.target.items()):,}"
        self.out.write(line)
        self.out.flush()


async def _watch_applied(session: aiohttp.ClientSession, bar: _Progress) -> None:
    while True:
        try:
            body = await _read_applied(session)
        except (AppliedUnknownError, aiohttp.ClientError):
            body = None  # a busy or restarting worker: asked again at the next tick
        if body is not None:
            bar.latest = _applied_floor(body)
            bar.draw()
            bar.updated.set()
        await asyncio.sleep(APPLIED_POLL_S)


async def _read_applied(session: aiohttp.ClientSession) -> dict[str, Any] | None:
    """The answer of GET /v1/applied; None while it cannot tell (503: broker or Redis)."""
    async with session.get("/v1/applied") as response:
        if response.status == 404:
            raise AppliedUnknownError(
                "the URL does not serve /v1/applied (an ingest-only process?): point --url "
                "at a process with the worker or exporter role, or pass --no-wait"
            )
        if response.status != 200:
            return None
        body: dict[str, Any] = await response.json()
    return body


def _applied_floor(body: dict[str, Any]) -> Offsets:
    """Per partition, what every stage has applied (the slowest stage's offset)."""
    stages: list[dict[str, int]] = list(body["applied"].values())
    partitions = set(body["end"]).union(*stages)
    return {p: min((stage.get(p, 0) for stage in stages), default=0) for p in partitions}


async def _post_events(
    session: aiohttp.ClientSession,
    events: list[Any],
    summary: ReplaySummary,
    auth: dict[str, str],
) -> None:
    for attempt in range(6):
        async with session.post(
            "/v1/events",
            data=msgspec.json.encode(events),
            # A backfill: each event keeps its own received_at (history is not "late").
            headers={
                "Content-Type": "application/json",
                "X-SalesPulse-Backfill": "true",
                **auth,
            },
        ) as response:
            if response.status == 503:  # broker down: wait as asked, then retry
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")) * (attempt + 1))
                continue
            if response.status == 401:  # every other batch would be refused too
                raise IngestUnauthorizedError(
                    "the ingest asks for its token: set SALESPULSE_INGEST_TOKEN to the "
                    "ingest's value" + (" (the one set was refused)" if auth else "")
                )
            body = await response.json(content_type=None)
            if response.status == 202:
                summary.events_accepted += int(body["accepted"])
                placed: dict[str, int] = body.get("offsets") or {}
                if not placed:
                    summary.unplaced += 1
                for name, end in placed.items():
                    summary.offsets[name] = max(summary.offsets.get(name, 0), int(end))
            else:
                summary.rejected[str(body.get("error", response.status))] += len(events)
            return
    summary.rejected["broker_unavailable"] += len(events)


async def _post_webhook(
    session: aiohttp.ClientSession, webhook: dict[str, Any], summary: ReplaySummary
) -> None:
    headers = {
        "Content-Type": webhook.get("content_type", "application/json"),
        **webhook.get("headers", {}),
        # History: its contacts never join the live waiting list (docs/sla.md).
        "X-SalesPulse-Backfill": "true",
    }
    async with session.post(
        webhook["path"], data=str(webhook["body"]).encode(), headers=headers
    ) as response:
        if response.status < 300:
            summary.webhooks_accepted += 1
        else:
            summary.rejected[f"webhook {response.status}"] += 1
