"""What a verified CRM webhook body becomes, and what the CRM is answered.

* used: its canonical events and enrichment requests published (acks=all), 202;
* nothing used: 200 ``{"ignored": [...]}`` (a CRM would retry a 4xx);
* events too late to count (handlers/too_late.py): the body dead-lettered instead of
  publishing them, each counted once, and still a 2xx, so the CRM stops resending;
* unusable: 4xx with the problems, the body on the dead-letter topic;
* a sender that cannot be verified: 4xx, counted, nothing kept; 401 alike for every
  failed check;
* a broker that did not acknowledge: 503 + Retry-After, so the CRM retries.

Dead letters never keep the sender's credentials (handlers/redaction.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from aiohttp import web

from handlers.crm.common import CrmName, Normalised, encode_request
from handlers.crm.sources import secret_values
from handlers.http_ingest import is_backfill
from handlers.redaction import redact
from handlers.too_late import LateDoor
from salespulse.core.errors import BrokerUnavailableError, InvalidEventError
from salespulse.core.events import CrmEvent, encode_event
from salespulse.core.json_responses import (
    DEAD_LETTER_PREFIX_BYTES,
    broker_unavailable,
    json_response,
    unauthorized,
)
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.tenants import CrmSource

logger = logging.getLogger(__name__)

_STATUS_BY_REASON = {
    "malformed_payload": 400,
    "unsupported_payload": 422,
    "body_too_large": 413,
    "unsupported_media_type": 415,
}


class WebhookPublisher(EventPublisher, Protocol):
    """The ingest's publisher, plus records bound for several topics (events, raw)."""

    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None: ...


class WebhookOutcomes:
    def __init__(
        self,
        publisher: WebhookPublisher,
        metrics: PipelineMetrics,
        *,
        events_topic: str,
        raw_topic: str,
        lateness_s: float | None,
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._events_topic = events_topic
        self._raw_topic = raw_topic
        self._late = LateDoor(lateness_s)

    async def accept(
        self,
        request: web.Request,
        crm: CrmName,
        body: bytes,
        origin: str,
        source: CrmSource,
        normalise: Callable[[], Normalised],
    ) -> web.Response:
        try:
            result = normalise()
        except InvalidEventError as exc:
            return await self.reject(crm, body, exc, origin, source)
        events, late = self._late.split(result.events)
        requests = result.requests
        if is_backfill(request):  # recorded deliveries replayed: history, nobody waits now
            events = [msgspec.structs.replace(event, backfill=True) for event in events]
            requests = [msgspec.structs.replace(item, backfill=True) for item in requests]
        if late and (refused := await self._dead_letter_late(crm, body, late, origin, source)):
            return refused
        records = [
            (self._events_topic, event.partition_key, encode_event(event)) for event in events
        ] + [(self._raw_topic, item.key, encode_request(item)) for item in requests]
        if records:
            try:
                await self._publisher.publish_records(records)
            except BrokerUnavailableError:
                self._metrics.broker_unavailable.inc()
                return broker_unavailable()
        self._metrics.webhook_events.labels(crm=crm).inc(len(events))
        if result.requests:
            self._metrics.webhook_enrichment_queued.labels(crm=crm).inc(len(result.requests))
        if result.ignored:
            self._metrics.webhooks_ignored.labels(crm=crm).inc(len(result.ignored))
            logger.debug("%s: ignored %s", origin, sorted(set(result.ignored)))
        ignored = sorted(set(result.ignored))
        too_late = self._late.answer(late)
        if not records:
            return json_response(200, {"ignored": ignored, **too_late})
        return json_response(
            202,
            {
                "accepted": len(events),
                "event_ids": [event.event_id for event in events],
                "queued": len(result.requests),
                "ignored": ignored,
                **too_late,
            },
        )

    async def _dead_letter_late(
        self, crm: CrmName, body: bytes, late: list[CrmEvent], origin: str, source: CrmSource
    ) -> web.Response | None:
        """The body of too-late events to the dead-letter topic, each event counted once;
        None when done, else the 503 asking for a retry (nothing was published yet)."""
        error = InvalidEventError("too_late", self._late.problems(late))
        if unavailable := await self._dead_letter(crm, body, error, origin, source):
            return unavailable
        self._metrics.dead_letters.labels(reason="too_late").inc()
        self._metrics.events_too_late.inc(self._late.first_seen(late))
        logger.info("webhook %s: %d events too late, dead-lettered", origin, len(late))
        return None

    async def reject(
        self, crm: CrmName, body: bytes, error: InvalidEventError, origin: str, source: CrmSource
    ) -> web.Response:
        """A verified sender's body we cannot use: 4xx, kept on the dead-letter topic."""
        raw = body[:DEAD_LETTER_PREFIX_BYTES] if error.reason == "body_too_large" else body
        if unavailable := await self._dead_letter(crm, raw, error, origin, source):
            return unavailable
        self._metrics.webhooks_rejected.labels(crm=crm, reason=error.reason).inc()
        logger.info("rejected webhook %s: %s (%d bytes)", origin, error.reason, len(body))
        return json_response(
            _STATUS_BY_REASON[error.reason],
            {"error": error.reason, "problems": error.problems, "dead_lettered": True},
        )

    async def _dead_letter(
        self, crm: CrmName, raw: bytes, error: InvalidEventError, origin: str, source: CrmSource
    ) -> web.Response | None:
        """``raw`` on the dead-letter topic, credentials redacted; None when the broker has
        it, else the 503 that asks the CRM to retry."""
        try:
            await self._publisher.publish_dead_letter(
                redact(crm, raw, secret_values(source)),
                reason=error.reason,
                problems=error.problems,
                origin=origin,
            )
        except BrokerUnavailableError:
            self._metrics.broker_unavailable.inc()
            return broker_unavailable()
        return None

    def discard(self, crm: CrmName, error: InvalidEventError) -> web.Response:
        """A body whose sender could not be verified: 4xx and counted, never kept (anyone
        could fill the dead-letter topic, and the disk spool in a broker outage)."""
        self._metrics.webhooks_discarded.labels(crm=crm, reason=error.reason).inc()
        return json_response(
            _STATUS_BY_REASON[error.reason],
            {"error": error.reason, "problems": error.problems, "dead_lettered": False},
        )

    def unauthorized(self, crm: CrmName, *, basic: bool = False) -> web.Response:
        """One answer for every failed check: no hint which one failed."""
        self._metrics.webhooks_unauthorized.labels(crm=crm).inc()
        return unauthorized(basic=basic)
