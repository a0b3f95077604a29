"""amoCRM / Kommo account webhooks → canonical events.

Body: a PHP-style form, ``{entity}[{action}][{i}][{field}]`` plus ``account[...]``. The
items carry their state, so no REST call is needed. In amoCRM a "lead" is the deal that
moves through a pipeline, so a new lead counts as a lead and as a deal, and a status
change as a deal stage change and a lead stage change (lead KPIs: processed, converted).
Won and lost are the system statuses 142 and 143, the same in every pipeline.
"""

from __future__ import annotations

import hmac
import re
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
    event_id,
    from_epoch_s,
    from_iso,
    ident,
    make_event,
    number,
    unsupported,
)
from handlers.crm.forms import FormDict, FormValue, items, text
from salespulse.core.events import Channel, CrmEvent, StageKind

CRM: Final = "amocrm"
_KIND_BY_STATUS: dict[str, StageKind] = {"142": "won", "143": "lost"}
# Call notes: 10 incoming, 11 outgoing (v4 REST: call_in / call_out).
_CALL_DIRECTION = {"10": "in", "11": "out"}
# call_status: 4 conversation took place, 6 could not get through, 7 busy.
_TALKED, _UNREACHED = 4, frozenset({6, 7})
_ELEMENT_CLIENT = {"1": "C_", "3": "CO_"}
_MESSENGERS = frozenset(
    {"telegram", "whatsapp", "waba", "amocrmwa", "instagram", "facebook", "viber", "vk", "avito"}
)
_NOTE_GROUPS = frozenset({"leads", "contacts", "companies", "customers"})


def authentic_url_secret(sent: str, secret: str) -> bool:
    return bool(secret) and hmac.compare_digest(sent.encode(), secret.encode())


def authentic_account(form: FormDict, account_id: int) -> bool:
    """account[id] (and every item's account_id) must be the tenant's account.

    [U] a 2018 capture had only account[subdomain]; a body with no account id at all is
    accepted on the strength of the URL secret alone.
    """
    expected = str(account_id)
    seen = [text(form, "account", "id")]
    for group, actions in form.items():
        if group != "account" and isinstance(actions, dict):
            seen += [
                text(item, "account_id") for action in actions.values() for item in items(action)
            ]
    return all(hmac.compare_digest(value.encode(), expected.encode()) for value in seen if value)


def normalise(form: FormDict, ctx: Context, account: str) -> Normalised:
    """Every group and item; unknown ones are reported as ignored, e.g. ``task[add]``."""
    result = Normalised()
    for group, actions in form.items():
        if group == "account":
            continue
        if not isinstance(actions, dict):
            result.ignored.append(group)
            continue
        for action, entries in actions.items():
            for item in items(entries):
                result.extend(_item(group, action, item, ctx, account))
    return result


def _item(group: str, action: str, item: FormDict, ctx: Context, account: str) -> Normalised:
    name = f"{group}[{action}]"
    if group == "leads" and action == "add":
        return Normalised(events=_lead_added(item, ctx, account))
    if group == "leads" and action in ("status", "update"):
        # [U] whether a status change also sends leads[update]: both give the same ids.
        changed = code(item.get("old_status_id")) not in (None, code(item.get("status_id")))
        if action == "status" or changed:
            return Normalised(events=_lead_moved(item, ctx, account))
    if action == "note" and group in _NOTE_GROUPS:
        # [U] captures nest the note as [note][i][note][...]; a flat [note][i][...] is read too.
        nested = item.get("note")
        note = nested if isinstance(nested, dict) else item
        if code(note.get("note_type")) in _CALL_DIRECTION:
            return Normalised(events=[_call(note, ctx, account)])
        return Normalised(ignored=[f"{name}:{code(note.get('note_type'))}"])
    if group == "message" and action == "add":
        return Normalised(events=[_message(item, ctx, account)])
    if group == "talk" and action in ("add", "update"):
        rating = _rating(item, ctx, account)
        return Normalised(events=[rating]) if rating else Normalised(ignored=[name])
    return Normalised(ignored=[name])


