"""Bitrix24 outgoing webhooks / ``event.bind`` events → canonical events or REST requests.

Body: a PHP-style form with ``event``, ``data``, ``ts`` and ``auth``. Deal, lead and
activity events carry only ``data[FIELDS][ID]``: they become enrichment requests (see
handlers/crm/bitrix24_records.py for what the fetched record turns into). A call-end
event carries the call itself and becomes a ``call`` event at once.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final, Literal

from handlers.crm.common import (
    EnrichmentRequest,
    Normalised,
    ascii_int,
    event_id,
    from_iso,
    ident,
    make_event,
    number,
    unsupported,
)
from handlers.crm.forms import FormDict, FormValue, text
from salespulse.core.events import CrmEvent

CRM: Final = "bitrix24"
DEAL_EVENTS = frozenset({"ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALMOVETOCATEGORY"})
LEAD_EVENTS = frozenset({"ONCRMLEADADD", "ONCRMLEADUPDATE"})
# ONCRMACTIVITYUPDATE too: a meeting counts once it is marked done, which is an update.
ACTIVITY_EVENTS = frozenset({"ONCRMACTIVITYADD", "ONCRMACTIVITYUPDATE"})
CALL_END = "ONVOXIMPLANTCALLEND"
# CALL_TYPE: 1 outgoing, 2 incoming, 3 incoming redirected, 4 callback, 5 info call.
_DIRECTION_BY_CALL_TYPE = {"1": "out", "2": "in", "3": "in", "4": "out"}
# CALL_FAILED_CODE is a string ("200", "304", "603-S", "OTHER"): never cast it to int.
_ANSWERED_CODE = "200"


def event_name(form: FormDict) -> str | None:
    """Upper case: the docs write OnVoximplantCallEnd, the wire ONVOXIMPLANTCALLEND."""
    name = text(form, "event")
    return name.upper() if name else None


def authentic(
    form: FormDict, token: str, *, member_id: str | None = None, domain: str | None = None
) -> bool:
    """auth[application_token] equals the configured token (constant time); and, where
    configured, auth[member_id] / auth[domain] name the tenant's portal."""
    sent = text(form, "auth", "application_token") or ""
    ok = hmac.compare_digest(sent.encode(), token.encode())
    if member_id is not None:
        ok &= hmac.compare_digest(
            (text(form, "auth", "member_id") or "").encode(), member_id.encode()
        )
    if domain is not None:
        sent_domain = (text(form, "auth", "domain") or "").lower()
        ok &= hmac.compare_digest(sent_domain.encode(), domain.lower().encode())
    return bool(ok)


def account_of(form: FormDict) -> str:
    """The portal in event ids: member_id (stable), else the domain."""
    account = text(form, "auth", "member_id") or text(form, "auth", "domain")
    if account is None:
        raise unsupported("auth[member_id] or auth[domain] is required", "auth")
    return account


def normalise(form: FormDict, *, tenant: str, received_at: datetime) -> Normalised:
    """Raises InvalidEventError (422) for a known event whose payload we cannot use."""
    name = event_name(form)
    if name is None:
        raise unsupported("the form has no `event` field", "event")
    data = form.get("data")
    if name == CALL_END:
        if _call_type(data) == "5":  # an automatic info call: nobody's activity
            return Normalised(ignored=[f"{name}:info_call"])
        return Normalised(events=[call_event(data, tenant, account_of(form), received_at)])
    entity: Literal["deal", "lead", "activity"]
    if name in DEAL_EVENTS:
        entity = "deal"
    elif name in LEAD_EVENTS:
        entity = "lead"
    elif name in ACTIVITY_EVENTS:
        entity = "activity"
    else:
        return Normalised(ignored=[name])
    record_id = ident(text(data, "FIELDS", "ID"))
    if record_id is None or ascii_int(record_id) is None:
        raise unsupported("data[FIELDS][ID] must be a record id", "data[FIELDS][ID]")
    request = EnrichmentRequest(
        crm=CRM,
        tenant=tenant,
        account=account_of(form),
        event=name,
        entity=entity,
        entity_id=record_id,
        received_at=received_at,
        # ONCRMDEALMOVETOCATEGORY names the new stage; the fetched deal stays authoritative.
        value=text(data, "FIELDS", "STAGE_ID"),
    )
    return Normalised(requests=[request])


def _call_type(data: FormValue | None) -> str | None:
    return text(data, "CALL_TYPE")


def call_event(
    data: FormValue | None, tenant: str, account: str, received_at: datetime
) -> CrmEvent:
    """ONVOXIMPLANTCALLEND: direction from CALL_TYPE, missed = code 304 (anything but 200
    is unanswered), event time = CALL_START_DATE (``ts`` is when the queue sent it)."""
    call_id = text(data, "CALL_ID")
    if call_id is None:
        raise unsupported("data[CALL_ID] is required", "data[CALL_ID]")
    call_type = _call_type(data)
    direction = _DIRECTION_BY_CALL_TYPE.get(call_type or "")
    if direction is None:
        raise unsupported(f"unknown CALL_TYPE {call_type!r}", "data[CALL_TYPE]")
    started = from_iso(text(data, "CALL_START_DATE"), "data[CALL_START_DATE]")
    if started is None:
        raise unsupported("data[CALL_START_DATE] is required", "data[CALL_START_DATE]")
    duration = number(text(data, "CALL_DURATION"), "data[CALL_DURATION]")
    code = text(data, "CALL_FAILED_CODE")
    # External PBX calls: the code defaults to 200 if duration > 0, else 304 (docs).
    answered = code == _ANSWERED_CODE if code is not None else bool(duration)
    entity_type = (text(data, "CRM_ENTITY_TYPE") or "").upper()
    entity = ident(text(data, "CRM_ENTITY_ID"))
    return make_event(
        event_id=event_id(CRM, account, "call", call_id),
        tenant=tenant,
        type="call",
        source=CRM,
        occurred_at=started,
        received_at=received_at,
        manager_id=ident(text(data, "PORTAL_USER_ID")),
        direction=direction,
        answered=answered,
        duration_s=duration,
        channel="phone",
        entity_id=entity if entity_type == "DEAL" else None,
        client_id=_client(entity_type, entity),
    )


def _client(entity_type: str, entity: str | None) -> str | None:
    """Bitrix24's own binding notation: C_ contact, CO_ company, L_ lead."""
    prefix = {"CONTACT": "C_", "COMPANY": "CO_", "LEAD": "L_"}.get(entity_type)
    return f"{prefix}{entity}" if prefix and entity else None
