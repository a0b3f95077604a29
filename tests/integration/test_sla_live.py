"""The SLA promise, end to end: a client who wrote and got no answer is on the waiting
list, turns amber, then red the second the SLA is crossed, and a real Prometheus loading
deploy/'s rules fires SlaBreached before any reply exists; the reply resolves it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from salespulse.core.settings import Settings
from tests.helpers import eventually
from tests.integration.processes import salespulse_process
from tests.integration.test_alert_rules import alerting_rules, metric_names
from tests.integration.test_end_to_end import sample, scrape
from tests.prometheus_harness import SCRAPE_INTERVAL, running_prometheus

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
TARGET_S = 4.0
WARNING_S = 2.0
TENANTS_YAML = f"""
tenants:
  acme:
    teams: {{north: {{managers: ["42"]}}}}
    sla:
      policies:
        - {{channel: chat, first_response: {TARGET_S:g}, warning: {WARNING_S:g}, basis: calendar}}
"""
WAIT_LABELS = {"tenant": "acme", "team": "north", "channel": "chat"}


def message(event_id: str, direction: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "tenant": "acme",
        "type": "message",
        "occurred_at": datetime.now(UTC).isoformat(),
        "direction": direction,
        "channel": "chat",
        "conversation_id": "conv-77",
        "manager_id": "42",
    }


async def post(session: aiohttp.ClientSession, base: str, event: dict[str, Any]) -> None:
    async with session.post(f"{base}/v1/events", json=event) as response:
        assert response.status == 202, await response.text()


async def waiting(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/v1/waiting", params={"tenant": "acme"}) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def sla_settings(settings: Settings, tmp_path: Path) -> dict[str, object]:
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(TENANTS_YAML)
    return {"tenants_file": tenants_file}


async def test_a_waiting_client_goes_amber_then_red_and_the_reply_clears_it(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    overrides = sla_settings(settings, tmp_path)
    with salespulse_process("run", settings, tmp_path / "run.log", **overrides):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/v1/waiting") as response:
                assert response.status == 400
                assert (await response.json())["problems"][0]["field"] == "tenant"
            bad = {"tenant": "acme", "limit": "0"}
            async with session.get(f"{base}/v1/waiting", params=bad) as response:
                assert response.status == 400
            async with session.get(f"{base}/v1/waiting", params={"tenant": "nope"}) as response:
                assert response.status == 404
            await post(session, base, message("in-1", "in"))

            async def listed() -> bool:
                return bool((await waiting(session, base))["waiting"])

            await eventually(listed, 30, "the inbound message on the waiting list")
            body = await waiting(session, base)
            (wait,) = body["waiting"]
            assert wait["conversation"] == "conv-77"
            assert (wait["channel"], wait["manager"], wait["team"]) == ("chat", "42", "north")
            assert wait["target_seconds"] == TARGET_S
            assert wait["at_risk_seconds"] == WARNING_S
            assert set(wait) == {
                "conversation",
                "kind",
                "channel",
                "manager",
                "team",
                "pipeline",
                "opened_at",
                "age_seconds",
                "business_age_seconds",
                "basis",
                "target_seconds",
                "at_risk_seconds",
                "state",
            }  # fmt: skip  (ids and timings only: no names, phones or texts)
            states: list[str] = []
            while not states or states[-1] != "breached":
                (wait,) = (await waiting(session, base))["waiting"]
                # The state follows the age at the instant of the read, nothing stored.
                expected = (
                    "breached"
                    if wait["age_seconds"] > TARGET_S
                    else "at_risk"
                    if wait["age_seconds"] >= WARNING_S
                    else "ok"
                )
                assert wait["state"] == expected, wait
                if not states or states[-1] != wait["state"]:
                    states.append(wait["state"])
                await asyncio.sleep(0.2)
            assert states[-2:] == ["at_risk", "breached"]
            values = await scrape(session, base)
            assert sample(values, "salespulse_waiting_breached", WAIT_LABELS) == 1
            assert sample(values, "salespulse_waiting_conversations", WAIT_LABELS) == 1

            await post(session, base, message("out-1", "out"))

            async def answered() -> bool:
                summary = (await waiting(session, base))["summary"]
                return bool(summary["waiting"] == 0)

            await eventually(answered, 30, "the reply to clear the wait")
            values = await scrape(session, base)
            first = {**WAIT_LABELS, "basis": "calendar"}
            assert sample(values, "salespulse_first_response_seconds_count", first) == 1
            assert (
                sample(values, "salespulse_sla_breaches_total", {**WAIT_LABELS, "kind": "first"})
                == 1
            )
            assert sample(values, "salespulse_waiting_breached", WAIT_LABELS) is None


async def test_prometheus_fires_sla_breached_before_the_reply_and_resolves_after(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    overrides = sla_settings(settings, tmp_path)
    interval_s = float(SCRAPE_INTERVAL.removesuffix("s"))
    firing = 'ALERTS{alertname="SlaBreached", alertstate="firing", tenant="acme"}'
    with (
        salespulse_process("run", settings, tmp_path / "run.log", **overrides),
        running_prometheus(
            tmp_path / "prometheus",
            {"salespulse-exporter": [f"127.0.0.1:{settings.http_port}"]},
            rule_files=[RULES / "salespulse.rules.yml"],
        ) as prometheus,
    ):
        await asyncio.to_thread(prometheus.wait_for, 'up{job="salespulse-exporter"} == 1')
        assert await asyncio.to_thread(prometheus.query, firing) == []
        async with aiohttp.ClientSession() as session:
            posted = time.monotonic()
            await post(session, base, message("in-1", "in"))
            alerts = await asyncio.to_thread(prometheus.wait_for, firing, timeout_s=30)
            elapsed = time.monotonic() - posted
            (alert,) = alerts
            assert alert.labels["team"] == "north"
            assert alert.labels["channel"] == "chat"
            assert alert.labels["severity"] == "critical"
            # SLA + a scrape and an evaluation, plus the pipeline's own second at most.
            assert TARGET_S <= elapsed <= TARGET_S + 2 * interval_s + 1.5, elapsed

            await post(session, base, message("out-1", "out"))
            await asyncio.to_thread(prometheus.wait_for, firing, lambda found: not found, 30)

        # Every series the rules select was really scraped from the running product (over
        # the test's minutes: the waiting gauges went stale when the wait ended).
        used = {name for rule in alerting_rules() for name in metric_names(rule["expr"])}
        for name in sorted(used - {"up"}):
            expr = f'count(count_over_time({{__name__="{name}"}}[10m]))'
            scraped = await asyncio.to_thread(prometheus.query, expr)
            assert scraped, f"{name}: used by deploy/ rules, never exposed by SalesPulse"
