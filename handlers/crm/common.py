"""What the CRM adapters share: the outcome of one webhook, the enrichment request, the
per-entity state, and tolerant converters for CRM values (strings everywhere, several
time formats). All pure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from salespulse.core.errors import InvalidEventError
from salespulse.core.events import CrmEvent, semantic_problems

CrmName = Literal["bitrix24", "amocrm", "hubspot", "pipedrive"]
EnrichedCrm = Literal["bitrix24", "hubspot"]
_MAX_ID = 200


class EnrichmentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook that names a record without its state: fetch it over REST, then normalise.

    The value of a record on the raw topic. It carries ids and stage codes only.
    """

    v: Literal[1] = 1
    crm: EnrichedCrm
    tenant: str
    # Bitrix24 member_id (or domain when absent), HubSpot portalId: part of every event id.
    account: str
    # The CRM's own event code: ONCRMDEALUPDATE, deal.propertyChange, ...
    event: str
    entity: Literal["deal", "lead", "activity"]
    entity_id: str
    received_at: datetime
    # HubSpot: occurredAt (ms) and the new property value of a property change.
    occurred_ms: int | None = None
    value: str | None = None
    # A replayed delivery (salespulse replay): the events built from it are history too
    # (CrmEvent.backfill). Last, so that requests queued before it decode.
    backfill: bool = False

    @property
    def key(self) -> bytes:
        """tenant+CRM: one portal's requests share a partition, so one worker paces its
        REST calls (the rate limit is per portal) and one entity's requests stay in order."""
        return f"{self.tenant}:{self.crm}".encode()


_request_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(EnrichmentRequest)


def encode_request(request: EnrichmentRequest) -> bytes:
    return _request_encoder.encode(request)


def decode_request(raw: bytes) -> EnrichmentRequest:
    return _request_decoder.decode(raw)


class EntityState(msgspec.Struct, frozen=True, kw_only=True):
    """The last stage we saw a deal (or lead) in: where ``stage_from`` comes from."""

    stage: str | None = None
    pipeline: str | None = None
    # When it entered that stage, CRM time, epoch ms.
    at_ms: int = 0


@dataclass
class Normalised:
    """One webhook's outcome: events to publish, records to enrich, item kinds ignored."""

    events: list[CrmEvent] = field(default_factory=list)
    requests: list[EnrichmentRequest] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def extend(self, other: Normalised) -> None:
        self.events += other.events
        self.requests += other.requests
        self.ignored += other.ignored


@dataclass(frozen=True)
class Naming:
    """The tenants file's renames: CRM stage / pipeline ids → the ids KPIs use."""

    stages: dict[str, str] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)

    def stage(self, crm_id: str | None) -> str | None:
        return None if crm_id is None else self.stages.get(crm_id, crm_id)

    def pipeline(self, crm_id: str | None) -> str | None:
        return None if crm_id is None else self.pipelines.get(crm_id, crm_id)


@dataclass(frozen=True)
class Context:
    """Who a webhook is for and how to read it: from the tenants file."""

    tenant: str
    received_at: datetime
    naming: Naming = field(default_factory=Naming)
    # Zone of the CRM's local-time strings.
    zone: tzinfo = UTC
    # Currency of amounts when the payload names none.
    currency: str | None = None


def unsupported(problem: str, field_name: str | None = None) -> InvalidEventError:
    """A payload we can read but cannot use (reason ``unsupported_payload``, 422)."""
    detail: dict[str, object] = {"problem": problem}
    if field_name is not None:
        detail["field"] = field_name
    return InvalidEventError("unsupported_payload", [detail])


def make_event(**fields: Any) -> CrmEvent:
    """A validated canonical event; None fields are left out. Bad values → 422 problems."""
    values = {name: value for name, value in fields.items() if value is not None}
    try:
        event = msgspec.convert(values, CrmEvent)
    except msgspec.ValidationError as exc:
        raise unsupported(f"cannot build a {fields.get('type')} event: {exc}") from None
    problems = semantic_problems(event)
    if problems:
        raise InvalidEventError(
            "unsupported_payload", [{"field": name, "problem": text} for name, text in problems]
        )
    return event


def event_id(*parts: object) -> str:
    """``crm:account:entity:...``; hashed past the id length limit (still deterministic)."""
    joined = ":".join(str(part) for part in parts)
    if len(joined) <= _MAX_ID:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:32]
    return f"{joined[: _MAX_ID - 33]}~{digest}"


def ascii_int(text: str, max_digits: int = 18) -> int | None:
    """``text`` as an int if it is 1..max_digits ASCII digits, else None.

    Not ``str.isdigit``: it accepts superscripts ("²") that ``int`` refuses, and an
    unbounded run of digits passes Python's int-string limit (4,300): both were 500s.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def ident(value: object) -> str | None:
    """An id as a string: ints and strings alike; empty, "0" and None mean no id."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return None if text in ("", "0") else text


def code(value: object) -> str | None:
    """A code or category id as a string ("0" is a real value here: Bitrix24's general funnel)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def decimal(value: object, field_name: str) -> Decimal | None:
    """Money from a string or number ("1000000.00", 25000); empty → None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise unsupported("not a number", field_name)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise unsupported("not a number", field_name) from None
    if not amount.is_finite():
        raise unsupported("not a finite number", field_name)
    return amount


def number(value: object, field_name: str) -> float | None:
    amount = decimal(value, field_name)
    return None if amount is None else float(amount)


def from_epoch_s(value: object, field_name: str) -> datetime | None:
    seconds = decimal(value, field_name)
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(float(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        raise unsupported("not a Unix time", field_name) from None


def from_epoch_ms(value: object, field_name: str) -> datetime | None:
    millis = decimal(value, field_name)
    if millis is None or millis <= 0:
        return None
    try:
        return datetime.fromtimestamp(float(millis) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise unsupported("not a Unix time in milliseconds", field_name) from None


def from_iso(value: object, field_name: str, naive_zone: tzinfo = UTC) -> datetime | None:
    """ISO 8601 (``2026-03-11T17:28:46+03:00``, ``...Z``, ``2026-05-15 18:00:00``).

    A time without an offset is read in ``naive_zone`` (a CRM's local time).
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise unsupported("not a date-time string", field_name)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=naive_zone)
        # 0001-01-01T00:30:00+01:00 parses, but is before year 1 in UTC.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise unsupported("not an ISO 8601 date-time in years 1-9999", field_name) from None


def from_any_time(value: object, field_name: str, naive_zone: tzinfo = UTC) -> datetime | None:
    """A Unix time (s or ms, number or digits) or an ISO string: CRMs mix them."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            from_epoch_ms(value, field_name) if value > 10**11 else from_epoch_s(value, field_name)
        )
    digits = ascii_int(value.strip()) if isinstance(value, str) else None
    if digits is not None:
        return (
            from_epoch_ms(digits, field_name)
            if digits > 10**11
            else from_epoch_s(digits, field_name)
        )
    return from_iso(value, field_name, naive_zone)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
