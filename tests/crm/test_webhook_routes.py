"""The four webhook routes through aiohttp against the real broker: what lands on the
events, raw and dead-letter topics, and what each CRM is answered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from handlers.crm.common import decode_request
from handlers.publisher import KafkaPublisher
from handlers.webhooks import WebhookHandler, WebhookOptions
from salespulse.app.embedded import free_port
from salespulse.core.events import decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantsFileError
from salespulse.core.topics import ensure_topics
from salespulse.dev.replay import replay
from tests.crm.support import B24_MEMBER, B24_TOKEN, SECRET_ENV, payload, tenants
from tests.helpers import metric_value, read_topic

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
AMO_PATH = f"/v1/webhooks/amocrm/acme/{SECRET_ENV['ACME_AMO_SECRET']}"
UNAUTHORIZED = {
    "error": "unauthorized",
    "problems": [{"problem": "the sender is not authenticated"}],
}


@dataclass
class Hooks:
    client: TestClient[web.Request, web.Application]
    metrics: PipelineMetrics
    settings: Settings
    bootstrap: str

    async def events(self, expected: int, timeout_s: float = 20.0) -> list[object]:
        records = await read_topic(self.bootstrap, self.settings.events_topic, expected, timeout_s)
        return [decode_event(r.value) for r in records]

    def count(self, metric: str, **labels: str) -> float:
        # The attribute's counter, read as a scrape would: salespulse_<attribute>_total.
        return metric_value(self.metrics, f"salespulse_{metric}_total", **labels)


async def start_hooks(
    bootstrap: str,
    settings: Settings,
    *,
    timeout_s: float = 5.0,
    max_body_bytes: int = 1_048_576,
    lateness_s: float | None = None,
) -> tuple[TestClient[web.Request, web.Application], PipelineMetrics, KafkaPublisher]:
    publisher = KafkaPublisher(
        bootstrap,
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=timeout_s,
    )
    metrics = PipelineMetrics(CollectorRegistry())
    options = WebhookOptions(
        events_topic=settings.events_topic,
        raw_topic=settings.raw_topic,
        max_body_bytes=max_body_bytes,
        lateness_s=lateness_s,
    )
    app = web.Application()
    app.add_routes(WebhookHandler(publisher, metrics, tenants(), options).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, metrics, publisher


@pytest.fixture
async def hooks(crm_settings: Settings, bootstrap: str, secrets_env: None) -> AsyncIterator[Hooks]:
    await ensure_topics(
        bootstrap,
        {
            crm_settings.events_topic: 4,
            crm_settings.raw_topic: 4,
            crm_settings.dlq_topic: 1,
        },
    )
    client, metrics, publisher = await start_hooks(bootstrap, crm_settings)
    yield Hooks(client, metrics, crm_settings, bootstrap)
    await client.close()
    await publisher.stop()


def hubspot_headers(
    client: TestClient[web.Request, web.Application], body: bytes, path: str
) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000))
    uri = str(client.make_url(path))
    source = b"POST" + uri.encode() + body + timestamp.encode()
    secret = SECRET_ENV["ACME_HUBSPOT_SECRET"].encode()
    signature = base64.b64encode(hmac.new(secret, source, hashlib.sha256).digest()).decode()
    return {
        **JSON,
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def pipedrive_headers(password: str = SECRET_ENV["ACME_PIPEDRIVE_PASSWORD"]) -> dict[str, str]:
    token = base64.b64encode(f"salespulse:{password}".encode()).decode()
    return {**JSON, "Authorization": f"Basic {token}"}


# --- Bitrix24 ---------------------------------------------------------------------------


async def test_a_bitrix24_call_end_is_published_as_a_call(hooks: Hooks) -> None:
    response = await hooks.client.post(
        "/v1/webhooks/bitrix24/acme", data=payload("bitrix24_call_end_missed.form"), headers=FORM
    )
    assert response.status == 202
    body = await response.json()
    assert body["accepted"] == 1
    assert body["queued"] == 0
    [record] = await read_topic(hooks.bootstrap, hooks.settings.events_topic, 1)
    event = decode_event(record.value)
    assert (event.type, event.direction, event.answered) == ("call", "in", False)
    assert event.event_id == body["event_ids"][0]
    assert record.key == event.partition_key
    assert hooks.count("webhook_events", crm="bitrix24") == 1
    assert hooks.count("webhooks_received", crm="bitrix24") == 1


async def test_a_bitrix24_deal_update_is_queued_raw_for_enrichment(hooks: Hooks) -> None:
    response = await hooks.client.post(
        "/v1/webhooks/bitrix24/acme", data=payload("bitrix24_deal_update.form"), headers=FORM
    )
    assert response.status == 202
    assert (await response.json())["queued"] == 1
    [record] = await read_topic(hooks.bootstrap, hooks.settings.raw_topic, 1)
    request = decode_request(record.value)
    assert (request.tenant, request.entity, request.entity_id) == ("acme", "deal", "7405")
    assert request.account == B24_MEMBER
    assert record.key == b"acme:bitrix24"
    assert hooks.count("webhook_enrichment_queued", crm="bitrix24") == 1


async def test_the_same_webhook_twice_carries_the_same_event_id(hooks: Hooks) -> None:
    body = payload("bitrix24_call_end_answered.form")
    ids = []
    for _ in range(2):
        response = await hooks.client.post("/v1/webhooks/bitrix24/acme", data=body, headers=FORM)
        assert response.status == 202
        ids += (await response.json())["event_ids"]
    events = await hooks.events(2)
    assert ids[0] == ids[1]
    assert {e.event_id for e in events} == {ids[0]}  # type: ignore[attr-defined]  # CrmEvent


async def test_bitrix24_sender_checks_fail_alike(hooks: Hooks) -> None:
    wrong_token = payload("bitrix24_call_end_missed.form").replace(
        b"application_token%5D=jvh9", b"application_token%5D=xxxx"
    )
    cases = [
        ("/v1/webhooks/bitrix24/acme", wrong_token),
        ("/v1/webhooks/bitrix24/nobody", payload("bitrix24_call_end_missed.form")),
        ("/v1/webhooks/bitrix24/Not%20A%20Tenant", payload("bitrix24_call_end_missed.form")),
    ]
    for path, body in cases:
        response = await hooks.client.post(path, data=body, headers=FORM)
        assert response.status == 401
        assert await response.json() == UNAUTHORIZED
    assert hooks.count("webhooks_unauthorized", crm="bitrix24") == 3
    assert await read_topic(hooks.bootstrap, hooks.settings.events_topic, 1, timeout_s=1) == []


async def test_unused_bitrix24_events_are_200_and_counted_cyrillic_included(hooks: Hooks) -> None:
    for name, kind in [
        ("bitrix24_contact_add.form", "ONCRMCONTACTADD"),
        ("bitrix24_openline_message.form", "ONOPENLINEMESSAGEADD"),
    ]:
        response = await hooks.client.post(
            "/v1/webhooks/bitrix24/acme", data=payload(name), headers=FORM
        )
        assert response.status == 200
        assert await response.json() == {"ignored": [kind]}
    assert hooks.count("webhooks_ignored", crm="bitrix24") == 2


REDACTED_TOKEN = b"auth%5Bapplication_token%5D=REDACTED"
BAD_BITRIX = [
    pytest.param(
        payload("bitrix24_call_end_missed.form").replace(b"CALL_START_DATE%5D=2026", b"X%5D=2026"),
        FORM,
        422,
        "unsupported_payload",
        id="call-without-start",
    ),
    pytest.param(
        payload("bitrix24_call_end_missed.form"),
        JSON,
        415,
        "unsupported_media_type",
        id="json-content-type",
    ),
]


@pytest.mark.parametrize(("raw", "headers", "status", "reason"), BAD_BITRIX)
async def test_unusable_bitrix24_bodies_are_4xx_and_dead_lettered_without_the_token(
    hooks: Hooks, raw: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    response = await hooks.client.post("/v1/webhooks/bitrix24/acme", data=raw, headers=headers)
    assert response.status == status
    body = await response.json()
    assert body["error"] == reason
    assert body["dead_lettered"] is True
    assert body["problems"][0]["problem"]
    [dead] = await read_topic(hooks.bootstrap, hooks.settings.dlq_topic, 1)
    assert dead.value == raw.replace(
        b"auth%5Bapplication_token%5D=" + B24_TOKEN.encode(), REDACTED_TOKEN
    )
    assert REDACTED_TOKEN in dead.value
    headers_by_name = dict(dead.headers)
    assert headers_by_name["reason"] == reason.encode()
    assert headers_by_name["origin"] == b"/v1/webhooks/bitrix24/acme"
    assert msgspec.json.decode(headers_by_name["problems"]) == body["problems"]
    assert hooks.count("webhooks_rejected", crm="bitrix24", reason=reason) == 1


# --- amoCRM -----------------------------------------------------------------------------


async def test_an_amocrm_status_change_is_published(hooks: Hooks) -> None:
    response = await hooks.client.post(
        AMO_PATH, data=payload("amocrm_leads_status.form"), headers=FORM
    )
    assert response.status == 202
    events = await hooks.events(2)
    assert sorted(e.type for e in events) == ["deal_stage_changed", "lead_stage_changed"]  # type: ignore[attr-defined]  # CrmEvent


async def test_amocrm_sender_checks(hooks: Hooks) -> None:
    other_account = payload("amocrm_leads_status.form").replace(b"29013640", b"11111111")
    for path, body in [
        ("/v1/webhooks/amocrm/acme/wrong-secret", payload("amocrm_leads_status.form")),
        (AMO_PATH, other_account),
        (AMO_PATH.replace("/acme/", "/nobody/"), payload("amocrm_leads_status.form")),
    ]:
        response = await hooks.client.post(path, data=body, headers=FORM)
        assert response.status == 401
        assert await response.json() == UNAUTHORIZED
    assert hooks.count("webhooks_unauthorized", crm="amocrm") == 3


async def test_an_amocrm_dead_letter_never_records_the_url_secret(hooks: Hooks) -> None:
    response = await hooks.client.post(AMO_PATH, data=b"leads[status][0][id]=5", headers=FORM)
    assert response.status == 422
    [dead] = await read_topic(hooks.bootstrap, hooks.settings.dlq_topic, 1)
    assert dict(dead.headers)["origin"] == b"/v1/webhooks/amocrm/acme"
    assert SECRET_ENV["ACME_AMO_SECRET"].encode() not in b"".join(v for _, v in dead.headers)


async def test_amocrm_mixed_body_counts_what_it_uses_and_ignores_the_rest(hooks: Hooks) -> None:
    body = payload("amocrm_contacts_update.form") + b"&" + payload("amocrm_message_add.form")
    response = await hooks.client.post(AMO_PATH, data=body, headers=FORM)
    assert response.status == 202
    answer = await response.json()
    assert answer["accepted"] == 2
    assert answer["ignored"] == ["contacts[update]"]


async def test_amocrm_is_answered_within_two_seconds_even_when_the_broker_hangs(
    crm_settings: Settings, secrets_env: None
) -> None:
    # A "broker" that accepts connections and never answers: the publisher would wait 5 s.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client, metrics, publisher = await start_hooks(f"127.0.0.1:{port}", crm_settings, timeout_s=5.0)
    try:
        started = time.monotonic()
        response = await client.post(
            AMO_PATH, data=payload("amocrm_leads_status.form"), headers=FORM
        )
        elapsed = time.monotonic() - started
        assert response.status == 503
        assert 1.0 < elapsed < 2.0
        assert response.headers["Retry-After"] == "5"
        assert metric_value(metrics, "salespulse_ingest_broker_unavailable_total") == 1
    finally:
        await client.close()
        await publisher.stop()
        server.close()


# --- HubSpot ----------------------------------------------------------------------------


async def test_a_signed_hubspot_batch_queues_deal_stage_changes(hooks: Hooks) -> None:
    path = "/v1/webhooks/hubspot/acme"
    body = payload("hubspot_mixed.json")
    response = await hooks.client.post(
        path, data=body, headers=hubspot_headers(hooks.client, body, path)
    )
    assert response.status == 202
    answer = await response.json()
    assert answer["queued"] == 1
    assert answer["ignored"] == ["contact.creation", "deal.propertyChange:amount"]
    [record] = await read_topic(hooks.bootstrap, hooks.settings.raw_topic, 1)
    assert decode_request(record.value).value == "1f4f1ec1-8174-4c5a-9bb3-5d9fb4d5a1e2"


async def test_hubspot_signature_failures_are_401(hooks: Hooks) -> None:
    path = "/v1/webhooks/hubspot/acme"
    body = payload("hubspot_deal_stage.json")
    good = hubspot_headers(hooks.client, body, path)
    stale = {**good, "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000) - 6 * 60 * 1000)}
    other_portal = body.replace(b"48975575", b"12345")
    for data, headers in [
        (body, {**good, "X-HubSpot-Signature-v3": "AAAA"}),
        (body, stale),
        (body, JSON),
        (body + b" ", good),
        (other_portal, hubspot_headers(hooks.client, other_portal, path)),
    ]:
        response = await hooks.client.post(path, data=data, headers=headers)
        assert response.status == 401
        assert await response.json() == UNAUTHORIZED


async def test_signed_but_malformed_hubspot_json_is_400_and_dead_lettered(hooks: Hooks) -> None:
    path = "/v1/webhooks/hubspot/acme"
    body = b'[{"eventId": 1,'
    response = await hooks.client.post(
        path, data=body, headers=hubspot_headers(hooks.client, body, path)
    )
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_payload"
    [dead] = await read_topic(hooks.bootstrap, hooks.settings.dlq_topic, 1)
    assert dead.value == body


# --- Pipedrive --------------------------------------------------------------------------


async def test_a_pipedrive_won_deal_is_published(hooks: Hooks) -> None:
    response = await hooks.client.post(
        "/v1/webhooks/pipedrive/acme",
        data=payload("pipedrive_v2_deal_won.json"),
        headers=pipedrive_headers(),
    )
    assert response.status == 202
    [event] = await hooks.events(1)
    assert event.stage_kind == "won"  # type: ignore[attr-defined]  # CrmEvent


async def test_pipedrive_basic_auth_failures_are_401_with_a_challenge(hooks: Hooks) -> None:
    for headers in [pipedrive_headers("wrong"), JSON]:
        response = await hooks.client.post(
            "/v1/webhooks/pipedrive/acme",
            data=payload("pipedrive_v2_deal_won.json"),
            headers=headers,
        )
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="salespulse"'
        assert await response.json() == UNAUTHORIZED


async def test_pipedrive_entities_we_do_not_use_are_200(hooks: Hooks) -> None:
    response = await hooks.client.post(
        "/v1/webhooks/pipedrive/acme",
        data=payload("pipedrive_v2_person_change.json"),
        headers=pipedrive_headers(),
    )
    assert response.status == 200
    assert await response.json() == {"ignored": ["person.change"]}
    assert hooks.count("webhooks_ignored", crm="pipedrive") == 1


# --- all --------------------------------------------------------------------------------


async def test_a_broker_that_is_down_gives_503_so_the_crm_retries(
    crm_settings: Settings, secrets_env: None
) -> None:
    client, _metrics, publisher = await start_hooks(
        f"127.0.0.1:{free_port()}", crm_settings, timeout_s=1.0
    )
    try:
        response = await client.post(
            "/v1/webhooks/pipedrive/acme",
            data=payload("pipedrive_v2_deal_won.json"),
            headers=pipedrive_headers(),
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["error"] == "broker_unavailable"
    finally:
        await client.close()
        await publisher.stop()


async def test_an_oversized_body_is_413_with_its_head_dead_lettered(
    crm_settings: Settings, bootstrap: str, secrets_env: None
) -> None:
    await ensure_topics(bootstrap, {crm_settings.dlq_topic: 1})
    client, metrics, publisher = await start_hooks(bootstrap, crm_settings, max_body_bytes=2048)
    try:
        huge = payload("amocrm_message_add.form") * 20
        response = await client.post(AMO_PATH, data=huge, headers=FORM)
        assert response.status == 413
        [dead] = await read_topic(bootstrap, crm_settings.dlq_topic, 1)
        assert huge.startswith(dead.value)
        assert (
            metric_value(
                metrics, "salespulse_webhooks_rejected_total", crm="amocrm", reason="body_too_large"
            )
            == 1
        )
    finally:
        await client.close()
        await publisher.stop()


def test_a_configured_secret_that_is_missing_fails_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACME_HUBSPOT_TOKEN")
    options = WebhookOptions(events_topic="e", raw_topic="r", max_body_bytes=1024)
    with pytest.raises(TenantsFileError, match=r"tenants\.acme\.crm\.hubspot\.access_token"):
        WebhookHandler(
            KafkaPublisher("x:1", events_topic="e", dlq_topic="d", timeout_s=1),
            PipelineMetrics(CollectorRegistry()),
            tenants(),
            options,
        )
    monkeypatch.setenv("ACME_HUBSPOT_TOKEN", "")
    with pytest.raises(TenantsFileError, match="empty"):
        WebhookHandler(
            KafkaPublisher("x:1", events_topic="e", dlq_topic="d", timeout_s=1),
            PipelineMetrics(CollectorRegistry()),
            tenants(),
            options,
        )


async def test_a_replayed_delivery_is_history_and_a_live_one_is_not(
    hooks: Hooks, tmp_path: Path
) -> None:
    live = payload("bitrix24_call_end_missed.form")
    recorded = live.replace(b"1773239326", b"1773230000")  # another call: another event
    response = await hooks.client.post("/v1/webhooks/bitrix24/acme", data=live, headers=FORM)
    assert response.status == 202
    lines = tmp_path / "recorded.jsonl"
    webhook = {"path": "/v1/webhooks/bitrix24/acme", "content_type": FORM["Content-Type"]}
    bodies = [recorded, payload("bitrix24_deal_update.form")]  # the update names its deal only
    recordings = [msgspec.json.encode({"webhook": {**webhook, "body": b.decode()}}) for b in bodies]
    lines.write_bytes(b"\n".join(recordings))
    summary = await replay(lines, str(hooks.client.make_url("/")), progress=io.StringIO())
    assert summary.webhooks_accepted == 2
    # the events built from the deal's REST record will be history too
    [queued] = await read_topic(hooks.bootstrap, hooks.settings.raw_topic, 1)
    assert decode_request(queued.value).backfill is True
    events = await hooks.events(2)
    # the replayed missed call never joins the live waiting list (docs/sla.md)
    assert sorted((e.event_id[-10:], e.backfill) for e in events) == [  # type: ignore[attr-defined]
        ("1773230000", True),
        ("1773239326", False),
    ]
