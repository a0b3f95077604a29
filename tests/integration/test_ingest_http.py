"""POST /v1/events through aiohttp against the real broker: 202 after ack, 4xx + DLQ, 503."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from salespulse.app.compose import topic_specs
from salespulse.app.embedded import free_port
from salespulse.core.events import decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from salespulse.dev.replay import IngestUnauthorizedError, replay
from tests.helpers import metric_value, read_topic

pytestmark = pytest.mark.integration

EVENT = {
    "event_id": "amo-77",
    "tenant": "acme",
    "type": "message",
    "occurred_at": "2026-11-22T08:00:00Z",
    "direction": "in",
    "channel": "chat",
    "conversation_id": "talk-9",
    "manager_id": "5",
}


async def ingest_client(
    bootstrap: str,
    settings: Settings,
    timeout_s: float = 5.0,
    max_body_bytes: int = 1_048_576,
    token: str | None = None,
) -> tuple[TestClient[web.Request, web.Application], PipelineMetrics, KafkaPublisher]:
    publisher = KafkaPublisher(
        bootstrap,
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=timeout_s,
    )
    metrics = PipelineMetrics(CollectorRegistry())
    app = web.Application()
    app.add_routes(
        IngestHandler(publisher, metrics, max_body_bytes=max_body_bytes, token=token).routes()
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, metrics, publisher


@pytest.fixture
async def ingest(
    settings: Settings, bootstrap: str
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], PipelineMetrics]]:
    await ensure_topics(bootstrap, topic_specs(settings))
    client, metrics, publisher = await ingest_client(bootstrap, settings)
    yield client, metrics
    await client.close()
    await publisher.stop()


async def test_an_event_is_acknowledged_after_the_broker_has_it(ingest, settings, bootstrap):
    client, metrics = ingest
    response = await client.post("/v1/events", json=EVENT)
    assert response.status == 202
    assert await response.json() == {"accepted": 1, "event_ids": ["amo-77"]}
    [record] = await read_topic(bootstrap, settings.events_topic, 1)
    assert record.key == b"acme:talk-9"
    event = decode_event(record.value)
    assert event.event_id == "amo-77"
    assert event.received_at is not None
    assert metric_value(metrics, "salespulse_ingest_events_accepted_total") == 1


async def test_an_array_is_published_whole(ingest, settings, bootstrap):
    client, _ = ingest
    batch = [EVENT, {**EVENT, "event_id": "amo-78"}]
    response = await client.post("/v1/events", json=batch)
    assert response.status == 202
    records = await read_topic(bootstrap, settings.events_topic, 2)
    assert sorted(decode_event(r.value).event_id for r in records) == ["amo-77", "amo-78"]


BAD_INPUTS = [
    pytest.param(
        b'{"event_id": ', "application/json", 400, "malformed_json", None, id="malformed-json"
    ),
    pytest.param(
        msgspec.json.encode({**EVENT, "direction": 3}),
        "application/json",
        422,
        "invalid_event",
        "direction",
        id="wrong-type",
    ),
    pytest.param(
        msgspec.json.encode({k: v for k, v in EVENT.items() if k != "tenant"}),
        "application/json",
        422,
        "invalid_event",
        "tenant",
        id="missing-field",
    ),
    pytest.param(
        msgspec.json.encode({**EVENT, "type": "fax"}),
        "application/json",
        422,
        "invalid_event",
        "type",
        id="unknown-type",
    ),
    pytest.param(b"[]", "application/json", 422, "empty_batch", None, id="empty-array"),
    pytest.param(
        msgspec.json.encode(EVENT),
        "text/plain",
        415,
        "unsupported_media_type",
        None,
        id="wrong-content-type",
    ),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "reason", "field"), BAD_INPUTS)
async def test_bad_input_gets_4xx_naming_the_problem_and_keeps_the_raw_payload(
    ingest, settings, bootstrap, raw, content_type, status, reason, field
):
    client, metrics = ingest
    response = await client.post("/v1/events", data=raw, headers={"Content-Type": content_type})
    assert response.status == status
    body = await response.json()
    assert body["error"] == reason
    assert body["dead_lettered"] is True
    assert body["problems"][0]["problem"]
    if field:
        assert body["problems"][0]["field"] == field
    [dead] = await read_topic(bootstrap, settings.dlq_topic, 1)
    assert dead.value == raw
    headers = dict(dead.headers)
    assert headers["reason"] == reason.encode()
    assert msgspec.json.decode(headers["problems"]) == body["problems"]
    assert metric_value(metrics, "salespulse_ingest_payloads_rejected_total", reason=reason) == 1
    assert await read_topic(bootstrap, settings.events_topic, 1, timeout_s=1) == []
    # ...and the process keeps serving.
    assert (await client.post("/v1/events", json=EVENT)).status == 202


async def test_a_body_over_the_limit_is_413_with_its_head_dead_lettered(settings, bootstrap):
    await ensure_topics(bootstrap, topic_specs(settings))
    client, metrics, publisher = await ingest_client(bootstrap, settings, max_body_bytes=4096)
    try:
        huge = b"[" + b",".join([msgspec.json.encode(EVENT)] * 200) + b"]"
        response = await client.post(
            "/v1/events", data=huge, headers={"Content-Type": "application/json"}
        )
        assert response.status == 413
        assert (await response.json())["error"] == "body_too_large"
        [dead] = await read_topic(bootstrap, settings.dlq_topic, 1)
        assert huge.startswith(dead.value)
        assert dict(dead.headers)["reason"] == b"body_too_large"
        chunked = await client.post(
            "/v1/events", data=_chunks(huge), headers={"Content-Type": "application/json"}
        )
        assert chunked.status == 413
        assert (
            metric_value(
                metrics, "salespulse_ingest_payloads_rejected_total", reason="body_too_large"
            )
            == 2
        )
    finally:
        await client.close()
        await publisher.stop()


async def test_an_invalid_body_just_under_the_limit_is_dead_lettered_whole(
    ingest, settings, bootstrap
):
    client, _ = ingest
    padding = "x" * (1_048_576 - 300)
    raw = msgspec.json.encode({**EVENT, "type": "fax", "note": padding})
    assert 1_048_000 < len(raw) <= 1_048_576
    response = await client.post(
        "/v1/events", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status == 422
    [dead] = await read_topic(bootstrap, settings.dlq_topic, 1)
    assert dead.value == raw


async def _chunks(raw: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), 1000):
        yield raw[start : start + 1000]


async def test_a_broker_that_is_down_gives_503_with_retry_after(settings):
    client, metrics, publisher = await ingest_client(
        f"127.0.0.1:{free_port()}", settings, timeout_s=1.0
    )
    try:
        response = await client.post("/v1/events", json=EVENT)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["error"] == "broker_unavailable"
        bad = await client.post(
            "/v1/events", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad.status == 503, "without a dead-letter copy the sender must retry"
        assert metric_value(metrics, "salespulse_ingest_broker_unavailable_total") == 2
    finally:
        await client.close()
        await publisher.stop()


async def test_the_ingest_recovers_when_the_broker_comes_back(settings):
    from salespulse.app.embedded import start_broker

    port = free_port()
    client, _, publisher = await ingest_client(f"127.0.0.1:{port}", settings, timeout_s=1.0)
    try:
        assert (await client.post("/v1/events", json=EVENT)).status == 503
        with start_broker(port=port) as late_broker:
            bootstrap = f"127.0.0.1:{late_broker.port}"
            await ensure_topics(bootstrap, {settings.events_topic: 4})
            assert (await client.post("/v1/events", json=EVENT)).status == 202
    finally:
        await client.close()
        await publisher.stop()


async def test_a_backfill_keeps_each_events_own_receipt(ingest, settings, bootstrap):
    client, _ = ingest
    recorded = {**EVENT, "received_at": "2026-11-22T08:00:05Z"}
    response = await client.post(
        "/v1/events",
        json=[recorded, {**EVENT, "event_id": "old-2"}],
        headers={"X-SalesPulse-Backfill": "true"},
    )
    assert response.status == 202
    records = await read_topic(bootstrap, settings.events_topic, 2)
    received = {decode_event(r.value).event_id: decode_event(r.value).received_at for r in records}
    assert received["amo-77"] is not None
    assert received["amo-77"].isoformat() == "2026-11-22T08:00:05+00:00"
    assert received["old-2"] is None, "history replayed today is not 'received' today"


TOKEN = "s3cret-ingest-token-0123"  # noqa: S105 - test data


async def test_with_a_token_set_only_its_bearer_gets_in(settings, bootstrap):
    await ensure_topics(bootstrap, topic_specs(settings))
    client, metrics, publisher = await ingest_client(bootstrap, settings, token=TOKEN)
    try:
        refused = [
            await client.post("/v1/events", json=EVENT),
            await client.post(
                "/v1/events", json=EVENT, headers={"Authorization": f"Bearer {TOKEN}x"}
            ),
            await client.post("/v1/events", json=EVENT, headers={"Authorization": TOKEN}),
            # a bad body from an unknown sender: still 401, never dead-lettered
            await client.post(
                "/v1/events", data=b"{", headers={"Content-Type": "application/json"}
            ),
        ]
        for response in refused:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="salespulse"'
            assert (await response.json())["error"] == "unauthorized"
        assert (
            metric_value(
                metrics, "salespulse_ingest_payloads_rejected_total", reason="unauthorized"
            )
            == 4
        )
        assert await read_topic(bootstrap, settings.dlq_topic, 1, timeout_s=1) == []
        assert await read_topic(bootstrap, settings.events_topic, 1, timeout_s=1) == []
        accepted = await client.post(
            "/v1/events", json=EVENT, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert accepted.status == 202
        [record] = await read_topic(bootstrap, settings.events_topic, 1)
        assert decode_event(record.value).event_id == "amo-77"
    finally:
        await client.close()
        await publisher.stop()


async def test_replay_sends_the_token_and_stops_at_once_without_it(settings, bootstrap, tmp_path):
    await ensure_topics(bootstrap, topic_specs(settings))
    client, _, publisher = await ingest_client(bootstrap, settings, token=TOKEN)
    history = tmp_path / "history.jsonl"
    lines = [msgspec.json.encode({**EVENT, "event_id": f"e-{n}"}) for n in range(1200)]
    history.write_bytes(b"\n".join(lines) + b"\n")
    base = str(client.make_url("/"))
    try:
        for wrong in (None, TOKEN + "x"):
            with pytest.raises(IngestUnauthorizedError, match="SALESPULSE_INGEST_TOKEN"):
                await replay(history, base, io.StringIO(), token=wrong)
        assert await read_topic(bootstrap, settings.events_topic, 1, timeout_s=1) == []
        summary = await replay(history, base, io.StringIO(), token=TOKEN)
        assert summary.events_accepted == 1200
        assert not summary.rejected
    finally:
        await client.close()
        await publisher.stop()
