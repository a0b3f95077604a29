"""HubSpot: signature v3, the event array, pipeline metadata and the fetched deal."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from handlers.crm import hubspot
from handlers.crm.common import Context, EnrichmentRequest, EntityState, Naming
from salespulse.core.errors import InvalidEventError
from tests.crm.support import HUBSPOT_PORTAL, payload, payload_json

SECRET = "hs-client-secret-1a2b3c"  # noqa: S105 - test data
URI = "https://hooks.example.com/v1/webhooks/hubspot/acme"
NOW_MS = 1782371972501
RECEIVED = datetime(2026, 6, 25, 7, 19, 33, tzinfo=UTC)
CTX = Context(tenant="acme", received_at=RECEIVED, currency="USD")


def sign(body: bytes, uri: str = URI, timestamp: int = NOW_MS, secret: str = SECRET) -> str:
    source = b"POST" + uri.encode() + body + str(timestamp).encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def valid(
    body: bytes, signature: str, *, timestamp: int = NOW_MS, uris: list[str] | None = None
) -> bool:
    return hubspot.valid_signature(
        secret=SECRET,
        method="POST",
        uris=uris or [URI],
        body=body,
        timestamp=str(timestamp),
        signature=signature,
        now_ms=NOW_MS,
    )


def test_a_signed_body_is_valid_and_any_change_breaks_it() -> None:
    body = payload("hubspot_deal_stage.json")
    signature = sign(body)
    assert valid(body, signature)
    assert not valid(body + b" ", signature)
    assert not valid(body, sign(body, secret="other"))  # noqa: S106 - test data
    assert not valid(body, sign(body, uri=URI + "x"))
    assert not valid(body, "")


def test_the_timestamp_window_is_five_minutes() -> None:
    body = payload("hubspot_deal_stage.json")
    old = NOW_MS - 5 * 60 * 1000 - 1
    assert not valid(body, sign(body, timestamp=old), timestamp=old)
    recent = NOW_MS - 4 * 60 * 1000
    assert valid(body, sign(body, timestamp=recent), timestamp=recent)
    assert not hubspot.valid_signature(
        secret=SECRET,
        method="POST",
        uris=[URI],
        body=body,
        timestamp="not-a-number",
        signature=sign(body),
        now_ms=NOW_MS,
    )


def test_the_uri_as_hubspot_signed_it_decodes_some_characters_first() -> None:
    body = payload("hubspot_deal_stage.json")
    called = URI + "?source=crm%3Ahubspot%2Cv3"
    signature = sign(body, uri=URI + "?source=crm:hubspot,v3")
    assert valid(body, signature, uris=[called])
    # Behind a proxy: the URL as we saw it fails, the configured public one matches.
    assert valid(body, sign(body), uris=["http://10.0.0.5:8080/v1/webhooks/hubspot/acme", URI])


def test_deal_creations_and_stage_changes_are_queued_the_rest_ignored() -> None:
    result = hubspot.normalise(hubspot.parse(payload("hubspot_mixed.json")), CTX)
    [stage] = result.requests
    # "eventType" (the docs' table) is read as well as "subscriptionType".
    assert (stage.event, stage.entity_id, stage.value) == (
        "deal.propertyChange",
        "332507367157",
        "1f4f1ec1-8174-4c5a-9bb3-5d9fb4d5a1e2",
    )
    assert stage.account == str(HUBSPOT_PORTAL)
    assert stage.occurred_ms == 1782371982000
    assert sorted(result.ignored) == ["contact.creation", "deal.propertyChange:amount"]
    creation = hubspot.normalise(hubspot.parse(payload("hubspot_deal_creation.json")), CTX)
    assert creation.requests[0].event == "deal.creation"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[{", "malformed_payload"),
        (b"[]", "unsupported_payload"),
        (b"[1, 2]", "unsupported_payload"),
        (b'[{"subscriptionType": "deal.creation", "portalId": 1}]', "unsupported_payload"),
        (
            b'[{"subscriptionType": "deal.propertyChange", "propertyName": "dealstage",'
            b' "portalId": 1, "objectId": 5, "occurredAt": 1782371972438}]',
            "unsupported_payload",
        ),
    ],
)
def test_bodies_we_cannot_use(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        hubspot.normalise(hubspot.parse(body), CTX)
    assert caught.value.reason == reason


KINDS = hubspot.stage_kinds(payload_json("hubspot_rest_pipelines.json"))


def test_won_and_lost_from_pipeline_stage_metadata() -> None:
    assert KINDS["default"]["closedwon"] == "won"
    assert KINDS["default"]["closedlost"] == "lost"
    assert KINDS["default"]["contractsent"] == "open"
    assert KINDS["75302811"]["150912337"] == "won"
    assert KINDS["75302811"]["150912338"] == "lost"
    numeric = {
        "results": [
            {"id": "p", "stages": [{"id": "s", "metadata": {"isClosed": True, "probability": 1}}]}
        ]
    }
    assert hubspot.stage_kinds(numeric) == {"p": {"s": "won"}}


def stage_request(value: str = "closedwon", occurred_ms: int = 1782371972438) -> EnrichmentRequest:
    return EnrichmentRequest(
        crm="hubspot",
        tenant="acme",
        account=str(HUBSPOT_PORTAL),
        event="deal.propertyChange",
        entity="deal",
        entity_id="332507367156",
        received_at=RECEIVED,
        occurred_ms=occurred_ms,
        value=value,
    )


def deal(**properties: Any) -> dict[str, Any]:
    record: dict[str, Any] = payload_json("hubspot_rest_deal.json")
    return {**record, "properties": {**record["properties"], **properties}}


def test_a_stage_change_to_closedwon_with_amount_owner_and_previous_stage() -> None:
    state = EntityState(stage="contractsent", pipeline="default", at_ms=1782300000000)
    events, new = hubspot.deal_events(stage_request(), deal(), kinds=KINDS, state=state, ctx=CTX)
    [won] = events
    assert (won.stage_from, won.stage_to, won.stage_kind) == ("contractsent", "closedwon", "won")
    assert (won.amount, won.currency, won.manager_id) == (Decimal("1500.00"), "EUR", "81234567")
    assert won.occurred_at == datetime.fromtimestamp(1782371972.438, UTC)
    assert won.event_id == "hubspot:48975575:deal:332507367156:stage:closedwon:1782371972438"
    assert new == EntityState(stage="closedwon", pipeline="default", at_ms=1782371972438)


def test_an_older_stage_change_counts_but_does_not_rewind_the_state() -> None:
    state = EntityState(stage="closedwon", pipeline="default", at_ms=1782371972438)
    events, new = hubspot.deal_events(
        stage_request("contractsent", 1782300000000), deal(), kinds=KINDS, state=state, ctx=CTX
    )
    assert events[0].stage_from is None
    assert new is None


def test_a_creation_is_created_plus_the_entry_into_its_stage() -> None:
    creation = EnrichmentRequest(
        crm="hubspot",
        tenant="acme",
        account=str(HUBSPOT_PORTAL),
        event="deal.creation",
        entity="deal",
        entity_id="332507367156",
        received_at=RECEIVED,
        occurred_ms=1782371000000,
    )
    events, state = hubspot.deal_events(
        creation,
        deal(dealstage="appointmentscheduled", deal_currency_code="", amount=""),
        kinds=KINDS,
        state=None,
        ctx=CTX.__class__(tenant="acme", received_at=RECEIVED, currency="USD", naming=Naming()),
    )
    created, entry = events
    assert created.type == "deal_created"
    assert created.occurred_at == datetime(2026, 6, 20, 9, 0, tzinfo=UTC)  # createdate
    assert (entry.stage_to, entry.stage_kind, entry.amount, entry.currency) == (
        "appointmentscheduled",
        "open",
        None,
        "USD",
    )
    assert state is not None
    # A stage change processed first keeps its entry; the creation adds only itself.
    again, unchanged = hubspot.deal_events(creation, deal(), kinds=KINDS, state=state, ctx=CTX)
    assert [e.type for e in again] == ["deal_created"]
    assert unchanged is None


def test_a_stage_unknown_to_every_pipeline_is_open() -> None:
    events, _ = hubspot.deal_events(
        stage_request("brand-new-stage"), deal(), kinds=KINDS, state=None, ctx=CTX
    )
    assert events[0].stage_kind == "open"
