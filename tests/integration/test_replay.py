"""`salespulse replay` of real public CRM data through a running SalesPulse, twice."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest

from salespulse.core.settings import Settings
from salespulse.dev.datasets import maven_crm
from tests.helpers import eventually, wait_until_applied
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

# A public-domain slice carried in the repo (tests/data/maven_crm/README.md says which).
MAVEN = Path(__file__).resolve().parents[1] / "data" / "maven_crm"
DEMO_TENANTS = Path(__file__).resolve().parents[2] / "salespulse" / "app" / "demo_tenants.yaml"


def replay(path: Path, base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salespulse.cli", "replay", str(path), "--url", base],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def kpis(session: aiohttp.ClientSession, base: str) -> dict[str, object]:
    async with session.get(
        f"{base}/v1/kpis", params={"tenant": "maven", "window": "all", "by": "manager"}
    ) as response:
        assert response.status == 200
        body = await response.json()
    body.pop("at")
    assert isinstance(body, dict)
    return body


async def test_replaying_a_real_history_twice_changes_nothing(
    settings: Settings, redis_client, tmp_path
):
    events = list(itertools.islice(maven_crm(MAVEN), 1500))
    history = tmp_path / "maven.jsonl"
    history.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    won = sum(1 for e in events if e.get("stage_kind") == "won")
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("run", settings, tmp_path / "run.log", tenants_file=DEMO_TENANTS):
        first = await asyncio.to_thread(replay, history, base)
        assert first.returncode == 0, first.stderr + first.stdout
        assert f"events accepted:   {len(events):,}" in first.stdout
        assert "1,500/1,500 lines 100.0%" in first.stderr  # the progress bar reached the end
        async with aiohttp.ClientSession() as session:

            async def all_won_counted() -> bool:
                body = await kpis(session, base)
                total = body["total"]
                assert isinstance(total, dict)
                return bool(total["won"] == won)

            await eventually(all_won_counted, 60, f"{won} won deals")
            once = await kpis(session, base)
            again = await asyncio.to_thread(replay, history, base)
            assert again.returncode == 0, again.stderr
            # Both stages have now seen every replayed record: any count would be in.
            groups = [settings.consumer_group, settings.sla_consumer_group]
            await wait_until_applied(redis_client, settings, groups)
            assert await kpis(session, base) == once
    total = once["total"]
    assert isinstance(total, dict)
    assert total["deals_created"] == len({e["entity_id"] for e in events})
    lost = sum(1 for e in events if e.get("stage_kind") == "lost")
    assert total["win_rate"]["denominator"] == won + lost


async def test_replay_with_wait_returns_with_the_kpis_complete_and_nothing_spooled(
    settings: Settings, tmp_path
):
    events = list(itertools.islice(maven_crm(MAVEN), 3000))
    history = tmp_path / "maven.jsonl"
    history.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    won = sum(1 for e in events if e.get("stage_kind") == "won")
    deals = len({e["entity_id"] for e in events})
    base = f"http://127.0.0.1:{settings.http_port}"
    # A spool that takes over after 10 ms: a live sender's batches would go to disk
    # whenever the broker is a little slow; a backfill waits for its acknowledgements.
    with salespulse_process(
        "run", settings, tmp_path / "run.log", tenants_file=DEMO_TENANTS, spool_after_s=0.01
    ):
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "salespulse.cli",
                "replay",
                str(history),
                "--wait",
                "--url",
                base,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        async with aiohttp.ClientSession() as session:
            body = await kpis(session, base)  # at once: no polling
            async with session.get(f"{base}/v1/applied") as response:
                applied = await response.json()
            async with session.get(f"{base}/metrics") as response:
                metrics = await response.text()
    total = body["total"]
    assert isinstance(total, dict)
    assert (total["won"], total["deals_created"]) == (won, deals)
    assert applied["complete"] is True, applied
    assert "applied by the worker:" in done.stdout
    assert f"applied {len(events):,} records of {len(events):,}" in done.stderr
    assert "salespulse_ingest_spooled_records_total 0.0" in metrics
    # a record both acknowledged late and spooled came back as a duplicate
    assert "salespulse_worker_duplicates_dropped_total 0.0" in metrics


async def test_replay_wait_against_an_ingest_only_process_says_where_to_point_it(
    settings: Settings, tmp_path
):
    history = tmp_path / "one.jsonl"
    history.write_bytes(msgspec.json.encode(next(iter(maven_crm(MAVEN)))) + b"\n")
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("ingest", settings, tmp_path / "ingest.log"):
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "salespulse.cli",
                "replay",
                str(history),
                "--wait",
                "--url",
                base,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    assert done.returncode == 1
    assert "does not serve /v1/applied" in done.stderr
    assert "--no-wait" in done.stderr