def _lead_common(item: FormDict, ctx: Context) -> tuple[str, dict[str, Any]]:
    lead_id = ident(item.get("id"))
    if lead_id is None:
        raise unsupported("a lead item has no id", "id")
    return lead_id, {
        "tenant": ctx.tenant,
        "source": CRM,
        "received_at": ctx.received_at,
        "manager_id": ident(item.get("responsible_user_id")),
        "pipeline": ctx.naming.pipeline(code(item.get("pipeline_id"))),
    }


def _lead_added(item: FormDict, ctx: Context, account: str) -> list[CrmEvent]:
    lead_id, common = _lead_common(item, ctx)
    status = code(item.get("status_id"))
    # [U] short (Digital Pipeline style) items carry no time: arrival time stands in.
    created = _unix(item, "created_at", "date_create") or ctx.received_at
    deal = {**common, "entity_id": lead_id, "lead_id": f"L_{lead_id}"}
    events = [
        make_event(
            event_id=event_id(CRM, account, "lead", lead_id, "created"),
            type="lead_created",
            occurred_at=created,
            **{**common, "entity_id": f"L_{lead_id}"},
        ),
        make_event(
            event_id=event_id(CRM, account, "deal", lead_id, "created"),
            type="deal_created",
            occurred_at=created,
            **deal,
        ),
    ]
    if status is not None and common["pipeline"] is not None:
        events.append(
            make_event(
                event_id=event_id(CRM, account, "deal", lead_id, "stage", status, "created"),
                type="deal_stage_changed",
                occurred_at=created,
                stage_to=ctx.naming.stage(status),
                stage_kind=_KIND_BY_STATUS.get(status, "open"),
                amount=decimal(item.get("price"), "price"),
                currency=ctx.currency,
                **deal,
            )
        )
    return events


def _lead_moved(item: FormDict, ctx: Context, account: str) -> list[CrmEvent]:
    lead_id, common = _lead_common(item, ctx)
    status = code(item.get("status_id"))
    if status is None or common["pipeline"] is None:
        raise unsupported("a lead status item needs status_id and pipeline_id", "status_id")
    old = code(item.get("old_status_id"))
    moved = _unix(item, "updated_at", "last_modified")
    # The move's own time identifies it; [U] short items have none: the transition does.
    when = int(moved.timestamp()) if moved else f"from-{old}"
    kind = _KIND_BY_STATUS.get(status, "open")
    stage = {
        "occurred_at": moved or ctx.received_at,
        "stage_from": ctx.naming.stage(old),
        "stage_to": ctx.naming.stage(status),
        "stage_kind": kind,
    }
    return [
        make_event(
            event_id=event_id(CRM, account, "deal", lead_id, "stage", status, when),
            type="deal_stage_changed",
            entity_id=lead_id,
            lead_id=f"L_{lead_id}",
            amount=decimal(item.get("price"), "price"),
            currency=ctx.currency,
            **stage,
            **common,
        ),
        make_event(
            event_id=event_id(CRM, account, "lead", lead_id, "status", status, when),
            type="lead_stage_changed",
            entity_id=f"L_{lead_id}",
            **stage,
            **common,
        ),
    ]


def _call(note: FormDict, ctx: Context, account: str) -> CrmEvent:
    """A call note: duration and outcome sit in the note's text, a JSON string."""
    note_id = ident(note.get("id"))
    if note_id is None:
        raise unsupported("a call note has no id", "note.id")
    details = _call_details(note.get("text"))
    duration = number(details.get("DURATION"), "note.text.DURATION")
    status = _int(details.get("call_status"))
    # [I] missed: could not get through / busy, or no talk time.
    if status in _UNREACHED:
        answered = False
    elif duration is not None:
        answered = duration > 0
    else:
        answered = status == _TALKED
    when = (
        _unix(note, "created_at")
        or _local(note.get("date_create"), ctx, "note.date_create")
        or _local(note.get("timestamp_x"), ctx, "note.timestamp_x")
    )
    if when is None:
        raise unsupported("a call note has no created_at or date_create", "note.created_at")
    element_type = code(note.get("element_type")) or ""
    element = ident(note.get("element_id"))
    client_prefix = _ELEMENT_CLIENT.get(element_type)
    return make_event(
        event_id=event_id(CRM, account, "note", note_id),
        tenant=ctx.tenant,
        type="call",
        source=CRM,
        occurred_at=when,
        received_at=ctx.received_at,
        manager_id=ident(note.get("main_user_id")) or ident(note.get("created_by")),
        direction=_CALL_DIRECTION[code(note.get("note_type")) or ""],
        answered=answered,
        duration_s=duration,
        channel="phone",
        entity_id=element if element_type == "2" else None,
        client_id=f"{client_prefix}{element}" if client_prefix and element else None,
    )


