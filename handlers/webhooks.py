"""CRM webhooks: verify the sender → parse → publish (acks=all) → answer.

    POST /v1/webhooks/bitrix24/{tenant}
    POST /v1/webhooks/amocrm/{tenant}/{secret}
    POST /v1/webhooks/hubspot/{tenant}
    POST /v1/webhooks/pipedrive/{tenant}

Answers: 202 once the broker has the canonical events and enrichment requests; 200
``{"ignored": [...]}`` when nothing in the body is used (a CRM would retry a 4xx); 401
with one generic message whatever failed; 4xx with the problems and a raw copy on the
dead-letter topic for a body we cannot read or use; 503 + Retry-After when the broker
did not acknowledge. Bodies, names, phones and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from handlers.crm import amocrm, bitrix24, hubspot, pipedrive
from handlers.crm.common import CrmName, Normalised, encode_request
from handlers.crm.forms import parse_form
from handlers.crm.sources import check_secrets, context_for, reveal
from handlers.publisher import EventPublisher
from handlers.responses import (
    DEAD_LETTER_PREFIX_BYTES,
    broker_unavailable,
    is_json,
    json_response,
    read_body,
    unauthorized,
)
from metrics.pipeline import PipelineMetrics
from salespulse.errors import BrokerUnavailableError, InvalidEventError
from salespulse.events import encode_event
from salespulse.settings import Settings
from salespulse.tenants import (
    AmoCrmSource,
    Bitrix24Source,
    HubSpotSource,
    PipedriveSource,
    Secret,
    TenantConfig,
    TenantDirectory,
    TenantsFileError,
)

logger = logging.getLogger(__name__)

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FORM = "application/x-www-form-urlencoded"
_STATUS_BY_REASON = {
    "malformed_payload": 400,
    "unsupported_payload": 422,
    "body_too_large": 413,
    "unsupported_media_type": 415,
}


class WebhookPublisher(EventPublisher, Protocol):
    """The ingest's publisher, plus records bound for several topics (events, raw)."""

    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None: ...


@dataclass(frozen=True)
class WebhookOptions:
    events_topic: str
    raw_topic: str
    max_body_bytes: int
    # The public base URL the CRMs call (https://hooks.example.com): HubSpot signs it.
    public_url: str | None = None
    # amoCRM counts an answer slower than 2 s as a failure.
    amocrm_deadline_s: float = 1.5


