"""Fuzz of the ingest (seeded, bounded): the real aiohttp app with ``POST /v1/events`` and
the four CRM webhooks, the real broker. Mutated real CRM payloads and canonical events
(tests/fuzz_cases.py) must never get a 5xx; every rejected body of a verified sender is on
the dead-letter topic, byte for byte but for its redacted credentials; a body whose
sender is not verified is never kept, and is counted."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from handlers.redaction import redact
from handlers.webhooks import WebhookHandler, WebhookOptions
from salespulse.app.compose import topic_specs
from salespulse.core.json_responses import DEAD_LETTER_PREFIX_BYTES
from salespulse.core.pipeline_metrics import WEBHOOK_CRMS, PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.crm.support import SECRET_ENV, payload, tenants
from tests.fuzz_cases import ROUTES, Case, CaseMaker, Route, sign
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

SEED = 20261203
CASES = 10_000
# Small, so oversized bodies are cheap; the dead letter still keeps 256 KiB of them.
BODY_LIMIT = 16 * 1024
CONCURRENCY = 16
# /v1/events takes a third of the cases, the webhooks the rest (as the review's fuzz).
ROUTE_WEIGHTS = (34, 16.5, 16.5, 16.5, 16.5)
SECRETS: dict[Route, list[str]] = {
    "events": [],
    "bitrix24": [SECRET_ENV["ACME_B24_TOKEN"]],
    "amocrm": [SECRET_ENV["ACME_AMO_SECRET"]],
    "hubspot": [SECRET_ENV["ACME_HUBSPOT_SECRET"], SECRET_ENV["ACME_HUBSPOT_TOKEN"]],
    "pipedrive": [SECRET_ENV["ACME_PIPEDRIVE_PASSWORD"]],
}


def credentials_in_fixtures() -> list[bytes]:
    """The Bitrix24 OAuth tokens in the fixtures: never configured, still never kept."""
    found = []
    for name in ("bitrix24_deal_add.form", "bitrix24_lead_add.form"):
        for pair in payload(name).split(b"&"):
            key, _, value = pair.partition(b"=")
            if key.endswith((b"access_token%5D", b"refresh_token%5D")):
                found.append(value)
    return found


NEVER_KEPT = [secret.encode() for secrets in SECRETS.values() for secret in secrets] + (
    credentials_in_fixtures()
)
# Bodies a CRM's check cannot get through: answered, counted, not kept.
DISCARDS = {
    ("bitrix24", 400, "malformed_payload"),
    ("bitrix24", 413, "body_too_large"),
    ("hubspot", 413, "body_too_large"),
}


@dataclass
class Outcome:
    case: Case
    status: int
    answer: Any


@pytest.fixture
async def app_client(
    settings: Settings, bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], PipelineMetrics]]:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=10
    )
    metrics = PipelineMetrics(CollectorRegistry())
    options = WebhookOptions(
        events_topic=settings.events_topic,
        raw_topic=settings.raw_topic,
        max_body_bytes=BODY_LIMIT,
        # The fuzz measures answers, not a busy machine's broker latency.
        amocrm_deadline_s=30.0,
    )
    app = web.Application()
    app.add_routes(IngestHandler(publisher, metrics, max_body_bytes=BODY_LIMIT).routes())
    app.add_routes(WebhookHandler(publisher, metrics, tenants(), options).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, metrics
    await client.close()
    await publisher.stop()


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


async def send(
    client: TestClient[web.Request, web.Application], case: Case, gate: asyncio.Semaphore
) -> Outcome:
    async with gate:
        data: Any = chunks(case.body) if case.chunked else case.body
        async with client.post(case.path, data=data, headers=case.headers) as response:
            raw = await response.read()
    try:
        answer = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        answer = raw
    return Outcome(case, response.status, answer)


def kept_copy(outcome: Outcome) -> bytes:
    """What the dead-letter topic must hold for a dead-lettered answer."""
    body = outcome.case.body
    if outcome.status == 413:
        body = body[:DEAD_LETTER_PREFIX_BYTES]
    route = outcome.case.route
    return body if route == "events" else redact(route, body, SECRETS[route])


def origin(route: Route) -> bytes:
    return b"/v1/events" if route == "events" else f"/v1/webhooks/{route}/acme".encode()


def total(counter: PromCounter, **fixed: str) -> float:
    """A counter's sum over its label sets (those matching ``fixed``)."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in fixed.items())
    )


