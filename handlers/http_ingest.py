"""``POST /v1/events``: canonical events in, 202 only after the broker acknowledged.

Bad input never gets a 5xx: it gets a 4xx whose JSON body names each problem, and the
raw payload goes to the dead-letter topic. The one 5xx is 503 when the broker is down
(the sender should retry; nothing was accepted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web

from handlers.validation import parse_events
from salespulse.core.access import ANY_TENANT, TokenTable, bearer_token, check_scope
from salespulse.core.errors import BrokerUnavailableError, InvalidEventError
from salespulse.core.events import CrmEvent
from salespulse.core.json_responses import (
    BodyTimeoutError,
    body_timeout,
    broker_unavailable,
    is_json,
    json_response,
    read_body,
    unauthorized,
)
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.tenants import TenantDirectory, TenantsFile

logger = logging.getLogger(__name__)

BACKFILL_HEADER = "X-SalesPulse-Backfill"
_STATUS_BY_REASON = {
    "malformed_json": 400,
    "invalid_event": 422,
    "empty_batch": 422,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "tenant_forbidden": 403,
    "too_late": 422,
}


def is_backfill(request: web.Request) -> bool:
    """The sender says it sends history (salespulse replay): `X-SalesPulse-Backfill: true`."""
    return request.headers.get(BACKFILL_HEADER, "").lower() == "true"


HOW_TO_BACKFILL = (
    f"history is sent as a backfill: the {BACKFILL_HEADER}: true header (each event then "
    "keeps its own received_at), or `salespulse replay FILE`"
)


class IngestHandler:
    """Holds the ingest's collaborators; ``routes()`` wires it into an aiohttp app."""

    def __init__(
        self,
        publisher: EventPublisher,
        metrics: PipelineMetrics,
        *,
        max_body_bytes: int,
        token: str | None = None,
        tenants: TenantDirectory | None = None,
        body_timeout_s: float = 30.0,
        lateness_s: float | None = None,
    ) -> None:
        """``token``: the operator's (any tenant); ``tenants``: their own ``tokens.ingest``;
        ``lateness_s``: the worker's lateness limit (SALESPULSE_LATENESS_DAYS), refused
        here with 422 rather than accepted and then dropped by the worker."""
        self._publisher = publisher
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._tokens = TokenTable.of("ingest", tenants or TenantDirectory(TenantsFile()), token)
        self._body_timeout_s = body_timeout_s
        self._lateness = timedelta(seconds=lateness_s) if lateness_s is not None else None

    @property
    def authenticates(self) -> bool:
        """False: no ingest token exists, so anyone may post (start-up refuses that beyond
        loopback, salespulse/core/access.py)."""
        return self._tokens.enforced

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/events", self.post_events)]

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        received_at = datetime.now(UTC)
        scope = self._scope(request)
        if scope is None:
            # Not dead-lettered: an unknown sender's bytes are not ours to keep.
            self._metrics.payloads_rejected.labels(reason="unauthorized").inc()
            return unauthorized(bearer=True)
        try:
            body, too_large = await read_body(request, self._max_body_bytes, self._body_timeout_s)
        except BodyTimeoutError as exc:
            self._metrics.payloads_rejected.labels(reason="body_read_timeout").inc()
            return await body_timeout(request, exc)
        # A backfill (salespulse replay) keeps each event's own received_at: history is
        # not "late" because it is replayed today (docs/kpi-semantics.md, lateness); its
        # events carry `backfill`, so its contacts never join the live waiting list.
        backfill = is_backfill(request)
        try:
            self._check_envelope(request, too_large=too_large)
            events = parse_events(body, None if backfill else received_at, backfill=backfill)
            check_scope((event.tenant for event in events), scope)
            if not backfill:
                self._check_lateness(events, received_at)
        except InvalidEventError as exc:
            return await self._reject(body, exc)
        try:
            offsets = await self._publisher.publish_events(events, patient=backfill)
        except BrokerUnavailableError:
            self._metrics.broker_unavailable.inc()
            return broker_unavailable()
        self._metrics.events_accepted.inc(len(events))
        answer: dict[str, object] = {
            "accepted": len(events),
            "event_ids": [e.event_id for e in events],
        }
        if backfill and offsets:
            # Where the records landed: `salespulse replay --wait` waits until the worker
            # has applied up to them (GET /v1/applied). Absent: spooled, not yet placed.
            answer["offsets"] = offsets
        return json_response(202, answer)

    def _scope(self, request: web.Request) -> str | None:
        """Which tenants the sender may write (ANY_TENANT, one tenant); None: unauthorized."""
        if not self._tokens.enforced:
            return ANY_TENANT
        return self._tokens.scope(bearer_token(request.headers.get("Authorization", "")))

    def _check_envelope(self, request: web.Request, *, too_large: bool) -> None:
        if too_large:
            raise InvalidEventError(
                "body_too_large", [{"problem": f"body exceeds {self._max_body_bytes} bytes"}]
            )
        if not is_json(request.content_type):
            raise InvalidEventError(
                "unsupported_media_type",
                [
                    {
                        "problem": "Content-Type must be application/json, "
                        f"got {request.content_type or 'none'!r}"
                    }
                ],
            )

    def _check_lateness(self, events: Sequence[CrmEvent], received_at: datetime) -> None:
        """The worker dead-letters an event received later than the lateness limit after
        it happened (streams/store_stage.py): the sender is told now, while it can still
        resend it as a backfill. All or nothing, as for any other problem."""
        if self._lateness is None:
            return
        limit = self._lateness
        days = limit / timedelta(days=1)
        problems: list[dict[str, object]] = []
        for index, event in enumerate(events):
            if received_at - event.occurred_at > limit:
                problem: dict[str, object] = {
                    "field": "occurred_at",
                    "problem": f"happened more than {days:g} days ago "
                    f"(SALESPULSE_LATENESS_DAYS): too late to count as a live event; "
                    + HOW_TO_BACKFILL,
                }
                if len(events) > 1:
                    problem["index"] = index
                problems.append(problem)
        if problems:
            raise InvalidEventError("too_late", problems)

    async def _reject(self, body: bytes, error: InvalidEventError) -> web.Response:
        self._metrics.payloads_rejected.labels(reason=error.reason).inc()
        try:
            await self._publisher.publish_dead_letter(
                body, reason=error.reason, problems=error.problems, origin="/v1/events"
            )
        except BrokerUnavailableError:
            # Without the dead-letter copy the payload would be lost: ask for a retry.
            self._metrics.broker_unavailable.inc()
            return broker_unavailable()
        self._metrics.dead_letters.labels(reason=error.reason).inc()
        logger.info("rejected ingest payload: %s (%d bytes)", error.reason, len(body))
        answer: dict[str, object] = {
            "error": error.reason,
            "problems": error.problems,
            "dead_lettered": True,
        }
        if error.reason == "too_late" and self._lateness is not None:
            answer["lateness_limit_days"] = self._lateness / timedelta(days=1)
            answer["how_to_backfill"] = HOW_TO_BACKFILL
        return json_response(_STATUS_BY_REASON[error.reason], answer)
