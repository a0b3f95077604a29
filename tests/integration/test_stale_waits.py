"""Old unanswered contacts are not clients waiting now: a replayed history leaves the
live waiting list empty, and a live wait older than its policy's `max_wait` leaves it as
expired (counted), on a real broker and Redis through `salespulse run`."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from salespulse.core.settings import Settings
from tests.helpers import eventually, wait_until_applied
from tests.integration.processes import salespulse_process
from tests.integration.test_end_to_end import sample, scrape

pytestmark = pytest.mark.integration

CHAT_MAX_WAIT_S = 20  # room for a busy machine to list the live wait first
TENANTS_YAML = f"""
tenants:
  acme:
    sla:
      max_wait: 1h
      policies:
        - {{channel: chat, first_response: 5m, max_wait: {CHAT_MAX_WAIT_S}}}
        - {{first_response: 1h}}
"""


def message(
    event_id: str, conversation: str, at: datetime, direction: str = "in", channel: str = "chat"
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "tenant": "acme",
        "type": "message",
        "occurred_at": at.isoformat(),
        "direction": direction,
        "channel": channel,
        "conversation_id": conversation,
        "manager_id": "42",
    }


async def post(
    session: aiohttp.ClientSession, base: str, events: list[dict[str, Any]], backfill: bool = False
) -> None:
    headers = {"X-SalesPulse-Backfill": "true"} if backfill else {}
    async with session.post(f"{base}/v1/events", json=events, headers=headers) as response:
        assert response.status == 202, await response.text()


async def waiting(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/v1/waiting", params={"tenant": "acme"}) as response:
        body = await response.json()
        if response.status == 404:  # nothing of the tenant applied yet
            return []
        assert response.status == 200, body
    found: list[dict[str, Any]] = body["waiting"]
    return found


def expired_count(
    session: aiohttp.ClientSession, base: str, expected: int
) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        found = sample(await scrape(session, base), "salespulse_sla_waits_expired_total")
        assert found is None or found <= expected, found
        return found == expected

    return reached


async def test_old_history_never_waits_and_a_stale_wait_leaves_the_list(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(TENANTS_YAML)
    base = f"http://127.0.0.1:{settings.http_port}"
    groups = [settings.consumer_group, settings.sla_consumer_group]
    now = datetime.now(UTC)
    long_ago = datetime(2001, 3, 5, 9, 0, tzinfo=UTC)
    history = [  # never answered: 25 years on the list before the fix
        message(f"h-in-{n}", f"old-{n}", long_ago + timedelta(hours=n), channel=channel)
        for n, channel in enumerate(["chat", "phone", "email"])
    ]
    with salespulse_process("run", settings, tmp_path / "run.log", tenants_file=tenants_file):
        async with aiohttp.ClientSession() as session:
            await post(session, base, history, backfill=True)
            # A live contact already older than the tenant's max_wait (1 h) when it arrives.
            await post(
                session,
                base,
                [message("late-in", "late", now - timedelta(hours=2), channel="phone")],
            )
            await wait_until_applied(redis_client, settings, groups)
            assert await waiting(session, base) == []
            # The late contact is counted (just after the batch), not listed; the history
            # was never a live wait (a backfill), so it is not an expired one either.
            await eventually(expired_count(session, base, 1), 30, "1 wait counted as expired")

            # A live wait enters, then leaves once older than the chat policy's max_wait.
            await post(session, base, [message("live-in", "live", datetime.now(UTC))])

            async def listed() -> bool:
                return [w["conversation"] for w in await waiting(session, base)] == ["live"]

            await eventually(listed, 30, "the live contact on the waiting list")
            pings = itertools.count()

            async def left() -> bool:
                # Expiry runs as the SLA stage applies a batch of the tenant: keep one coming.
                ping = message(f"ping-{next(pings)}", "pings", datetime.now(UTC), "out")
                await post(session, base, [ping])
                return await waiting(session, base) == []

            await eventually(left, CHAT_MAX_WAIT_S + 60, "the stale wait to leave the list")
            await eventually(expired_count(session, base, 2), 30, "the stale wait counted")
            assert await waiting(session, base) == []
