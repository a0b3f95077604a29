"""A real multi-month history (the public-domain Maven CRM slice, tests/data/maven_crm,
October 2016 - December 2017) replayed through `salespulse run`: every month's answer of
`GET /v1/kpis?period=YYYY-MM` and of a monthly series equals a plain computation over
the CSV rows themselves.

The rows' dates are days; the converter dates an engagement 09:00 UTC and a close 16:00
UTC, the same local day in the tenant's zone (America/New_York), so a row's month is its
date's first seven characters. 2017 is past the 400-day day-bucket retention: the months
are answered from month buckets, and a range of days there is a 422.
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio as aioredis

from salespulse.core.settings import Settings
from salespulse.dev.datasets import maven_crm
from tests.helpers import eventually
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

MAVEN = Path(__file__).resolve().parents[1] / "data" / "maven_crm"
DEMO_TENANTS = Path(__file__).resolve().parents[2] / "salespulse" / "app" / "demo_tenants.yaml"


def by_month() -> dict[str, dict[str, Any]]:
    """Per month, from the rows: deals engaged, won and lost, and won value (USD)."""
    months: dict[str, dict[str, Any]] = {}
    created: Counter[str] = Counter()
    won: Counter[str] = Counter()
    lost: Counter[str] = Counter()
    revenue: dict[str, Decimal] = {}
    with (MAVEN / "sales_pipeline.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row["engage_date"]:
                continue  # prospecting without a date: nothing happened in time
            created[row["engage_date"][:7]] += 1
            closed = row["close_date"][:7]
            if row["deal_stage"] == "Won" and closed:
                won[closed] += 1
                revenue[closed] = revenue.get(closed, Decimal(0)) + Decimal(row["close_value"] or 0)
            elif row["deal_stage"] == "Lost" and closed:
                lost[closed] += 1
    for month in sorted(set(created) | set(won) | set(lost)):
        months[month] = {
            "deals_created": created[month],
            "won": won[month],
            "lost": lost[month],
            "revenue": float(revenue.get(month, 0)),
        }
    return months


def replay(path: Path, base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "salespulse.cli", "replay", str(path), "--url", base],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


async def get(session: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any]:
    async with session.get(url, params={"tenant": "maven", **params}) as response:
        return response.status, await response.json()


async def test_every_month_of_a_replayed_history_equals_the_rows(
    settings: Settings, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    expected = by_month()
    events = list(maven_crm(MAVEN))
    history = tmp_path / "maven.jsonl"
    history.write_bytes(b"".join(msgspec.json.encode(e) + b"\n" for e in events))
    total_won = sum(month["won"] for month in expected.values())
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("run", settings, tmp_path / "run.log", tenants_file=DEMO_TENANTS):
        done = await asyncio.to_thread(replay, history, base)
        assert done.returncode == 0, done.stderr + done.stdout
        async with aiohttp.ClientSession() as session:

            async def all_counted() -> bool:
                _, body = await get(session, f"{base}/v1/kpis", window="all")
                counted = body["total"]
                return bool(
                    counted["won"] == total_won
                    and counted["deals_created"]
                    == sum(m["deals_created"] for m in expected.values())
                    and counted["lost"] == sum(m["lost"] for m in expected.values())
                )

            await eventually(all_counted, 120, f"{total_won} won deals and every row counted")
            for month, wanted in expected.items():
                status, body = await get(session, f"{base}/v1/kpis", period=month)
                assert status == 200, body
                assert body["period"]["buckets"] == "month"
                got = {name: body["total"][name] for name in wanted}
                assert got == pytest.approx(wanted), month
            first, last = min(expected), max(expected)
            status, series = await get(
                session,
                f"{base}/v1/kpis/series",
                kpi="won,revenue,deals_created",
                step="month",
                **{"from": f"{first}-01", "to": f"{last}-31"},
            )
            assert status == 200, series
            points = {p["from"][:7]: p["total"] for p in series["points"]}
            assert list(points) == list(expected)
            for month, wanted in expected.items():
                assert points[month]["won"] == wanted["won"], month
                assert points[month]["revenue"] == pytest.approx(wanted["revenue"]), month
            # A quarter is three months added; compare=previous reads the one before.
            status, q2 = await get(session, f"{base}/v1/kpis", period="2017-Q2", compare="previous")
            assert status == 200
            months = ("2017-04", "2017-05", "2017-06")
            assert q2["total"]["won"] == sum(expected[m]["won"] for m in months)
            before = ("2017-01", "2017-02", "2017-03")
            assert q2["change"]["total"]["won"]["other"] == sum(expected[m]["won"] for m in before)
            # The composed worker took the day's snapshot (how yesterday ended) on its
            # first batch for the tenant: streams/daily_snapshot.py is wired in.
            snapshots = [
                key
                async for key in redis_client.scan_iter(
                    match=f"{settings.redis_key_prefix}daysnap:maven:*"
                )
            ]
            assert snapshots  # one, or two if local midnight passed meanwhile
            # Days of 2017 are past the day-bucket retention: a clear 422, not zeros.
            status, body = await get(
                session, f"{base}/v1/kpis", **{"from": "2017-03-01", "to": "2017-03-15"}
            )
            assert status == 422
            assert "SALESPULSE_DAY_BUCKET_RETENTION_DAYS" in body["problems"][0]["problem"]
