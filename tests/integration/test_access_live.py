"""`salespulse run` listening beyond loopback with tokens: it starts, and every door asks
for its token (tenant-bound ingest, tenant read tokens, the operator's, /metrics)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from salespulse.core.settings import Settings
from tests.helpers import eventually
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

OPERATOR_INGEST = "operator-ingest-token-live"
OPERATOR_READ = "operator-read-token-live-0"
METRICS = "metrics-scrape-token-live-0"
ACME_INGEST = "acme-ingest-token-live-01"
ACME_READ = "acme-read-token-live-0123"
GLOBEX_READ = "globex-read-token-live-01"
TENANTS_YAML = """
tenants:
  acme:
    tokens:
      read: {dashboard: {token_sha256: ACME_READ_SHA}}
      ingest: {etl: {token: {file: ACME_INGEST_FILE}}}
  globex:
    tokens:
      read: {dashboard: {token_sha256: GLOBEX_READ_SHA}}
"""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(event_id: str, tenant: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "tenant": tenant,
        "type": "call",
        "occurred_at": datetime.now(UTC).isoformat(),
        "direction": "in",
        "answered": True,
        "duration_s": 30,
        "manager_id": "42",
    }


async def test_a_run_beyond_loopback_asks_every_reader_and_writer_for_its_token(
    settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "acme-ingest-token"
    secret.write_text(ACME_INGEST)
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(
        TENANTS_YAML.replace("ACME_READ_SHA", sha(ACME_READ))
        .replace("GLOBEX_READ_SHA", sha(GLOBEX_READ))
        .replace("ACME_INGEST_FILE", str(secret))
    )
    overrides = {
        "http_host": "0.0.0.0",  # noqa: S104 - the point: it starts because tokens guard it
        "tenants_file": tenants_file,
        "ingest_token": OPERATOR_INGEST,
        "read_token": OPERATOR_READ,
        "metrics_token": METRICS,
    }
    base = f"http://127.0.0.1:{settings.http_port}"
    all_time = {"tenant": "acme", "window": "all"}
    with salespulse_process("run", settings, tmp_path / "run.log", **overrides):
        async with aiohttp.ClientSession() as session:
            post = f"{base}/v1/events"
            async with session.post(post, json=call("c-1", "acme")) as response:
                assert response.status == 401
            async with session.post(
                post, json=call("c-2", "globex"), headers=bearer(ACME_INGEST)
            ) as response:
                assert response.status == 403
                assert (await response.json())["error"] == "tenant_forbidden"
            async with session.post(
                post, json=call("c-3", "acme"), headers=bearer(ACME_INGEST)
            ) as response:
                assert response.status == 202

            async def counted() -> bool:
                async with session.get(
                    f"{base}/v1/kpis", params=all_time, headers=bearer(ACME_READ)
                ) as response:
                    assert response.status == 200
                    return bool((await response.json())["total"]["calls"] == 1)

            await eventually(counted, 60, "acme's call in /v1/kpis")
            refusals = set()
            for tenant, headers in [
                ("acme", {}),
                ("acme", bearer(GLOBEX_READ)),
                ("acme", bearer(OPERATOR_INGEST)),
                ("nosuch", bearer(ACME_READ)),
            ]:
                for path in ("/v1/kpis", "/v1/waiting"):
                    url = f"{base}{path}"
                    params = {"tenant": tenant}
                    async with session.get(url, params=params, headers=headers) as response:
                        refusals.add((response.status, await response.read()))
            assert len(refusals) == 1
            assert next(iter(refusals))[0] == 401
            async with session.get(
                f"{base}/v1/waiting", params={"tenant": "globex"}, headers=bearer(OPERATOR_READ)
            ) as response:
                assert response.status == 200
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 401
            async with session.get(f"{base}/metrics", headers=bearer(METRICS)) as response:
                assert response.status == 200
                assert 'salespulse_calls{tenant="acme",window="all"} 1.0' in await response.text()
