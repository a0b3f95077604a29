"""``POST /v1/events``: canonical events in, 202 only after the broker acknowledged.

Bad input never gets a 5xx: it gets a 4xx whose JSON body names each problem, and the
raw payload goes to the dead-letter topic. The one 5xx is 503 when the broker is down
(the sender should retry; nothing was accepted).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from handlers.publisher import EventPublisher
from handlers.validation import parse_events
from metrics.pipeline import PipelineMetrics
from salespulse.errors import BrokerUnavailableError, InvalidEventError

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5
BACKFILL_HEADER = "X-SalesPulse-Backfill"
# An oversized body is kept on the dead-letter topic only up to this many bytes: a record
# must fit the broker's message size limit (1 MB by default).
DEAD_LETTER_PREFIX_BYTES = 256 * 1024
_STATUS_BY_REASON = {
    "malformed_json": 400,
    "invalid_event": 422,
    "empty_batch": 422,
    "body_too_large": 413,
    "unsupported_media_type": 415,
}


class IngestHandler:
    """Holds the ingest's collaborators; ``routes()`` wires it into an aiohttp app."""

    def __init__(
        self, publisher: EventPublisher, metrics: PipelineMetrics, *, max_body_bytes: int
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/events", self.post_events)]

    async def post_events(self, request: web.Request) -> web.Response:
        received_at = datetime.now(UTC)
        body, too_large = await self._read_limited(request)
        # A backfill (salespulse replay) keeps each event's own received_at: history is
        # not "late" because it is replayed today (docs/kpi-semantics.md, lateness).
        backfill = request.headers.get(BACKFILL_HEADER, "").lower() == "true"
        try:
            self._check_envelope(request, too_large=too_large)
            events = parse_events(body, None if backfill else received_at)
        except InvalidEventError as exc:
            return await self._reject(body, exc)
        try:
            await self._publisher.publish_events(events)
        except BrokerUnavailableError:
            self._metrics.broker_unavailable.inc()
            return _unavailable()
        self._metrics.events_accepted.inc(len(events))
        return _json(202, {"accepted": len(events), "event_ids": [e.event_id for e in events]})

    def _check_envelope(self, request: web.Request, *, too_large: bool) -> None:
        if too_large:
            raise InvalidEventError(
                "body_too_large", [{"problem": f"body exceeds {self._max_body_bytes} bytes"}]
            )
        if not _is_json(request.content_type):
            raise InvalidEventError(
                "unsupported_media_type",
                [
                    {
                        "problem": "Content-Type must be application/json, "
                        f"got {request.content_type or 'none'!r}"
                    }
                ],
            )

    async def _read_limited(self, request: web.Request) -> tuple[bytes, bool]:
        """Read at most max_body_bytes (+1 to notice more), never the whole of a huge body."""
        limit = self._max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            prefix = await request.content.read(DEAD_LETTER_PREFIX_BYTES)
            return prefix, True
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = await request.content.read(min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[:DEAD_LETTER_PREFIX_BYTES], True

    async def _reject(self, body: bytes, error: InvalidEventError) -> web.Response:
        self._metrics.payloads_rejected.labels(reason=error.reason).inc()
        try:
            await self._publisher.publish_dead_letter(
                body, reason=error.reason, problems=error.problems, origin="/v1/events"
            )
        except BrokerUnavailableError:
            # Without the dead-letter copy the payload would be lost: ask for a retry.
            self._metrics.broker_unavailable.inc()
            return _unavailable()
        self._metrics.dead_letters.labels(reason=error.reason).inc()
        logger.info("rejected ingest payload: %s (%d bytes)", error.reason, len(body))
        return _json(
            _STATUS_BY_REASON[error.reason],
            {"error": error.reason, "problems": error.problems, "dead_lettered": True},
        )


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _json(status: int, payload: object) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


def _unavailable() -> web.Response:
    response = _json(
        503,
        {
            "error": "broker_unavailable",
            "problems": [
                {"problem": "the event broker did not acknowledge; nothing was accepted, retry"}
            ],
        },
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response
