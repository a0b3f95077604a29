"""CRM webhooks: verify the sender → parse → publish (acks=all) → answer.

    POST /v1/webhooks/bitrix24/{tenant}
    POST /v1/webhooks/amocrm/{tenant}/{secret}
    POST /v1/webhooks/hubspot/{tenant}
    POST /v1/webhooks/pipedrive/{tenant}

Here each CRM's sender is verified and its body read and normalised; what the body then
becomes and what the CRM is answered (202 published, 200 ignored, too late: dead-lettered
and 2xx, 4xx with a dead-letter copy, 503 for a retry) is handlers/webhook_outcomes.py.
401 with one generic message whatever failed; 4xx without a copy, counted, for a body
whose sender cannot be verified (too large to check, or the token inside an unreadable
form); 408 for a body that does not arrive in time.
Bodies, names, phones and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from handlers.crm import amocrm, bitrix24, hubspot, pipedrive
from handlers.crm.common import CrmName
from handlers.crm.forms import parse_form
from handlers.crm.sources import check_secrets, context_for, reveal
from handlers.webhook_outcomes import WebhookOutcomes, WebhookPublisher
from salespulse.core.errors import InvalidEventError
from salespulse.core.json_responses import (
    BodyTimeoutError,
    body_timeout,
    broker_unavailable,
    check_envelope,
    read_body,
    too_large_error,
)
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import (
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


@dataclass(frozen=True)
class WebhookOptions:
    events_topic: str
    raw_topic: str
    max_body_bytes: int
    # The public base URL the CRMs call (https://hooks.example.com): HubSpot signs it.
    public_url: str | None = None
    # amoCRM counts an answer slower than 2 s as a failure.
    amocrm_deadline_s: float = 1.5
    # A body that takes longer to arrive is answered 408 and its connection closed.
    body_timeout_s: float = 30.0
    # SALESPULSE_LATENESS_DAYS in seconds: older events are dead-lettered at the door.
    lateness_s: float | None = None


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
        self._outcomes = WebhookOutcomes(
            publisher,
            metrics,
            events_topic=options.events_topic,
            raw_topic=options.raw_topic,
            lateness_s=options.lateness_s,
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/webhooks/bitrix24/{tenant}", self._timed("bitrix24", self.bitrix24)),
            web.post("/v1/webhooks/amocrm/{tenant}/{secret}", self._timed("amocrm", self.amocrm)),
            web.post("/v1/webhooks/hubspot/{tenant}", self._timed("hubspot", self.hubspot)),
            web.post("/v1/webhooks/pipedrive/{tenant}", self._timed("pipedrive", self.pipedrive)),
        ]

    def _timed(
        self, crm: CrmName, handler: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``handler``, answering 408 (and closing) when its body is too slow to arrive."""

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BodyTimeoutError as exc:
                # Nothing whole was received: nothing to keep; the CRM retries.
                self._metrics.webhooks_discarded.labels(crm=crm, reason="body_read_timeout").inc()
                return await body_timeout(request, exc)

        return handle

    async def bitrix24(self, request: web.Request) -> web.Response:
        crm: CrmName = "bitrix24"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.bitrix24 if config else None
        if not isinstance(source, Bitrix24Source) or config is None:
            return self._outcomes.unauthorized(crm)
        body, too_large = await self._read(request)
        # The token travels in the body: the form is read (bounded) before the sender is
        # known, and a body that cannot be read that far is answered without being kept.
        if too_large:
            return self._outcomes.discard(crm, too_large_error(self._options.max_body_bytes))
        try:
            form = parse_form(body)
        except InvalidEventError as exc:
            return self._outcomes.discard(crm, exc)
        token = self._secret(source.application_token, crm, tenant)
        if token is None or not bitrix24.authentic(
            form, token, member_id=source.member_id, domain=source.domain
        ):
            return self._outcomes.unauthorized(crm)
        origin = f"/v1/webhooks/bitrix24/{tenant}"
        try:
            check_envelope(request, False, self._options.max_body_bytes, form=True)
        except InvalidEventError as exc:
            return await self._outcomes.reject(crm, body, exc, origin, source)
        return await self._outcomes.accept(
            request,
            crm,
            body,
            origin,
            source,
            lambda: bitrix24.normalise(form, tenant=tenant, received_at=received_at),
        )

    async def amocrm(self, request: web.Request) -> web.Response:
        crm: CrmName = "amocrm"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.amocrm if config else None
        sent = request.match_info.get("secret", "")
        if not isinstance(source, AmoCrmSource) or config is None:
            return self._outcomes.unauthorized(crm)
        secret = self._secret(source.url_secret, crm, tenant)
        if secret is None or not amocrm.authentic_url_secret(sent, secret):
            return self._outcomes.unauthorized(crm)
        # Read before the deadline: a slow body is the sender's delay (408), not the broker's.
        body, too_large = await self._read(request)
        try:
            # amoCRM switches a webhook off after many slow or failed answers: a late
            # broker gets a fast 503 (a retry is deduplicated) instead of a slow 2xx.
            async with asyncio.timeout(self._options.amocrm_deadline_s):
                return await self._amocrm(
                    request, tenant, config, source, received_at, body, too_large
                )
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
        body: bytes,
        too_large: bool,
    ) -> web.Response:
        crm: CrmName = "amocrm"
        origin = f"/v1/webhooks/amocrm/{tenant}"  # never the secret
        try:
            check_envelope(request, too_large, self._options.max_body_bytes, form=True)
            form = parse_form(body)
        except InvalidEventError as exc:
            return await self._outcomes.reject(crm, body, exc, origin, source)
        if not amocrm.authentic_account(form, source.account_id):
            return self._outcomes.unauthorized(crm)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._outcomes.accept(
            request,
            crm,
            body,
            origin,
            source,
            lambda: amocrm.normalise(form, ctx, str(source.account_id)),
        )

    async def hubspot(self, request: web.Request) -> web.Response:
        crm: CrmName = "hubspot"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.hubspot if config else None
        if not isinstance(source, HubSpotSource) or config is None:
            return self._outcomes.unauthorized(crm)
        body, too_large = await self._read(request)
        if too_large:
            # The signature covers the whole body, which is not read: it cannot be checked.
            return self._outcomes.discard(crm, too_large_error(self._options.max_body_bytes))
        origin = f"/v1/webhooks/hubspot/{tenant}"
        secret = self._secret(source.client_secret, crm, tenant)
        if secret is None:
            return self._outcomes.unauthorized(crm)
        signed = hubspot.valid_signature(
            secret=secret,
            method=request.method,
            uris=hubspot.called_uris(
                f"{request.scheme}://{request.host}",
                request.raw_path,
                request.headers,
                self._options.public_url,
            ),
            body=body,
            timestamp=request.headers.get("X-HubSpot-Request-Timestamp"),
            signature=request.headers.get("X-HubSpot-Signature-v3"),
            now_ms=int(self._clock() * 1000),
        )
        if not signed:
            return self._outcomes.unauthorized(crm)
        try:
            check_envelope(request, False, self._options.max_body_bytes, form=False)
            events = hubspot.parse(body)
        except InvalidEventError as exc:
            return await self._outcomes.reject(crm, body, exc, origin, source)
        if source.portal_id is not None and hubspot.portals(events) != {str(source.portal_id)}:
            return self._outcomes.unauthorized(crm)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._outcomes.accept(
            request, crm, body, origin, source, lambda: hubspot.normalise(events, ctx)
        )

    async def pipedrive(self, request: web.Request) -> web.Response:
        crm: CrmName = "pipedrive"
        tenant, config, received_at = self._begin(request, crm)
        source = config.crm.pipedrive if config else None
        if not isinstance(source, PipedriveSource) or config is None:
            return self._outcomes.unauthorized(crm, basic=True)
        header = request.headers.get("Authorization")
        password = self._secret(source.password, crm, tenant)
        if password is None or not pipedrive.authentic(header, source.username, password):
            return self._outcomes.unauthorized(crm, basic=True)
        body, too_large = await self._read(request)
        origin = f"/v1/webhooks/pipedrive/{tenant}"
        try:
            check_envelope(request, too_large, self._options.max_body_bytes, form=False)
            change = pipedrive.view(pipedrive.parse(body))
        except InvalidEventError as exc:
            return await self._outcomes.reject(crm, body, exc, origin, source)
        if source.company_id is not None and change.company != str(source.company_id):
            return self._outcomes.unauthorized(crm, basic=True)
        ctx = context_for(crm, tenant, config, received_at)
        return await self._outcomes.accept(
            request, crm, body, origin, source, lambda: pipedrive.normalise(change, ctx)
        )

    def _begin(
        self, request: web.Request, crm: CrmName
    ) -> tuple[str, TenantConfig | None, datetime]:
        self._metrics.webhooks_received.labels(crm=crm).inc()
        tenant = request.match_info["tenant"]
        config = self._tenants.get(tenant) if _TENANT.match(tenant) else None
        return tenant, config, datetime.fromtimestamp(self._clock(), UTC)

    async def _read(self, request: web.Request) -> tuple[bytes, bool]:
        """(body, too_large); raises BodyTimeoutError (answered 408 by ``_timed``)."""
        return await read_body(request, self._options.max_body_bytes, self._options.body_timeout_s)

    def _secret(self, secret: Secret, crm: CrmName, tenant: str) -> str | None:
        """The secret's value, or None (logged by where it should be, never its value)."""
        try:
            return reveal(secret)
        except TenantsFileError:
            logger.exception("%s webhook for %s: secret unavailable", crm, tenant)
            return None


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
        body_timeout_s=settings.body_read_timeout_s,
        lateness_s=settings.lateness_days * 86_400,
    )
    return WebhookHandler(publisher, metrics, tenants, options)
