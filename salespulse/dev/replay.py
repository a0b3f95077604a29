"""``salespulse replay FILE``: send a JSON-lines history through the real pipeline.

Each line is a canonical event (batched to ``POST /v1/events``) or a recorded webhook
``{"webhook": {"path": "/v1/webhooks/...", "content_type": "...", "body": "..."}}``
(posted as recorded). Progress goes to stderr; a summary follows. Replaying the same
file again changes no KPI: event ids make every event count once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import msgspec

BATCH = 500
CONCURRENCY = 4


class IngestUnauthorizedError(Exception):
    """The ingest answered 401: its token is missing or wrong."""


@dataclass
class ReplaySummary:
    lines: int = 0
    events_accepted: int = 0
    webhooks_accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds else 0.0
        parts = [
            f"replayed {self.lines:,} lines in {self.seconds:.1f}s ({rate:,.0f} lines/s)",
            f"  events accepted:   {self.events_accepted:,}",
            f"  webhooks accepted: {self.webhooks_accepted:,}",
        ]
        for reason, count in sorted(self.rejected.items()):
            parts.append(f"  rejected ({reason}): {count:,}")
        return "\n".join(parts)


def _batches(path: Path, summary: ReplaySummary) -> Iterator[tuple[str, Any]]:
    batch: list[Any] = []
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
            batch.append(item)
            if len(batch) >= BATCH:
                yield "events", batch
                batch = []
    if batch:
        yield "events", batch


async def replay(
    path: Path, base_url: str, progress: TextIO = sys.stderr, *, token: str | None = None
) -> ReplaySummary:
    """``token``: the ingest's SALESPULSE_INGEST_TOKEN, if it has one (the webhooks carry
    their own credentials)."""
    summary = ReplaySummary()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    total = sum(1 for line in path.open("rb") if line.strip())
    started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(base_url.rstrip("/")) as session:
        sent = 0

        async def send(kind: str, payload: Any) -> None:
            nonlocal sent
            async with gate:
                if kind == "events":
                    await _post_events(session, payload, summary, auth)
                    sent += len(payload)
                else:
                    await _post_webhook(session, payload, summary)
                    sent += 1
            _progress(progress, sent, total, started)

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
        finally:
            for task in pending:
                task.cancel()
    summary.seconds = time.monotonic() - started
    progress.write("\n")
    return summary


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
    }
    async with session.post(
        webhook["path"], data=str(webhook["body"]).encode(), headers=headers
    ) as response:
        if response.status < 300:
            summary.webhooks_accepted += 1
        else:
            summary.rejected[f"webhook {response.status}"] += 1


def _progress(out: TextIO, done: int, total: int, started: float) -> None:
    share = done / total if total else 1.0
    width = 30
    bar = "#" * int(share * width)
    rate = done / max(time.monotonic() - started, 1e-9)
    out.write(f"\r[{bar:<{width}}] {done:,}/{total:,} lines {share:6.1%}  {rate:,.0f}/s")
    out.flush()
