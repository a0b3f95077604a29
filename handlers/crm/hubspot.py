"""HubSpot webhooks (v3 signature, JSON array of events) → enrichment requests, and the
fetched deal (CRM API v3) → canonical events.

A property-change event carries only the one changed property, so deals are always
fetched: amount, owner, pipeline and currency come from the deal, won/lost from the
stage's metadata in the deal pipelines API, and the previous stage from our own state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from handlers.bounded_json import decode_json
from handlers.crm.common import (
    Context,
    EnrichmentRequest,
    EntityState,
    Normalised,
    ascii_int,
    code,
    decimal,
    epoch_ms,
    event_id,
    from_any_time,
    ident,
    make_event,
    unsupported,
)
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import CrmEvent, StageKind

CRM: Final = "hubspot"
MAX_SIGNATURE_AGE_MS: Final = 5 * 60 * 1000
# The deal properties the enrichment reads (deal_currency_code: [U] multi-currency accounts).
DEAL_PROPERTIES: Final = (
    "dealstage",
    "pipeline",
    "amount",
    "deal_currency_code",
    "hubspot_owner_id",
    "createdate",
    "closedate",
)
# HubSpot's v3 rule: these percent-encoded characters are decoded before signing.
_DECODED_IN_URI = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


def signature_uri(uri: str) -> str:
    for encoded, decoded in _DECODED_IN_URI.items():
        uri = uri.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return uri


def called_uris(
    seen: str, path: str, headers: Mapping[str, str], public_url: str | None
) -> list[str]:
    """The URL HubSpot called (it signs it): as we saw it (``seen``: scheme://host), as a
    proxy forwarded it, as configured."""
    uris = [seen + path]
    proto = headers.get("X-Forwarded-Proto")
    host = headers.get("X-Forwarded-Host")
    if proto or host:
        scheme, _, seen_host = seen.partition("://")
        uris.append(f"{proto or scheme}://{host or seen_host}{path}")
    if public_url:
        uris.append(public_url.rstrip("/") + path)
    return uris


def valid_signature(
    *,
    secret: str,
    method: str,
    uris: Iterable[str],
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now_ms: int,
) -> bool:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp)),
    timestamp in ms and at most 5 minutes old. ``uris``: the URLs HubSpot may have called
    (behind a proxy, the configured public URL as well as the one we saw)."""
    # ASCII digits, bounded: "²" passes str.isdigit and 5,000 digits pass int's limit.
    sent_ms = ascii_int(timestamp) if timestamp else None
    if not secret or not timestamp or sent_ms is None or not signature:
        return False
    if abs(now_ms - sent_ms) > MAX_SIGNATURE_AGE_MS:
        return False
    key = secret.encode()
    for uri in uris:
        source = method.encode() + signature_uri(uri).encode() + body + timestamp.encode()
        expected = base64.b64encode(hmac.new(key, source, hashlib.sha256).digest()).decode()
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    return False


def parse(body: bytes) -> list[dict[str, Any]]:
    """The body: a JSON array of event objects (one object is read as an array of one)."""
    try:
        decoded = decode_json(body)
    except msgspec.DecodeError as exc:
        raise InvalidEventError(
            "malformed_payload", [{"problem": f"malformed JSON: {exc}"}]
        ) from None
    events = decoded if isinstance(decoded, list) else [decoded]
    if not events or not all(isinstance(event, dict) for event in events):
        raise unsupported("expected a JSON array of event objects")
    return events


def portals(events: list[dict[str, Any]]) -> set[str]:
    return {str(event.get("portalId")) for event in events}


def normalise(events: list[dict[str, Any]], ctx: Context) -> Normalised:
    """Deal creations and stage changes → enrichment requests; the rest is ignored.

    Amount and owner changes make no event of their own (the canonical event has no
    "amount changed" type): the deal's current amount and owner are read when it is
    created and at every stage change.
    """
    result = Normalised()
    for index, event in enumerate(events):
        # The docs' table calls it eventType; real payloads say subscriptionType.
        kind = str(event.get("subscriptionType") or event.get("eventType") or "")
        prop = event.get("propertyName")
        if kind == "deal.creation" or (kind == "deal.propertyChange" and prop == "dealstage"):
            result.requests.append(_request(event, kind, index, ctx))
        else:
            result.ignored.append(f"{kind}:{prop}" if prop else kind or "unknown")
    return result


def _request(event: dict[str, Any], kind: str, index: int, ctx: Context) -> EnrichmentRequest:
    deal_id = ident(event.get("objectId"))
    portal = ident(event.get("portalId"))
    occurred = event.get("occurredAt")
    if deal_id is None or portal is None or not isinstance(occurred, int):
        raise unsupported(
            "an event needs objectId, portalId and occurredAt (ms)", f"[{index}].objectId"
        )
    value = code(event.get("propertyValue"))
    if kind == "deal.propertyChange" and value is None:
        raise unsupported("a dealstage change needs propertyValue", f"[{index}].propertyValue")
    return EnrichmentRequest(
        crm=CRM,
        tenant=ctx.tenant,
        account=portal,
        event=kind,
        entity="deal",
        entity_id=deal_id,
        received_at=ctx.received_at,
        occurred_ms=occurred,
        value=value,
    )


def stage_kinds(pipelines: Mapping[str, Any]) -> dict[str, dict[str, StageKind]]:
    """GET /crm/v3/pipelines/deals → pipeline id → stage id → kind.

    Closed ("isClosed": "true") with probability 1.0 is won, closed otherwise is lost. [C-ex]
    values are strings; numbers and booleans are read too.
    """
    kinds: dict[str, dict[str, StageKind]] = {}
    for pipeline in pipelines.get("results") or []:
        stages: dict[str, StageKind] = {}
        for stage in pipeline.get("stages") or []:
            metadata = stage.get("metadata") or {}
            closed = str(metadata.get("isClosed", "false")).lower() == "true"
            try:
                probability = float(metadata.get("probability", 0))
            except (TypeError, ValueError):
                probability = 0.0
            stages[str(stage.get("id"))] = (
                ("won" if probability >= 1 else "lost") if closed else "open"
            )
        kinds[str(pipeline.get("id"))] = stages
    return kinds


def deal_events(
    request: EnrichmentRequest,
    deal: Mapping[str, Any],
    *,
    kinds: Mapping[str, Mapping[str, StageKind]],
    state: EntityState | None,
    ctx: Context,
) -> tuple[list[CrmEvent], EntityState | None]:
    """A creation → deal_created + the entry into its stage; a dealstage change → the entry
    into the new stage at occurredAt (the fetched deal may have moved on since)."""
    props = deal.get("properties") or {}
    deal_id = ident(deal.get("id"))
    if deal_id != request.entity_id or request.occurred_ms is None:
        raise unsupported(f"the deal's id {deal_id!r} is not {request.entity_id!r}", "id")
    pipeline = code(props.get("pipeline"))
    currency = code(props.get("deal_currency_code")) or ctx.currency
    common: dict[str, Any] = {
        "tenant": request.tenant,
        "source": CRM,
        "received_at": request.received_at,
        "entity_id": deal_id,
        "pipeline": ctx.naming.pipeline(pipeline),
        "manager_id": ident(props.get("hubspot_owner_id")),
        "amount": decimal(props.get("amount"), "properties.amount"),
        "currency": currency.upper() if currency else None,
    }
    events: list[CrmEvent] = []
    occurred = from_any_time(request.occurred_ms, "occurredAt")
    assert occurred is not None  # narrowing: occurred_ms is a positive int
    if request.event == "deal.creation":
        created = from_any_time(props.get("createdate"), "properties.createdate") or occurred
        events.append(
            make_event(
                event_id=event_id(CRM, request.account, "deal", deal_id, "created"),
                type="deal_created",
                occurred_at=created,
                **common,
            )
        )
        if state is not None:  # a stage change got here first; its entry stands
            return events, None
        stage, at = code(props.get("dealstage")), created
    else:
        stage, at = request.value, occurred
    if stage is None:
        raise unsupported("the deal has no dealstage", "properties.dealstage")
    at_ms = epoch_ms(at)
    events.append(
        make_event(
            event_id=event_id(CRM, request.account, "deal", deal_id, "stage", stage, at_ms),
            type="deal_stage_changed",
            occurred_at=at,
            stage_from=ctx.naming.stage(state.stage)
            if state and state.at_ms < at_ms and state.stage != stage
            else None,
            stage_to=ctx.naming.stage(stage),
            stage_kind=_kind(kinds, pipeline, stage),
            **common,
        )
    )
    # Events arrive unordered: an older change is counted but does not rewind the state.
    newer = state is None or at_ms > state.at_ms
    return events, EntityState(stage=stage, pipeline=pipeline, at_ms=at_ms) if newer else None


def _kind(
    kinds: Mapping[str, Mapping[str, StageKind]], pipeline: str | None, stage: str
) -> StageKind:
    """The stage in the deal's pipeline; else wherever it is (the deal may have moved)."""
    own = kinds.get(pipeline) if pipeline is not None else None
    if own is not None and stage in own:
        return own[stage]
    for stages in kinds.values():
        if stage in stages:
            return stages[stage]
    return "open"


def known_stage(kinds: Mapping[str, Mapping[str, StageKind]], stage: str | None) -> bool:
    return stage is None or any(stage in stages for stages in kinds.values())
