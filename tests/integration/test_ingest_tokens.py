"""POST /v1/events with tenant-bound ingest tokens, against the real broker: a tenant's
token writes its own tenant's events only (another tenant's: 403, dead-lettered); the
operator's token writes any tenant's; anything else is a 401 and is not kept."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from salespulse.app.compose import topic_specs
from salespulse.core.events import decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.helpers import metric_value, read_topic
from tests.integration.test_ingest_http import EVENT

pytestmark = pytest.mark.integration

OPERATOR = "operator-ingest-token-012"
ACME = "acme-etl-ingest-token-01"
GLOBEX = "globex-etl-ingest-token-2"
TENANTS_YAML = """
tenants:
  acme: {tokens: {ingest: {etl: {token: {file: ACME_FILE}}}}}
  globex: {tokens: {ingest: {etl: {token_sha256: GLOBEX_SHA}}}}
"""
Client = TestClient[web.Request, web.Application]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def ingest(
    settings: Settings, bootstrap: str, tmp_path: Path
) -> AsyncIterator[tuple[Client, PipelineMetrics]]:
    secret = tmp_path / "acme-ingest-token"
    secret.write_text(ACME)
    path = tmp_path / "tenants.yaml"
    path.write_text(
        TENANTS_YAML.replace("ACME_FILE", str(secret)).replace(
            "GLOBEX_SHA", hashlib.sha256(GLOBEX.encode()).hexdigest()
        )
    )
    tenants = Settings(tenants_file=path).tenant_directory()
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    handler = IngestHandler(
        publisher, metrics, max_body_bytes=1 << 20, token=OPERATOR, tenants=tenants
    )
    assert handler.authenticates
    app = web.Application()
    app.add_routes(handler.routes())
    async with TestClient(TestServer(app)) as client:
        yield client, metrics
    await publisher.stop()


async def test_a_tenants_token_writes_that_tenants_events(ingest, settings, bootstrap):
    client, _ = ingest
    response = await client.post("/v1/events", json=EVENT, headers=bearer(ACME))
    assert response.status == 202, await response.text()
    [record] = await read_topic(bootstrap, settings.events_topic, 1)
    assert decode_event(record.value).tenant == "acme"


async def test_another_tenants_events_are_403_and_dead_lettered(ingest, settings, bootstrap):
    client, metrics = ingest
    batch = [EVENT, {**EVENT, "event_id": "g-1", "tenant": "globex"}]
    raw = msgspec.json.encode(batch)
    response = await client.post(
        "/v1/events", data=raw, headers={**bearer(ACME), "Content-Type": "application/json"}
    )
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "tenant_forbidden"
    assert body["dead_lettered"] is True
    assert body["problems"] == [
        {"index": 1, "field": "tenant", "problem": "this token writes only tenant 'acme''s events"}
    ]
    # All or nothing: not even acme's own event of the batch was published.
    assert await read_topic(bootstrap, settings.events_topic, 1, timeout_s=1) == []
    [dead] = await read_topic(bootstrap, settings.dlq_topic, 1)
    assert dead.value == raw  # the body as sent; the token was a header, never in it
    assert dict(dead.headers)["reason"] == b"tenant_forbidden"
    assert ACME.encode() not in b"".join(v for _, v in dead.headers)
    assert (
        metric_value(
            metrics, "salespulse_ingest_payloads_rejected_total", reason="tenant_forbidden"
        )
        == 1
    )
    # The other way round, globex's token on acme's event: the same.
    response = await client.post("/v1/events", json=EVENT, headers=bearer(GLOBEX))
    assert response.status == 403


async def test_the_operators_token_writes_any_tenant(ingest, settings, bootstrap):
    client, _ = ingest
    batch = [EVENT, {**EVENT, "event_id": "g-1", "tenant": "globex"}]
    response = await client.post("/v1/events", json=batch, headers=bearer(OPERATOR))
    assert response.status == 202, await response.text()
    records = await read_topic(bootstrap, settings.events_topic, 2)
    assert sorted(decode_event(r.value).tenant for r in records) == ["acme", "globex"]


async def test_no_or_an_unknown_token_is_401_and_nothing_is_kept(ingest, settings, bootstrap):
    client, metrics = ingest
    for headers in ({}, bearer(ACME + "x"), bearer("acme"), {"Authorization": ACME}):
        response = await client.post("/v1/events", json=EVENT, headers=headers)
        assert response.status == 401, headers
        assert (await response.json())["error"] == "unauthorized"
    assert (
        metric_value(metrics, "salespulse_ingest_payloads_rejected_total", reason="unauthorized")
        == 4
    )
    assert await read_topic(bootstrap, settings.events_topic, 1, timeout_s=1) == []
    assert await read_topic(bootstrap, settings.dlq_topic, 1, timeout_s=1) == []
