"""Canonical event v1: the one shape every CRM payload is normalised into.

It is the wire format of the ``crm.events`` topic too. Decoding is tolerant of unknown
fields so that a newer producer does not break an older worker during a rolling upgrade.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Final, Literal

import msgspec

EventType = Literal[
    "lead_created",
    "deal_created",
    "deal_stage_changed",
    "call",
    "message",
    "meeting",
    "rating",
    "payment",
    "invoice",
    "lead_stage_changed",
    "marketing_cost",
]
StageKind = Literal["open", "won", "lost"]
Direction = Literal["in", "out"]
Channel = Literal["phone", "chat", "email", "messenger", "sms", "meeting", "web", "other"]

# Identifiers end up in Redis keys and metric labels: bounded length, no control chars.
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
TenantId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
# The ranges the engine counts exactly (docs/kpi-semantics.md, "Accepted ranges"):
# money is kept as int64 in 1/10,000 (HINCRBY), so one amount stays three orders of
# magnitude below 2**63 / 10,000 and a total has room for many of them; a total that
# would still overflow is the worker's to refuse (it dead-letters the event as poison).
MAX_AMOUNT: Final = Decimal(10**14)
MAX_DURATION_S: Final = 86_400 * 7
MAX_RATING: Final = 5
# Before 2000 no CRM we read held data; after receipt + a day is a clock or a typo, and
# the last days of year 9999 cannot even be named as local-time buckets.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE: Final = timedelta(days=1)
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_S)]


class CrmEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One thing that happened in a CRM, in UTC event time.

    This is the wire type on `crm.events`: only types are checked when it is decoded.
    Values are checked once, at the door, by :class:`ValidatedEvent` (the ingest) or by
    the CRM adapters that build events; re-checking every identifier against its
    pattern in the worker cost about 40 % of decoding (`make bench`).
    """

    schema: Literal[1] = 1
    event_id: str
    tenant: str
    type: EventType
    occurred_at: AwareDatetime
    source: str = "generic"
    received_at: AwareDatetime | None = None
    manager_id: str | None = None
    team: str | None = None
    entity_id: str | None = None
    conversation_id: str | None = None
    client_id: str | None = None
    pipeline: str | None = None
    stage_from: str | None = None
    stage_to: str | None = None
    stage_kind: StageKind | None = None
    amount: Decimal | None = None
    # What winning the deal costs us (margin = amount - cost), in `currency`.
    cost: Decimal | None = None
    # The lead a deal came from (lead → customer conversion).
    lead_id: str | None = None
    currency: str | None = None
    channel: Channel | None = None
    direction: Direction | None = None
    duration_s: float | None = None
    answered: bool | None = None
    rating: int | None = None
    source_channel: str | None = None
    lost_reason: str | None = None
    # A bot or auto-reply: never counts as a manager's activity or reply.
    automated: bool = False
    # Sent as history (the ingest's X-SalesPulse-Backfill: true header; the ingest sets it,
    # replacing any value in the body): counted as usual, but a contact of it is no client
    # waiting now, so its wait stays off the live waiting list (docs/sla.md). Absent from
    # the records written before it existed, which then read as live events.
    backfill: bool = False

    @property
    def partition_key(self) -> bytes:
        """tenant+entity, so that one deal's (or one conversation's) events stay in order."""
        entity = self.entity_id or self.conversation_id or self.client_id or self.event_id
        return f"{self.tenant}:{entity}".encode()


class ValidatedEvent(CrmEvent, frozen=True, kw_only=True, omit_defaults=True):
    """A CrmEvent as the ingest accepts it: every value checked, each problem named."""

    event_id: Ident
    tenant: TenantId
    source: Ident = "generic"
    manager_id: Ident | None = None
    team: Ident | None = None
    entity_id: Ident | None = None
    conversation_id: Ident | None = None
    client_id: Ident | None = None
    pipeline: Ident | None = None
    stage_from: Ident | None = None
    stage_to: Ident | None = None
    lead_id: Ident | None = None
    currency: Currency | None = None
    duration_s: NonNegative | None = None
    rating: Annotated[int, msgspec.Meta(ge=1, le=MAX_RATING)] | None = None
    source_channel: Ident | None = None
    lost_reason: Ident | None = None


# Fields each type needs beyond the schema's own required ones; checked after decoding.
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "deal_created": ("entity_id",),
    "deal_stage_changed": ("entity_id", "pipeline", "stage_to"),
    "call": ("direction", "answered"),
    "message": ("direction",),
    "rating": ("rating",),
    "payment": ("amount", "currency"),
    "invoice": ("amount", "currency"),
    "lead_stage_changed": ("entity_id", "stage_to"),
    "marketing_cost": ("amount", "currency", "source_channel"),
}


def semantic_problems(event: CrmEvent, now: datetime | None = None) -> list[tuple[str, str]]:
    """(field, problem) pairs the schema alone cannot catch: per-type fields, value ranges.

    The ranges hold for events built by the CRM adapters too, which decode into the
    unconstrained CrmEvent. ``now`` (default: the clock) bounds a ``received_at`` and,
    when the event has none (a backfill), its ``occurred_at``.
    """
    problems = [
        (name, f"required for type {event.type!r}")
        for name in REQUIRED_BY_TYPE.get(event.type, ())
        if getattr(event, name) is None
    ]
    if event.type == "deal_created" and event.stage_to is not None and event.pipeline is None:
        # a creation with a stage is also the entry into it, which needs the pipeline
        problems.append(("pipeline", "required with stage_to for type 'deal_created'"))
    for name in ("amount", "cost"):
        value: Decimal | None = getattr(event, name)
        if value is not None and not (value.is_finite() and 0 <= value <= MAX_AMOUNT):
            problems.append((name, f"must be a decimal from 0 to {MAX_AMOUNT:,}"))
    duration = event.duration_s
    # written so that NaN fails too
    if duration is not None and not 0 <= duration <= MAX_DURATION_S:
        problems.append(("duration_s", f"must be from 0 to {MAX_DURATION_S} seconds"))
    if event.rating is not None and not 1 <= event.rating <= MAX_RATING:
        problems.append(("rating", f"must be from 1 to {MAX_RATING}"))
    latest = (now or datetime.now(UTC)) + FUTURE_TOLERANCE
    received = event.received_at
    if received is not None:
        if EARLIEST <= received <= latest:
            latest = received + FUTURE_TOLERANCE
        else:
            problems.append(("received_at", _time_range(latest, "now")))
    if not EARLIEST <= event.occurred_at <= latest:
        problems.append(("occurred_at", _time_range(latest, "receipt")))
    return problems


def _time_range(latest: datetime, after: str) -> str:
    return (
        f"must be from {EARLIEST.isoformat()} to {latest.isoformat(timespec='seconds')} "
        f"(a day after {after})"
    )


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(CrmEvent)


def encode_event(event: CrmEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(raw: bytes) -> CrmEvent:
    return _decoder.decode(raw)