class WebhookHandler:
    """Holds the webhooks' collaborators; ``routes()`` wires them into an aiohttp app."""

    def __init__(
        self,
        publisher: WebhookPublisher,
        metrics: PipelineMetrics,
        tenants: TenantDirectory,
        options: WebhookOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_secrets(tenants)
        self._publisher = publisher
        self._metrics = metrics
        self._tenants = tenants
        self._options = options
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/webhooks/bitrix24/{tenant}", self.bitrix24),
            web.post("/v1/webhooks/amocrm/{tenant}/{secret}", self.amocrm),
            web.post("/v1/webhooks/hubspot/{tenant}", self.hubspot),
            web.post("/v1/webhooks/pipedrive/{tenant}", self.pipedrive),
        ]

    async def bitrix24(self, request: web.Request) -> web.Response:
        crm: CrmName = "bitrix24"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.bitrix24 if config else None
        if not isinstance(source, Bitrix24Source) or config is None:
            return self._unauthorized(crm)
        body, too_large = await read_body(request, self._options.max_body_bytes)
        origin = f"/v1/webhooks/bitrix24/{tenant}"
        try:
            _check_envelope(request, too_large, self._options.max_body_bytes, form=True)
            form = parse_form(body)
        except InvalidEventError as exc:
            return await self._reject(crm, body, exc, origin)
        # The token travels in the body, so the form is read before the sender is known.
        token = self._secret(source.application_token, crm, tenant)
        if token is None or not bitrix24.authentic(
            form, token, member_id=source.member_id, domain=source.domain
        ):
            return self._unauthorized(crm)
        return await self._accept(
            crm,
            body,
            origin,
            lambda: bitrix24.normalise(form, tenant=tenant, received_at=received_at),
        )

    async def amocrm(self, request: web.Request) -> web.Response:
        crm: CrmName = "amocrm"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.amocrm if config else None
        sent = request.match_info.get("secret", "")
        if not isinstance(source, AmoCrmSource) or config is None:
            return self._unauthorized(crm)
        secret = self._secret(source.url_secret, crm, tenant)
        if secret is None or not amocrm.authentic_url_secret(sent, secret):
            return self._unauthorized(crm)
        try:
            # amoCRM switches a webhook off after many slow or failed answers: a late
            # broker gets a fast 503 (a retry is deduplicated) instead of a slow 2xx.
            async with asyncio.timeout(self._options.amocrm_deadline_s):
                return await self._amocrm(request, tenant, config, source, received_at)
        except TimeoutError:
            logger.warning("amocrm webhook for %s: broker too slow, answered 503", tenant)
            self._metrics.broker_unavailable.inc()
            return broker_unavailable()

    async def _amocrm(
        self,
        request: web.Request,
        tenant: str,
        config: TenantConfig,
        source: AmoCrmSource,
        received_at: datetime,
    ) -> web.Response:
        crm: CrmName = "amocrm"
        body, too_large = await read_body(request, self._options.max_body_bytes)
        origin = f"/v1/webhooks/amocrm/{tenant}"  # never the secret
        try:
            _check_envelope(request, too_large, self._options.max_body_bytes, form=True)
            form = parse_form(body)
        except InvalidEventError as exc:
            return await self._reject(crm, body, exc, origin)
        if not amocrm.authentic_account(form, source.account_id):
            return self._unauthorized(crm)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._accept(
            crm, body, origin, lambda: amocrm.normalise(form, ctx, str(source.account_id))
        )

    async def hubspot(self, request: web.Request) -> web.Response:
        crm: CrmName = "hubspot"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.hubspot if config else None
        if not isinstance(source, HubSpotSource) or config is None:
            return self._unauthorized(crm)
        body, too_large = await read_body(request, self._options.max_body_bytes)
        origin = f"/v1/webhooks/hubspot/{tenant}"
        secret = self._secret(source.client_secret, crm, tenant)
        if secret is None:
            return self._unauthorized(crm)
        signed = not too_large and hubspot.valid_signature(
            secret=secret,
            method=request.method,
            uris=self._called_uris(request),
            body=body,
            timestamp=request.headers.get("X-HubSpot-Request-Timestamp"),
            signature=request.headers.get("X-HubSpot-Signature-v3"),
            now_ms=int(self._clock() * 1000),
        )
        if not signed and not too_large:
            return self._unauthorized(crm)
        try:
            _check_envelope(request, too_large, self._options.max_body_bytes, form=False)
            events = hubspot.parse(body)
        except InvalidEventError as exc:
            return await self._reject(crm, body, exc, origin)
        if source.portal_id is not None and hubspot.portals(events) != {str(source.portal_id)}:
            return self._unauthorized(crm)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._accept(crm, body, origin, lambda: hubspot.normalise(events, ctx))

    async def pipedrive(self, request: web.Request) -> web.Response:
        crm: CrmName = "pipedrive"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.pipedrive if config else None
        if not isinstance(source, PipedriveSource) or config is None:
            return self._unauthorized(crm, basic=True)
        header = request.headers.get("Authorization")
        password = self._secret(source.password, crm, tenant)
        if password is None or not pipedrive.authentic(header, source.username, password):
            return self._unauthorized(crm, basic=True)
        body, too_large = await read_body(request, self._options.max_body_bytes)
        origin = f"/v1/webhooks/pipedrive/{tenant}"
        try:
            _check_envelope(request, too_large, self._options.max_body_bytes, form=False)
            change = pipedrive.view(pipedrive.parse(body))
        except InvalidEventError as exc:
            return await self._reject(crm, body, exc, origin)
        if source.company_id is not None and change.company != str(source.company_id):
            return self._unauthorized(crm, basic=True)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._accept(crm, body, origin, lambda: pipedrive.normalise(change, ctx))

    def _begin(
        self, request: web.Request, crm: CrmName
    ) -> tuple[str, TenantConfig | None, datetime]:
        self._metrics.webhooks_received.labels(crm=crm).inc()
        tenant = request.match_info["tenant"]
        config = self._tenants.get(tenant) if _TENANT.match(tenant) else None
        return tenant, config, datetime.fromtimestamp(self._clock(), UTC)

    def _secret(self, secret: Secret, crm: CrmName, tenant: str) -> str | None:
        """The secret's value, or None (logged by where it should be, never its value)."""
        try:
            return reveal(secret)
        except TenantsFileError:
            logger.exception("%s webhook for %s: secret unavailable", crm, tenant)
            return None

    def _called_uris(self, request: web.Request) -> list[str]:
        """The URL HubSpot called, as we saw it, as a proxy forwarded it, as configured."""
        path = request.raw_path
        uris = [f"{request.scheme}://{request.host}{path}"]
        proto = request.headers.get("X-Forwarded-Proto")
        host = request.headers.get("X-Forwarded-Host")
        if proto or host:
            uris.append(f"{proto or request.scheme}://{host or request.host}{path}")
        if self._options.public_url:
            uris.append(self._options.public_url.rstrip("/") + path)
        return uris

    async def _accept(
        self, crm: CrmName, body: bytes, origin: str, normalise: Callable[[], Normalised]
    ) -> web.Response:
        try:
            result = normalise()
        except InvalidEventError as exc:
            return await self._reject(crm, body, exc, origin)
        records = [
            (self._options.events_topic, event.partition_key, encode_event(event))
            for event in result.events
        ] + [(self._options.raw_topic, item.key, encode_request(item)) for item in result.requests]
        if records:
            try:
                await self._publisher.publish_records(records)
            except BrokerUnavailableError:
                self._metrics.broker_unavailable.inc()
                return broker_unavailable()
        self._metrics.webhook_events.labels(crm=crm).inc(len(result.events))
        if result.requests:
            self._metrics.webhook_enrichment_queued.labels(crm=crm).inc(len(result.requests))
        if result.ignored:
            self._metrics.webhooks_ignored.labels(crm=crm).inc(len(result.ignored))
            logger.debug("%s: ignored %s", origin, sorted(set(result.ignored)))
        ignored = sorted(set(result.ignored))
        if not records:
            return json_response(200, {"ignored": ignored})
        return json_response(
            202,
            {
                "accepted": len(result.events),
                "event_ids": [event.event_id for event in result.events],
                "queued": len(result.requests),
                "ignored": ignored,
            },
        )

    async def _reject(
        self, crm: CrmName, body: bytes, error: InvalidEventError, origin: str
    ) -> web.Response:
        raw = body[:DEAD_LETTER_PREFIX_BYTES] if error.reason == "body_too_large" else body
        try:
            await self._publisher.publish_dead_letter(
                raw, reason=error.reason, problems=error.problems, origin=origin
            )
        except BrokerUnavailableError:
            self._metrics.broker_unavailable.inc()
            return broker_unavailable()
        self._metrics.webhooks_rejected.labels(crm=crm, reason=error.reason).inc()
        logger.info("rejected webhook %s: %s (%d bytes)", origin, error.reason, len(body))
        return json_response(
            _STATUS_BY_REASON[error.reason],
            {"error": error.reason, "problems": error.problems, "dead_lettered": True},
        )

    def _unauthorized(self, crm: CrmName, *, basic: bool = False) -> web.Response:
        """One answer for every failed check: no hint which one failed."""
        self._metrics.webhooks_unauthorized.labels(crm=crm).inc()
        return unauthorized(basic=basic)


def build_webhooks(
    settings: Settings,
    tenants: TenantDirectory,
    publisher: WebhookPublisher,
    metrics: PipelineMetrics,
) -> WebhookHandler:
    """The CRM webhooks as the ingest role serves them."""
    options = WebhookOptions(
        events_topic=settings.events_topic,
        raw_topic=settings.raw_topic,
        max_body_bytes=settings.max_body_bytes,
        public_url=settings.webhook_public_url,
        amocrm_deadline_s=settings.amocrm_answer_deadline_s,
    )
    return WebhookHandler(publisher, metrics, tenants, options)


def _check_envelope(request: web.Request, too_large: bool, limit: int, *, form: bool) -> None:
    if too_large:
        raise InvalidEventError("body_too_large", [{"problem": f"body exceeds {limit} bytes"}])
    content_type = request.content_type
    ok = content_type == _FORM if form else is_json(content_type)
    if not ok:
        expected = _FORM if form else "application/json"
        raise InvalidEventError(
            "unsupported_media_type",
            [{"problem": f"Content-Type must be {expected}, got {content_type or 'none'!r}"}],
        )
