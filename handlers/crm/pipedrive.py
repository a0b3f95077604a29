"""Pipedrive webhooks (v2, and v1 where cheap) → canonical events.

v2: ``meta`` (action create/change/delete, entity, ids), ``data`` (current state) and
``previous`` (only the changed fields). v1: ``event`` like ``updated.deal``, ``current``
and ``previous`` as full objects. Both are read into one view; the events made from a
change are identified by the deal's own times, so v1 and v2 hooks on one account give
the same ids and are counted once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from handlers.bounded_json import decode_json
from handlers.crm.common import (
    Context,
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
from salespulse.core.events import CrmEvent

CRM: Final = "pipedrive"
_V1_ACTIONS = {"added": "create", "updated": "change", "deleted": "delete"}
_CLOSED = ("won", "lost")


def authentic(header: str | None, username: str, password: str) -> bool:
    """HTTP Basic auth as configured on the webhook (http_auth_user / http_auth_password)."""
    if not header or not password or header[:6].lower() != "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, secret = decoded.partition(":")
    same_user = hmac.compare_digest(user.encode(), username.encode())
    return hmac.compare_digest(secret.encode(), password.encode()) and same_user


def parse(body: bytes) -> dict[str, Any]:
    try:
        decoded = decode_json(body)
    except msgspec.DecodeError as exc:
        problem: list[dict[str, object]] = [{"problem": f"malformed JSON: {exc}"}]
        raise InvalidEventError("malformed_payload", problem) from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("meta"), dict):
        raise unsupported("expected a JSON object with `meta`", "meta")
    return decoded


@dataclass(frozen=True)
class Change:
    """One webhook, v1 or v2, in one shape."""

    entity: str
    action: str
    company: str
    data: dict[str, Any]
    previous: dict[str, Any]
    # v2 meta.id: the event's own id, the fallback identity.
    ref: str
    timestamp: object


def view(payload: dict[str, Any]) -> Change:
    meta: dict[str, Any] = payload["meta"]
    if "entity" in meta:  # v2
        entity, action = str(meta.get("entity")), str(meta.get("action"))
        data, previous = payload.get("data"), payload.get("previous")
    else:  # v1: "event": "updated.deal", meta.object / meta.action
        entity = str(meta.get("object") or str(payload.get("event", ".")).partition(".")[2])
        raw_action = str(meta.get("action") or str(payload.get("event", ".")).partition(".")[0])
        action = _V1_ACTIONS.get(raw_action, raw_action)
        data, previous = payload.get("current"), payload.get("previous")
    return Change(
        entity=entity,
        action=action,
        company=code(meta.get("company_id")) or "",
        data=data if isinstance(data, dict) else {},
        previous=previous if isinstance(previous, dict) else {},
        ref=code(meta.get("id")) or "",
        timestamp=meta.get("timestamp"),
    )


def normalise(change: Change, ctx: Context) -> Normalised:
    name = f"{change.entity}.{change.action}"
    if change.entity == "deal" and change.action in ("create", "change"):
        events = _deal(change, ctx)
    elif change.entity == "activity" and change.action in ("create", "change"):
        events = _call(change, ctx)
    else:
        events = []
    return Normalised(events=events) if events else Normalised(ignored=[name])


def _time(change: Change, ctx: Context, *names: str) -> datetime:
    """The first of the named deal times; else meta.timestamp (ISO or Unix: both seen)."""
    for name in names:
        moment = from_any_time(change.data.get(name), f"data.{name}", ctx.zone)
        if moment is not None:
            return moment
    moment = from_any_time(change.timestamp, "meta.timestamp", ctx.zone)
    if moment is None:
        raise unsupported("no time for the change: neither the deal's nor meta.timestamp", "meta")
    return moment


def _id_of(value: object) -> str | None:
    """Ids are ints in samples and strings in docs; v1 may nest {"value": id, ...}."""
    if isinstance(value, dict):
        value = value.get("value", value.get("id"))
    return ident(value)


def _deal(change: Change, ctx: Context) -> list[CrmEvent]:
    data, previous = change.data, change.previous
    deal_id = _id_of(data.get("id"))
    if deal_id is None:
        raise unsupported("the deal has no id", "data.id")
    stage = code(data.get("stage_id"))
    pipeline = code(data.get("pipeline_id"))
    status = code(data.get("status")) or "open"
    person, org = _id_of(data.get("person_id")), _id_of(data.get("org_id"))
    currency = code(data.get("currency"))
    common: dict[str, Any] = {
        "tenant": ctx.tenant,
        "source": CRM,
        "received_at": ctx.received_at,
        "entity_id": deal_id,
        "pipeline": ctx.naming.pipeline(pipeline),
        # v2 owner_id; v1 called the owner user_id.
        "manager_id": _id_of(data.get("owner_id")) or _id_of(data.get("user_id")),
        "amount": decimal(data.get("value"), "data.value"),
        "currency": currency.upper() if currency else ctx.currency,
        "client_id": f"C_{person}" if person else (f"CO_{org}" if org else None),
        # lost_reason is free text in Pipedrive and may name people: never copied.
    }
    company = change.company or ctx.tenant
    key = (CRM, company, "deal", deal_id)
    events: list[CrmEvent] = []
    created = change.action == "create"
    if created:
        at = _time(change, ctx, "add_time")
        events.append(
            make_event(
                event_id=event_id(*key, "created"), type="deal_created", occurred_at=at, **common
            )
        )
    moved = "stage_id" in previous and code(previous.get("stage_id")) != stage
    old_status = code(previous.get("status")) if "status" in previous else status
    if stage is not None and (created or moved or (old_status in _CLOSED and status == "open")):
        # An entry into a stage: created there, moved there, or reopened there.
        at = _time(change, ctx, "stage_change_time", "update_time", "add_time")
        came_from = code(previous.get("stage_id")) if moved else old_status
        events.append(
            make_event(
                event_id=event_id(*key, "stage", stage, epoch_ms(at)),
                type="deal_stage_changed",
                occurred_at=at,
                stage_from=ctx.naming.stage(came_from) if not created else None,
                stage_to=ctx.naming.stage(stage),
                stage_kind="open",
                **common,
            )
        )
    if status in _CLOSED and (created or old_status != status):
        # Won/lost is a status, not a stage: a synthetic stage "won"/"lost" (stage_map
        # can rename it), entered from the stage the deal was closed in.
        at = _time(change, ctx, f"{status}_time", "close_time", "update_time")
        events.append(
            make_event(
                event_id=event_id(*key, status, epoch_ms(at)),
                type="deal_stage_changed",
                occurred_at=at,
                stage_from=ctx.naming.stage(stage),
                stage_to=ctx.naming.stage(status),
                stage_kind=status,
                **common,
            )
        )
    return events


def _call(change: Change, ctx: Context) -> list[CrmEvent]:
    """[U] calls are activities with type "call" (no v2 activity sample found); one counts
    when it is marked done. Pipedrive records no direction: [U] taken as outgoing."""
    data, previous = change.data, change.previous
    if code(data.get("type")) != "call" or not _truthy(data.get("done")):
        return []
    if change.action == "change" and ("done" not in previous or _truthy(previous.get("done"))):
        return []  # already done before this change: counted then
    activity_id = _id_of(data.get("id"))
    if activity_id is None:
        raise unsupported("the activity has no id", "data.id")
    person = _id_of(data.get("person_id"))
    return [
        make_event(
            event_id=event_id(CRM, change.company or ctx.tenant, "activity", activity_id, "done"),
            tenant=ctx.tenant,
            type="call",
            source=CRM,
            occurred_at=_time(change, ctx, "marked_as_done_time", "update_time", "add_time"),
            received_at=ctx.received_at,
            manager_id=_id_of(data.get("owner_id")) or _id_of(data.get("user_id")),
            direction="out",
            answered=True,
            duration_s=_duration(data.get("duration")),
            channel="phone",
            entity_id=_id_of(data.get("deal_id")),
            client_id=f"C_{person}" if person else None,
        )
    ]


def _truthy(value: object) -> bool:
    return value is True or value == 1 or value in ("1", "true")


def _duration(value: object) -> float | None:
    """[U] "HH:MM" (v1 activities) or "HH:MM:SS"; anything else is no duration."""
    if not isinstance(value, str) or ":" not in value:
        return None
    parts = value.strip().split(":")
    numbers = [n for n in (ascii_int(part, max_digits=6) for part in parts) if n is not None]
    if len(parts) not in (2, 3) or len(numbers) != len(parts):
        return None
    hours, minutes, seconds = (*numbers, 0)[:3]
    return float(hours * 3600 + minutes * 60 + seconds)
