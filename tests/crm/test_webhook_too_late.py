"""A CRM webhook's event older than the lateness limit is decided at the door: its body
goes to the dead-letter topic as ``too_late`` (credentials redacted), nothing reaches
``crm.events``, the CRM gets the 2xx that ends its retries, and the too-late counter
counts the event once however often the CRM delivers it. Against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import msgspec
import pytest

from salespulse.core.events import decode_event
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.crm.support import B24_TOKEN, payload
from tests.crm.test_webhook_routes import FORM, REDACTED_TOKEN, start_hooks
from tests.helpers import metric_value, read_topic, topic_ends

pytestmark = pytest.mark.integration

LATENESS_S = 35 * 86_400  # the product's default; the payload's call is of March 2026
PATH = "/v1/webhooks/bitrix24/acme"


async def test_a_too_late_bitrix24_call_is_dead_lettered_at_the_door_and_counted_once(
    crm_settings: Settings, bootstrap: str, secrets_env: None
) -> None:
    settings = crm_settings
    await ensure_topics(
        bootstrap, {settings.events_topic: 4, settings.raw_topic: 4, settings.dlq_topic: 1}
    )
    client, metrics, publisher = await start_hooks(bootstrap, settings, lateness_s=LATENESS_S)
    late_call = payload("bitrix24_call_end_missed.form")
    now = quote(datetime.now(UTC).isoformat(timespec="seconds"), safe="")
    timely_call = late_call.replace(
        b"CALL_START_DATE%5D=2026-03-11T17%3A28%3A46%2B03%3A00",
        f"CALL_START_DATE%5D={now}".encode(),
    ).replace(b"1773239326", b"1773239999")  # another call id: another event
    assert timely_call.count(now.encode()) == 1
    try:
        answers = []
        for _ in range(2):  # the CRM delivers the same call twice
            response = await client.post(PATH, data=late_call, headers=FORM)
            assert response.status == 200, await response.text()
            answers.append(await response.json())
        assert answers[0] == answers[1]
        assert answers[0]["dead_lettered"] is True
        assert answers[0]["lateness_limit_days"] == 35
        [late_id] = answers[0]["too_late"]

        response = await client.post(PATH, data=timely_call, headers=FORM)
        assert response.status == 202, await response.text()
        [timely_id] = (await response.json())["event_ids"]

        [record] = await read_topic(bootstrap, settings.events_topic, 1)
        assert decode_event(record.value).event_id == timely_id
        ends = await topic_ends(bootstrap, settings.events_topic)
        assert sum(ends.values()) == 1  # the late call never reached crm.events

        dead = await read_topic(bootstrap, settings.dlq_topic, 2)
        assert len(dead) == 2  # each delivery kept, byte for byte but the token
        for letter in dead:
            assert B24_TOKEN.encode() not in letter.value
            assert REDACTED_TOKEN in letter.value
            headers = dict(letter.headers)
            assert headers["reason"] == b"too_late"
            assert headers["origin"] == PATH.encode()
            [problem] = msgspec.json.decode(headers["problems"])
            assert problem["event_id"] == late_id
            assert "SALESPULSE_LATENESS_DAYS" in problem["problem"]
        assert metric_value(metrics, "salespulse_worker_events_too_late_total") == 1
        assert metric_value(metrics, "salespulse_dead_letters_total", reason="too_late") == 2
        assert metric_value(metrics, "salespulse_webhook_events_total", crm="bitrix24") == 1
    finally:
        await client.close()
        await publisher.stop()