def _call_details(raw: FormValue | None) -> dict[str, Any]:
    """[U] keys vary by telephony vendor; a text that is not a JSON object gives nothing."""
    if not isinstance(raw, str) or not raw.strip().startswith("{"):
        return {}
    try:
        details = decode_json(raw.encode())
    except msgspec.DecodeError:
        return {}
    return details if isinstance(details, dict) else {}


def _message(item: FormDict, ctx: Context, account: str) -> CrmEvent:
    """A chat message; the text is never read. [U] author[type] other than "external"."""
    message_id = code(item.get("id"))
    direction = {"incoming": "in", "outgoing": "out"}.get(text(item, "type") or "")
    if message_id is None or direction is None:
        raise unsupported("a message needs an id and type incoming/outgoing", "message.type")
    when = _unix(item, "created_at")
    if when is None:
        raise unsupported("a message has no created_at", "message.created_at")
    lead = text(item, "element_type") == "2" or text(item, "entity_type") == "lead"
    contact = ident(item.get("contact_id"))
    origin = text(item, "origin")
    return make_event(
        event_id=event_id(CRM, account, "message", message_id),
        tenant=ctx.tenant,
        type="message",
        source=CRM,
        occurred_at=when,
        received_at=ctx.received_at,
        direction=direction,
        channel=_channel(origin),
        source_channel=origin,
        conversation_id=code(item.get("talk_id")) or code(item.get("chat_id")),
        client_id=f"C_{contact}" if contact else None,
        entity_id=(ident(item.get("element_id")) or ident(item.get("entity_id"))) if lead else None,
        automated=text(item, "author", "type") in ("bot", "system"),
    )


def _rating(item: FormDict, ctx: Context, account: str) -> CrmEvent | None:
    """[U] a talk's `rate` as the client's 1-5 rating of the conversation; 0 is none."""
    rate = _int(item.get("rate"))
    talk = code(item.get("talk_id"))
    if rate is None or not 1 <= rate <= 5 or talk is None:
        return None
    contact = ident(item.get("contact_id"))
    return make_event(
        event_id=event_id(CRM, account, "talk", talk, "rating"),
        tenant=ctx.tenant,
        type="rating",
        source=CRM,
        occurred_at=_unix(item, "updated_at", "created_at") or ctx.received_at,
        received_at=ctx.received_at,
        rating=rate,
        conversation_id=talk,
        client_id=f"C_{contact}" if contact else None,
    )


def _channel(origin: str | None) -> Channel:
    tokens = set(re.split(r"[^a-z0-9]+", (origin or "").lower()))
    if tokens & _MESSENGERS:
        return "messenger"
    if tokens & {"mail", "email"}:
        return "email"
    return "chat"


def _unix(item: FormDict, *names: str) -> datetime | None:
    for name in names:
        value = text(item, name)
        if value is not None and ascii_int(value) is not None:
            return from_epoch_s(value, name)
    return None


def _local(value: FormValue | None, ctx: Context, field_name: str) -> datetime | None:
    """Note dates are `YYYY-MM-DD HH:MM:SS` in the account's local time zone."""
    return from_iso(value, field_name, ctx.zone) if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return ascii_int(value.strip()) if isinstance(value, str) else None