async def test_fuzzed_requests_get_no_5xx_and_only_verified_bodies_are_kept_redacted(
    app_client: tuple[TestClient[web.Request, web.Application], PipelineMetrics],
    settings: Settings,
    bootstrap: str,
) -> None:
    client, metrics = app_client
    maker = CaseMaker(SEED, BODY_LIMIT)
    signer = random.Random(SEED + 1)
    base_url = str(client.make_url("")).rstrip("/")
    now_ms = int(time.time() * 1000)
    cases = [maker.case(route) for route in maker.rng.choices(ROUTES, ROUTE_WEIGHTS, k=CASES)]
    for case in cases:
        sign(case, base_url, signer, now_ms)
    gate = asyncio.Semaphore(CONCURRENCY)
    outcomes = await asyncio.gather(*(send(client, case, gate) for case in cases))

    statuses = Counter((o.case.route, o.status) for o in outcomes)
    assert not [key for key in statuses if key[1] >= 500], statuses
    assert {status for _, status in statuses} <= {200, 202, 400, 401, 413, 415, 422}
    rejected = [o for o in outcomes if o.status >= 400]
    for outcome in rejected:
        assert isinstance(outcome.answer, dict), outcome.answer
        assert outcome.answer["error"]
        assert outcome.answer["problems"][0]["problem"]
    unauthorized = [o for o in rejected if o.status == 401]
    bad_bodies = [o for o in rejected if o.status != 401]
    kept = [o for o in bad_bodies if o.answer["dead_lettered"]]
    discarded = [o for o in bad_bodies if not o.answer["dead_lettered"]]
    # Only a body whose CRM check needs more than could be read is answered unkept.
    for outcome in discarded:
        key = (outcome.case.route, outcome.status, outcome.answer["error"])
        assert key in DISCARDS, key
    assert all(o.case.authentic for o in kept)
    # Both kinds were exercised, per webhook route (a fuzz that never reaches a branch
    # proves nothing about it).
    for route in ROUTES:
        assert any(o.case.route == route for o in kept), route
    for route in ("bitrix24", "amocrm", "hubspot", "pipedrive"):
        assert any(o.case.route == route for o in unauthorized), route
    assert any(o.case.route == "bitrix24" for o in discarded)

    # One partition, every answer already acknowledged: a last dead letter after the fuzz
    # ends the read, and anything kept that should not have been comes before it.
    end = await client.post(
        "/v1/events", data=b"end of fuzz", headers={"Content-Type": "application/json"}
    )
    assert end.status == 400
    *records, last = await read_topic(bootstrap, settings.dlq_topic, len(kept) + 1, timeout_s=60)
    assert last.value == b"end of fuzz"
    got = Counter((dict(r.headers)["origin"], hashlib.sha256(r.value).hexdigest()) for r in records)
    expected = Counter(
        (origin(o.case.route), hashlib.sha256(kept_copy(o)).hexdigest()) for o in kept
    )
    assert got == expected
    for record in records:
        assert not [secret for secret in NEVER_KEPT if secret in record.value]

    assert total(metrics.webhooks_unauthorized) == len(unauthorized)
    assert total(metrics.webhooks_discarded) == len(discarded)
    webhook_kept = [o for o in kept if o.case.route != "events"]
    assert total(metrics.webhooks_rejected) == len(webhook_kept)
    assert total(metrics.payloads_rejected) == len(kept) - len(webhook_kept) + 1  # the end
    for crm in WEBHOOK_CRMS:
        received = sum(1 for o in outcomes if o.case.route == crm)
        assert total(metrics.webhooks_received, crm=crm) == received
