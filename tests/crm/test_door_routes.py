"""The door over HTTP, on the real broker: the review's poison pills get a 422 naming the
range and a dead letter, at POST /v1/events and at the CRM webhooks alike."""

from __future__ import annotations

import json

import msgspec
import pytest

from salespulse.app.compose import topic_specs
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.crm.support import payload
from tests.crm.test_webhook_routes import (  # noqa: F401 - hooks is a fixture
    AMO_PATH,
    FORM,
    Hooks,
    hooks,
    pipedrive_headers,
)
from tests.helpers import read_topic
from tests.integration.test_ingest_http import ingest_client

pytestmark = pytest.mark.integration

REVIEW_REPRO = [
    {"event_id": "p1", "tenant": "acme", "type": "deal_created",
     "occurred_at": "2026-12-03T10:15:00Z", "entity_id": "d1", "pipeline": "sales"},
    {"event_id": "p2", "tenant": "acme", "type": "deal_stage_changed",
     "occurred_at": "2026-12-03T10:16:00Z", "entity_id": "d1", "pipeline": "sales",
     "stage_to": "won", "stage_kind": "won", "amount": "1e30", "currency": "USD"},
]  # fmt: skip


async def test_the_review_s_1e30_deal_is_422_naming_the_range_and_dead_lettered(
    settings: Settings, bootstrap: str
) -> None:
    await ensure_topics(bootstrap, topic_specs(settings))
    client, _, publisher = await ingest_client(bootstrap, settings)
    try:
        far_future = {**REVIEW_REPRO[0], "occurred_at": "9999-12-31T23:59:59Z"}
        answers = [
            await client.post("/v1/events", json=REVIEW_REPRO),
            await client.post("/v1/events", json=far_future),
        ]
        bodies = [await answer.json() for answer in answers]
    finally:
        await client.close()
        await publisher.stop()
    assert [answer.status for answer in answers] == [422, 422]
    assert bodies[0]["problems"] == [
        {
            "index": 1,
            "field": "amount",
            "problem": "must be a decimal from 0 to 100,000,000,000,000",
        }
    ]
    assert bodies[1]["problems"][0]["field"] == "occurred_at"
    dead = await read_topic(bootstrap, settings.dlq_topic, 2)
    assert {dict(record.headers)["reason"] for record in dead} == {b"invalid_event"}
    assert not await read_topic(bootstrap, settings.events_topic, 1, timeout_s=2)


async def test_crm_amounts_of_1e30_are_422_not_published(hooks: Hooks) -> None:  # noqa: F811
    amo = payload("amocrm_leads_status.form").replace(b"price%5D=22500", b"price%5D=1e30")
    pipedrive = json.loads(payload("pipedrive_v2_deal_won.json"))
    pipedrive["data"]["value"] = 1e30
    answers = [
        await hooks.client.post(AMO_PATH, data=amo, headers=FORM),
        await hooks.client.post(
            "/v1/webhooks/pipedrive/acme",
            data=msgspec.json.encode(pipedrive),
            headers=pipedrive_headers(),
        ),
    ]
    assert [answer.status for answer in answers] == [422, 422]
    for answer in answers:
        body = await answer.json()
        assert body["error"] == "unsupported_payload"
        assert body["problems"][0]["field"] == "amount"
    dead = await read_topic(hooks.bootstrap, hooks.settings.dlq_topic, 2)
    assert len(dead) == 2
    assert not await read_topic(hooks.bootstrap, hooks.settings.events_topic, 1, timeout_s=2)
