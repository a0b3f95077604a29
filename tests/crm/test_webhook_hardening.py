"""Webhook inputs that once got a 500, were kept from senders nobody had verified, or
kept a tenant's secrets: each now gets a 4xx (or is used), and a dead letter is only ever
a verified sender's body with its credentials redacted. Real broker, real aiohttp app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from handlers.webhooks import WebhookHandler, WebhookOptions
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.crm.support import B24_TOKEN, payload, payload_json, tenants
from tests.crm.test_webhook_routes import (
    AMO_PATH,
    FORM,
    UNAUTHORIZED,
    hubspot_headers,
    pipedrive_headers,
)
from tests.helpers import metric_value, read_topic

pytestmark = pytest.mark.integration

B24_PATH = "/v1/webhooks/bitrix24/acme"
HUBSPOT_PATH = "/v1/webhooks/hubspot/acme"
PIPEDRIVE_PATH = "/v1/webhooks/pipedrive/acme"
MAX_BODY = 64 * 1024
# A verified sender's unusable body: the first dead letter a test expects to see. Sent
# after the bodies that must not be kept, it proves none of them was (one partition).
MARKER = payload("bitrix24_call_end_missed.form").replace(b"CALL_START_DATE%5D=2026", b"X%5D=2026")


@dataclass
class Hooks:
    client: TestClient[web.Request, web.Application]
    metrics: PipelineMetrics
    settings: Settings
    bootstrap: str

    def count(self, metric: str, **labels: str) -> float:
        # The attribute's counter, read as a scrape would: salespulse_<attribute>_total.
        return metric_value(self.metrics, f"salespulse_{metric}_total", **labels)

    async def dead_letters(self, expected: int) -> list[bytes]:
        records = await read_topic(self.bootstrap, self.settings.dlq_topic, expected)
        return [record.value for record in records]

    async def post_marker(self) -> None:
        response = await self.client.post(B24_PATH, data=MARKER, headers=FORM)
        assert response.status == 422


@pytest.fixture
async def hooks(crm_settings: Settings, bootstrap: str, secrets_env: None) -> AsyncIterator[Hooks]:
    settings = crm_settings
    await ensure_topics(
        bootstrap, {settings.events_topic: 4, settings.raw_topic: 4, settings.dlq_topic: 1}
    )
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    options = WebhookOptions(
        events_topic=settings.events_topic, raw_topic=settings.raw_topic, max_body_bytes=MAX_BODY
    )
    app = web.Application()
    app.add_routes(WebhookHandler(publisher, metrics, tenants(), options).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    yield Hooks(client, metrics, settings, bootstrap)
    await client.close()
    await publisher.stop()


def deep_json(levels: int) -> bytes:
    return b'{"x":' + b"[" * levels + b"]" * levels + b"}"


# --- Bitrix24: nothing is kept before the token has been checked ------------------------


UNVERIFIED_BITRIX = [
    pytest.param(b"event=ONCRMDEALADD&x=%FF", FORM, 400, "malformed_payload", id="not-utf8"),
    pytest.param(
        payload("bitrix24_deal_add.form") + b"&x=%FF",
        FORM,
        400,
        "malformed_payload",
        id="token-inside-a-form-that-is-not-utf8",
    ),
    pytest.param(
        b"a[" + b"1" * 5000 + b"]=1", FORM, 400, "malformed_payload", id="index-of-5000-digits"
    ),
    pytest.param(
        payload("bitrix24_deal_add.form") + b"&pad=" + b"x" * MAX_BODY,
        FORM,
        413,
        "body_too_large",
        id="oversized-with-token",
    ),
]


@pytest.mark.parametrize(("raw", "headers", "status", "reason"), UNVERIFIED_BITRIX)
async def test_a_bitrix24_body_whose_token_cannot_be_checked_is_4xx_counted_and_not_kept(
    hooks: Hooks, raw: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    response = await hooks.client.post(B24_PATH, data=raw, headers=headers)
    assert response.status == status
    answer = await response.json()
    assert answer["error"] == reason
    assert answer["dead_lettered"] is False
    assert answer["problems"][0]["problem"]
    assert hooks.count("webhooks_discarded", crm="bitrix24", reason=reason) == 1
    await hooks.post_marker()
    [first] = await hooks.dead_letters(1)
    assert first.startswith(MARKER[:40])


async def test_a_bitrix24_body_without_a_token_is_401_whatever_its_content_type(
    hooks: Hooks,
) -> None:
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        response = await hooks.client.post(
            B24_PATH, data=b"hello", headers={"Content-Type": content_type}
        )
        assert response.status == 401
        assert await response.json() == UNAUTHORIZED
    assert hooks.count("webhooks_unauthorized", crm="bitrix24") == 3
    await hooks.post_marker()
    [first] = await hooks.dead_letters(1)
    assert first.startswith(MARKER[:40])


async def test_a_bitrix24_dead_letter_carries_none_of_the_tenants_credentials(
    hooks: Hooks,
) -> None:
    body = payload("bitrix24_deal_add.form").replace(
        b"data%5BFIELDS%5D%5BID%5D=7405", b"data%5BFIELDS%5D%5BID%5D=abc"
    )
    credentials = {
        "access_token": b"be45f0660071849a0058f18a000000010000077261ef50fc26f1357adbd86a052c9e48",
        "refresh_token": b"4s386p3q0tr8dy89xvmt96234v3dljg8",
        "application_token": B24_TOKEN.encode(),
    }
    response = await hooks.client.post(B24_PATH, data=body, headers=FORM)
    assert response.status == 422
    assert (await response.json())["dead_lettered"] is True
    [dead] = await hooks.dead_letters(1)
    expected = body
    for name, value in credentials.items():
        assert value in body
        assert value not in dead
        field = f"auth%5B{name}%5D=".encode()
        expected = expected.replace(field + value, field + b"REDACTED")
    # Everything but the credentials stays byte for byte.
    assert dead == expected


async def test_a_configured_secret_is_redacted_wherever_it_appears(hooks: Hooks) -> None:
    # The token copied into another field too, percent-encoded: still never kept.
    body = MARKER + b"&data%5BNOTE%5D=" + B24_TOKEN.encode()
    response = await hooks.client.post(B24_PATH, data=body, headers=FORM)
    assert response.status == 422
    [dead] = await hooks.dead_letters(1)
    assert B24_TOKEN.encode() not in dead
    assert dead.endswith(b"&data%5BNOTE%5D=REDACTED")


# --- HubSpot: the signature is checked before anything is kept --------------------------


async def test_an_oversized_hubspot_body_is_413_counted_and_not_kept(hooks: Hooks) -> None:
    huge = b"[" + b'{"eventId": 1},' * (MAX_BODY // 10) + b"{}]"
    for headers in (
        {"Content-Type": "application/json"},
        hubspot_headers(hooks.client, huge, HUBSPOT_PATH),
    ):
        response = await hooks.client.post(HUBSPOT_PATH, data=huge, headers=headers)
        assert response.status == 413
        assert (await response.json())["dead_lettered"] is False
    assert hooks.count("webhooks_discarded", crm="hubspot", reason="body_too_large") == 2
    await hooks.post_marker()
    [first] = await hooks.dead_letters(1)
    assert first.startswith(MARKER[:40])


@pytest.mark.parametrize("timestamp", ["²", "1" * 5000, "\uff11" * 13])
async def test_a_hubspot_timestamp_of_other_than_ascii_digits_is_401(
    hooks: Hooks, timestamp: str
) -> None:
    body = payload("hubspot_deal_stage.json")
    headers = {**hubspot_headers(hooks.client, body, HUBSPOT_PATH)}
    headers["X-HubSpot-Request-Timestamp"] = timestamp
    response = await hooks.client.post(HUBSPOT_PATH, data=body, headers=headers)
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


# --- JSON nested past any CRM's payload ---------------------------------------------------


async def test_deeply_nested_json_from_a_verified_sender_is_400_and_dead_lettered(
    hooks: Hooks,
) -> None:
    body = deep_json(1000)
    response = await hooks.client.post(
        HUBSPOT_PATH, data=body, headers=hubspot_headers(hooks.client, body, HUBSPOT_PATH)
    )
    assert response.status == 400
    assert "deeper than 64" in (await response.json())["problems"][0]["problem"]
    response = await hooks.client.post(PIPEDRIVE_PATH, data=body, headers=pipedrive_headers())
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_payload"
    assert await hooks.dead_letters(2) == [body, body]


# --- numbers, digits and dates ----------------------------------------------------------


def pipedrive_body(name: str, **changes: object) -> bytes:
    document = payload_json(name)
    for path, value in changes.items():
        node = document
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return msgspec.json.encode(document)


# A won deal without its own times: the won event's time comes from meta.timestamp.
NO_DEAL_TIMES = {"data__won_time": None, "data__close_time": None, "data__update_time": None}
PIPEDRIVE_ODD_VALUES = [
    pytest.param(
        pipedrive_body("pipedrive_v2_deal_won.json", meta__timestamp="²", **NO_DEAL_TIMES),
        422,
        id="superscript-timestamp",
    ),
    pytest.param(
        pipedrive_body("pipedrive_v2_deal_won.json", meta__timestamp="9" * 5000, **NO_DEAL_TIMES),
        422,
        id="timestamp-of-5000-digits",
    ),
    pytest.param(
        pipedrive_body("pipedrive_v2_deal_create.json", data__add_time="0001-01-01T00:30:00+01:00"),
        422,
        id="date-before-year-1-in-utc",
    ),
    pytest.param(
        pipedrive_body("pipedrive_v2_activity_call.json", data__duration="²:00"),
        202,
        id="superscript-duration",
    ),
]


@pytest.mark.parametrize(("body", "status"), PIPEDRIVE_ODD_VALUES)
async def test_pipedrive_odd_digits_and_dates_are_answered_not_500(
    hooks: Hooks, body: bytes, status: int
) -> None:
    response = await hooks.client.post(PIPEDRIVE_PATH, data=body, headers=pipedrive_headers())
    assert response.status == status


async def test_an_amocrm_form_of_numbered_fields_only_is_answered_not_500(hooks: Hooks) -> None:
    for body in (b"0=1", b"[]=1", b"0=1&1=2"):
        response = await hooks.client.post(AMO_PATH, data=body, headers=FORM)
        assert response.status == 200
        assert (await response.json())["ignored"]


async def test_an_amocrm_rating_of_superscript_digits_is_no_rating(hooks: Hooks) -> None:
    body = payload("amocrm_talk_update.form")
    assert b"%5Brate%5D=" in body
    start = body.index(b"%5Brate%5D=") + len(b"%5Brate%5D=")
    end = body.find(b"&", start)
    odd = body[:start] + "²".encode() + (body[end:] if end != -1 else b"")
    response = await hooks.client.post(AMO_PATH, data=odd, headers=FORM)
    assert response.status == 200
    # The update's rating is unreadable, the add's is 0 (none): nothing to count.
    assert (await response.json())["ignored"] == ["talk[add]", "talk[update]"]
