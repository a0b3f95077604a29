"""How the ingest reads a body: a slow one gets 408 and a closed connection, an oversized
one is dead-lettered as exactly its first 256 KiB, a deeply nested one is a 400. Real
sockets against the real aiohttp app and broker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from handlers.webhooks import WebhookHandler, WebhookOptions
from salespulse.app.compose import topic_specs
from salespulse.core.json_responses import DEAD_LETTER_PREFIX_BYTES
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.crm.support import SECRET_ENV, tenants
from tests.helpers import metric_value, read_topic

pytestmark = pytest.mark.integration

MAX_BODY = 4096
# Short enough for a test; the wait for the answer below is far longer.
BODY_TIMEOUT_S = 0.5
ANSWER_WAIT_S = 30.0


@dataclass
class Ingest:
    client: TestClient[web.Request, web.Application]
    metrics: PipelineMetrics
    settings: Settings
    bootstrap: str

    async def raw_request(self, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        server = self.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(head)
        await writer.drain()
        return reader, writer


@pytest.fixture
async def ingest(
    settings: Settings,
    bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Ingest]:
    """The ingest and the webhooks; ``request.param``: another body read timeout."""
    body_timeout_s = getattr(request, "param", BODY_TIMEOUT_S)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    app = web.Application()
    app.add_routes(
        IngestHandler(
            publisher, metrics, max_body_bytes=MAX_BODY, body_timeout_s=body_timeout_s
        ).routes()
    )
    options = WebhookOptions(
        events_topic=settings.events_topic,
        raw_topic=settings.raw_topic,
        max_body_bytes=MAX_BODY,
        body_timeout_s=body_timeout_s,
    )
    app.add_routes(WebhookHandler(publisher, metrics, tenants(), options).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    yield Ingest(client, metrics, settings, bootstrap)
    await client.close()
    await publisher.stop()


def head(path: str, length: int, *extra: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: ingest",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One answer on a connection that stays open: its head, then Content-Length bytes."""
    header_block = await reader.readuntil(b"\r\n\r\n")
    _, headers, _ = split_answer(header_block + b"null")
    return header_block + await reader.readexactly(int(headers["content-length"]))


def split_answer(raw: bytes) -> tuple[int, dict[str, str], object]:
    header_block, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode().split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    return int(status_line.split()[1]), headers, msgspec.json.decode(body)


async def test_a_body_slower_than_the_read_timeout_gets_408_and_a_closed_connection(
    ingest: Ingest,
) -> None:
    reader, writer = await ingest.raw_request(head("/v1/events", 1000) + b'[{"event_id": ')
    try:
        # read() returns at EOF only: the server answered and closed the connection.
        raw = await asyncio.wait_for(reader.read(), ANSWER_WAIT_S)
    finally:
        writer.close()
    status, headers, answer = split_answer(raw)
    assert status == 408
    assert headers["connection"] == "close"
    assert answer == {
        "error": "body_read_timeout",
        "problems": [{"problem": f"the body did not arrive within {BODY_TIMEOUT_S:g} s"}],
        "dead_lettered": False,
    }
    assert (
        metric_value(
            ingest.metrics, "salespulse_ingest_payloads_rejected_total", reason="body_read_timeout"
        )
        == 1
    )


async def test_a_slow_webhook_body_gets_408_and_is_counted(ingest: Ingest) -> None:
    basic = base64.b64encode(f"salespulse:{SECRET_ENV['ACME_PIPEDRIVE_PASSWORD']}".encode())
    request = head("/v1/webhooks/pipedrive/acme", 1000, f"Authorization: Basic {basic.decode()}")
    reader, writer = await ingest.raw_request(request + b'{"meta": ')
    try:
        raw = await asyncio.wait_for(reader.read(), ANSWER_WAIT_S)
    finally:
        writer.close()
    status, _, answer = split_answer(raw)
    assert status == 408
    assert answer["error"] == "body_read_timeout"  # type: ignore[index]  # a JSON object
    discarded = metric_value(
        ingest.metrics,
        "salespulse_webhooks_discarded_total",
        crm="pipedrive",
        reason="body_read_timeout",
    )
    assert discarded == 1


@pytest.mark.parametrize("ingest", [ANSWER_WAIT_S * 2], indirect=True)
async def test_an_oversized_body_arriving_in_pieces_is_dead_lettered_as_its_full_head(
    ingest: Ingest,
) -> None:
    size = 2 * DEAD_LETTER_PREFIX_BYTES
    body = bytes(index % 251 for index in range(size))
    first = 1000
    reader, writer = await ingest.raw_request(head("/v1/events", size) + body[:first])
    try:
        # Before the fix one read() took whatever had arrived (these 1,000 bytes) and the
        # 413 came at once; now the server waits for the rest of the head.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 2.0)
        writer.write(body[first:])
        await writer.drain()
        raw = await asyncio.wait_for(read_answer(reader), ANSWER_WAIT_S)
    finally:
        writer.close()
    status, _, answer = split_answer(raw)
    assert status == 413
    assert answer["dead_lettered"] is True  # type: ignore[index]  # a JSON object
    [dead] = await read_topic(ingest.bootstrap, ingest.settings.dlq_topic, 1)
    assert dead.value == body[:DEAD_LETTER_PREFIX_BYTES]


async def test_json_nested_1000_deep_is_400_and_dead_lettered(ingest: Ingest) -> None:
    body = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = await ingest.client.post(
        "/v1/events", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "malformed_json"
    assert "deeper than 64 levels" in answer["problems"][0]["problem"]
    [dead] = await read_topic(ingest.bootstrap, ingest.settings.dlq_topic, 1)
    assert dead.value == body
