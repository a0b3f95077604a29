"""The batch oracle of the call-centre KPI that needs a caller's history: abandoned calls.

Written from docs/kpi-semantics.md ("Call centre") and docs/sla.md alone, like
tests/oracle/batch.py (which covers every other component); the stream computes it in the
SLA stage (streams/sla_fold.py), from the conversation state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DEFAULT_LATENESS_S
from salespulse.core.tenants import TenantConfig
from tests.oracle.batch import counted_events, window_bounds


def abandoned_calls(
    events: Sequence[CrmEvent],
    config: TenantConfig,
    tenant: str,
    window: str,
    now: datetime,
    lateness_s: int = DEFAULT_LATENESS_S,
) -> int:
    """The spec's `calls_abandoned` (tenant total): missed inbound calls, not automated, of
    a conversation (`conversation_id`, else `client_id`) with no reply at their instant or
    later, counted in the window of the call. A reply: a non-automated outbound message,
    outbound call, or answered inbound call (docs/sla.md)."""
    start, end = window_bounds(window, now, config.zone)
    counted = counted_events(events, tenant, lateness_s, config)

    def conversation(event: CrmEvent) -> tuple[str, str] | None:
        if event.conversation_id is not None:
            return "conversation", event.conversation_id
        if event.client_id is not None:
            return "client", event.client_id
        return None

    def is_reply(event: CrmEvent) -> bool:
        if event.automated:
            return False
        if event.type == "message" or (event.type == "call" and event.direction == "out"):
            return event.direction == "out"
        return event.type == "call" and event.direction == "in" and event.answered is True

    total = 0
    for call in counted:
        if not (
            call.type == "call"
            and call.direction == "in"
            and call.answered is not True
            and not call.automated
            and conversation(call) is not None
            and (start is None or call.occurred_at >= start)
            and (end is None or call.occurred_at < end)
        ):
            continue
        if not any(
            is_reply(e)
            and conversation(e) == conversation(call)
            and e.occurred_at >= call.occurred_at
            for e in counted
        ):
            total += 1
    return total
