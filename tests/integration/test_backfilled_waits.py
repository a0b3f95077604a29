"""History is no client waiting now: a contact sent as a backfill stays off the live
waiting list and its gauges, yet a later live reply to it is a first response measured
from it; a live contact still waits. On a real broker and Redis through `salespulse run`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from salespulse.core.settings import Settings
from tests.helpers import eventually, wait_until_applied
from tests.integration.processes import salespulse_process
from tests.integration.test_end_to_end import sample, scrape
from tests.integration.test_stale_waits import message, post, waiting

pytestmark = pytest.mark.integration

TENANTS_YAML = """
tenants:
  acme:
    teams: {north: {managers: ["42"]}}
    sla:
      policies:
        - {channel: chat, first_response: 1h, basis: calendar}
"""
CHAT = {"tenant": "acme", "team": "north", "channel": "chat"}
WAITED = timedelta(hours=2)


async def test_a_backfilled_contact_never_waits_and_its_live_reply_is_a_first_response(
    settings: Settings, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(TENANTS_YAML)
    base = f"http://127.0.0.1:{settings.http_port}"
    groups = [settings.consumer_group, settings.sla_consumer_group]
    asked_at = datetime.now(UTC).replace(microsecond=0) - WAITED
    with salespulse_process("run", settings, tmp_path / "run.log", tenants_file=tenants_file):
        async with aiohttp.ClientSession() as session:
            # two hours ago, well inside the 7-day maximum wait: only the backfill keeps it off
            await post(session, base, [message("old-in", "old", asked_at)], backfill=True)
            await post(session, base, [message("live-in", "live", datetime.now(UTC))])
            await wait_until_applied(redis_client, settings, groups)

            async def only_the_live_client_waits() -> bool:
                return [w["conversation"] for w in await waiting(session, base)] == ["live"]

            await eventually(only_the_live_client_waits, 30, "the live contact listed alone")
            values = await scrape(session, base)
            assert sample(values, "salespulse_waiting_conversations", CHAT) == 1
            assert sample(values, "salespulse_waiting_breached", CHAT) == 0
            # history is not an expired live wait either
            assert not sample(values, "salespulse_sla_waits_expired_total")

            # The agent answers the old contact now, live: a first response of two hours.
            answer = message("old-out", "old", asked_at + WAITED, direction="out")
            await post(session, base, [answer])
            first = {**CHAT, "basis": "calendar"}

            async def answered() -> bool:
                found = await scrape(session, base)
                return sample(found, "salespulse_first_response_seconds_count", first) == 1

            await eventually(answered, 60, "the reply counted as a first response")
            values = await scrape(session, base)
            assert sample(values, "salespulse_first_response_seconds_sum", first) == pytest.approx(
                WAITED.total_seconds()
            )
            breaches = sample(values, "salespulse_sla_breaches_total", {**CHAT, "kind": "first"})
            assert breaches == 1  # two hours against a one-hour target
            assert [w["conversation"] for w in await waiting(session, base)] == ["live"]
