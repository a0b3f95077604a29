"""Bitrix24 REST records (crm.deal.get, crm.lead.get, crm.activity.get) → canonical events.

Pure: the enrichment stage fetches the record and the stage dictionary, reads the stored
state, calls these, produces the events and then stores the new state. Every event id is
made from the record's own times, so a repeated webhook, a retry or a replay derives the
same ids and the KPI worker drops the repeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from handlers.crm.common import (
    EnrichmentRequest,
    EntityState,
    Naming,
    code,
    decimal,
    epoch_ms,
    event_id,
    from_iso,
    ident,
    make_event,
    unsupported,
)
from salespulse.core.events import CrmEvent, StageKind

CRM = "bitrix24"
_KIND_BY_SEMANTICS: dict[str, StageKind] = {
    "S": "won",
    "F": "lost",
    "P": "open",
    "success": "won",
    "failure": "lost",
    "process": "open",
}
# Activity TYPE_ID: 1 meeting, 2 call, 3 task, 4 e-mail, 6 provider (chats: unconfirmed).
_MEETING, _CALL, _EMAIL = "1", "2", "4"
_DIRECTION = {"1": "in", "2": "out"}
_LEAD = {"1": "L_"}
_CLIENT = {"3": "C_", "4": "CO_"}


def stage_dictionary(category_id: str) -> str:
    """crm.status.list ENTITY_ID of a deal funnel: DEAL_STAGE for "0", else DEAL_STAGE_<id>."""
    return "DEAL_STAGE" if category_id in ("", "0") else f"DEAL_STAGE_{category_id}"


def stage_kinds(entries: list[Mapping[str, Any]]) -> dict[str, StageKind]:
    """crm.status.list rows → STATUS_ID: kind. SEMANTICS is "S"/"F"/null; EXTRA.SEMANTICS is
    "success"/"failure"/"process": both shapes are read, the flat one first."""
    kinds: dict[str, StageKind] = {}
    for entry in entries:
        status = code(entry.get("STATUS_ID"))
        if status is None:
            continue
        extra = entry.get("EXTRA")
        nested = extra.get("SEMANTICS") if isinstance(extra, Mapping) else None
        kinds[status] = semantics_kind(entry.get("SEMANTICS")) or semantics_kind(nested) or "open"
    return kinds


def semantics_kind(value: object) -> StageKind | None:
    return _KIND_BY_SEMANTICS.get(value) if isinstance(value, str) else None


def deal_events(
    request: EnrichmentRequest,
    deal: Mapping[str, Any],
    *,
    kinds: Mapping[str, StageKind],
    state: EntityState | None,
    naming: Naming,
    naive_zone: tzinfo,
    backfill_since: datetime,
) -> tuple[list[CrmEvent], EntityState | None]:
    """The deal's creation and stage entry, judged against the stored state.

    A deal first seen through an update counts as created (and as entering its stage)
    when that happened after ``backfill_since``: Bitrix24 never retries, so this recovers
    a lost ONCRMDEALADD, and the shared event ids make it harmless when none was lost.
    Returns the events and the state to store (None: leave the stored state alone).
    """
    deal_id = _record_id(deal, request)
    stage = code(deal.get("STAGE_ID"))
    if stage is None:
        raise unsupported("the deal has no STAGE_ID", "STAGE_ID")
    category = code(deal.get("CATEGORY_ID")) or "0"
    created = from_iso(deal.get("DATE_CREATE"), "DATE_CREATE", naive_zone)
    moved = (
        from_iso(deal.get("MOVED_TIME"), "MOVED_TIME", naive_zone)
        or from_iso(deal.get("DATE_MODIFY"), "DATE_MODIFY", naive_zone)
        or created
    )
    if created is None or moved is None:
        raise unsupported("the deal has no DATE_CREATE", "DATE_CREATE")
    is_add = request.event == "ONCRMDEALADD"
    # Won/lost from the stage's semantics, never from its code; dictionary first.
    kind = kinds.get(stage) or semantics_kind(deal.get("STAGE_SEMANTIC_ID")) or "open"
    currency = code(deal.get("CURRENCY_ID"))
    common: dict[str, Any] = {
        "tenant": request.tenant,
        "source": CRM,
        "received_at": request.received_at,
        "entity_id": deal_id,
        "pipeline": naming.pipeline(category),
        "manager_id": ident(deal.get("ASSIGNED_BY_ID")),
        "amount": decimal(deal.get("OPPORTUNITY"), "OPPORTUNITY"),
        "currency": currency.upper() if currency else None,
        "client_id": _prefixed("C_", deal.get("CONTACT_ID"))
        or _prefixed("CO_", deal.get("COMPANY_ID")),
        "lead_id": _prefixed("L_", deal.get("LEAD_ID")),
        "source_channel": code(deal.get("SOURCE_ID")),
    }
    events: list[CrmEvent] = []
    if is_add or (state is None and created >= backfill_since):
        events.append(
            make_event(
                event_id=event_id(CRM, request.account, "deal", deal_id, "created"),
                type="deal_created",
                occurred_at=created,
                **common,
            )
        )
    moved_ms = epoch_ms(moved)
    if state is None:
        entered = is_add or moved >= backfill_since
    else:
        entered = moved_ms > state.at_ms or (stage != state.stage and moved_ms >= state.at_ms)
    if entered:
        events.append(
            make_event(
                event_id=event_id(CRM, request.account, "deal", deal_id, "stage", stage, moved_ms),
                type="deal_stage_changed",
                occurred_at=moved,
                stage_from=naming.stage(state.stage) if state and state.stage != stage else None,
                stage_to=naming.stage(stage),
                stage_kind=kind,
                **common,
            )
        )
    new_state = EntityState(stage=stage, pipeline=category, at_ms=moved_ms)
    return events, new_state if state is None or entered else None


def lead_events(
    request: EnrichmentRequest,
    lead: Mapping[str, Any],
    *,
    state: EntityState | None,
    naming: Naming,
    naive_zone: tzinfo,
    backfill_since: datetime,
) -> tuple[list[CrmEvent], EntityState | None]:
    """lead_created (as for deals, recovered from a first update in the backfill window)
    and lead_stage_changed when the status moved since the stored state."""
    lead_id = _record_id(lead, request)
    status = code(lead.get("STATUS_ID"))
    if status is None:
        raise unsupported("the lead has no STATUS_ID", "STATUS_ID")
    created = from_iso(lead.get("DATE_CREATE"), "DATE_CREATE", naive_zone)
    if created is None:
        raise unsupported("the lead has no DATE_CREATE", "DATE_CREATE")
    moved = (
        from_iso(lead.get("MOVED_TIME"), "MOVED_TIME", naive_zone)
        or from_iso(lead.get("DATE_MODIFY"), "DATE_MODIFY", naive_zone)
        or created
    )
    common: dict[str, Any] = {
        "tenant": request.tenant,
        "source": CRM,
        "received_at": request.received_at,
        "entity_id": f"L_{lead_id}",
        "manager_id": ident(lead.get("ASSIGNED_BY_ID")),
        "source_channel": code(lead.get("SOURCE_ID")),
    }
    events: list[CrmEvent] = []
    if request.event == "ONCRMLEADADD" or (state is None and created >= backfill_since):
        events.append(
            make_event(
                event_id=event_id(CRM, request.account, "lead", lead_id, "created"),
                type="lead_created",
                occurred_at=created,
                **common,
            )
        )
    moved_ms = epoch_ms(moved)
    # Only a move we saw happen: the first status is the lead's creation, not a move.
    moved_on = state is not None and status != state.stage and moved_ms >= state.at_ms
    if moved_on:
        assert state is not None  # narrowing for mypy; moved_on implies it
        events.append(
            make_event(
                event_id=event_id(
                    CRM, request.account, "lead", lead_id, "status", status, moved_ms
                ),
                type="lead_stage_changed",
                occurred_at=moved,
                stage_from=naming.stage(state.stage),
                stage_to=naming.stage(status),
                stage_kind=semantics_kind(lead.get("STATUS_SEMANTIC_ID")),
                **common,
            )
        )
    new_state = EntityState(stage=status, at_ms=moved_ms)
    return events, new_state if state is None or moved_on else None


def activity_events(
    request: EnrichmentRequest, activity: Mapping[str, Any], *, naive_zone: tzinfo
) -> list[CrmEvent]:
    """Meetings marked done, e-mails, and calls logged by hand (completed).

    Telephony calls (PROVIDER_ID VOXIMPLANT_CALL, ORIGIN_ID "VI_<call id>") are skipped:
    ONVOXIMPLANTCALLEND reports them with duration and outcome.
    """
    activity_id = _record_id(activity, request)
    type_id = code(activity.get("TYPE_ID"))
    completed = activity.get("COMPLETED") == "Y"
    provider = code(activity.get("PROVIDER_ID")) or ""
    origin = code(activity.get("ORIGIN_ID")) or ""
    when = from_iso(activity.get("START_TIME"), "START_TIME", naive_zone) or from_iso(
        activity.get("CREATED"), "CREATED", naive_zone
    )
    if when is None:
        raise unsupported("the activity has no START_TIME or CREATED", "START_TIME")
    # OWNER_TYPE_ID: 1 lead, 2 deal, 3 contact, 4 company.
    owner_type = code(activity.get("OWNER_TYPE_ID")) or ""
    owner = ident(activity.get("OWNER_ID"))
    common: dict[str, Any] = {
        "tenant": request.tenant,
        "source": CRM,
        "received_at": request.received_at,
        "occurred_at": when,
        "manager_id": ident(activity.get("RESPONSIBLE_ID")),
        "entity_id": owner if owner_type == "2" else _prefixed(_LEAD.get(owner_type), owner),
        "client_id": _prefixed(_CLIENT.get(owner_type), owner),
    }
    direction = _DIRECTION.get(code(activity.get("DIRECTION")) or "")
    key = (CRM, request.account, "activity", activity_id)
    if type_id == _MEETING and completed:
        return [
            make_event(
                event_id=event_id(*key, "meeting"), type="meeting", channel="meeting", **common
            )
        ]
    if type_id == _EMAIL and direction is not None:
        return [
            make_event(
                event_id=event_id(*key, "email"),
                type="message",
                channel="email",
                direction=direction,
                **common,
            )
        ]
    telephony = provider == "VOXIMPLANT_CALL" or origin.startswith("VI_")
    if type_id == _CALL and completed and direction is not None and not telephony:
        return [
            make_event(
                event_id=event_id(*key, "call"),
                type="call",
                channel="phone",
                direction=direction,
                answered=True,  # [I] a hand-logged call marked done took place
                **common,
            )
        ]
    return []


def _record_id(record: Mapping[str, Any], request: EnrichmentRequest) -> str:
    record_id = ident(record.get("ID"))
    if record_id != request.entity_id:
        raise unsupported(f"the record's ID {record_id!r} is not {request.entity_id!r}", "ID")
    return record_id


def _prefixed(prefix: str | None, value: object) -> str | None:
    record = ident(value)
    return f"{prefix}{record}" if prefix and record else None
