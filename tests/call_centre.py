"""A small call-centre history (issue 17 item 9), hand-computed in its comments: six
callers, missed calls, callbacks, an automated reply, with a 20 s first-response target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from salespulse.core.events import CrmEvent
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from tests.helpers import make_event

TENANTS_YAML = """\
tenants:
  acme:
    sla:
      policies:
        - {channel: phone, first_response: 20s, basis: calendar}
"""
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
CONFIG = TenantConfig.model_validate(
    {"sla": {"policies": [{"channel": "phone", "first_response": "20s", "basis": "calendar"}]}}
)  # as TENANTS_YAML
TENANTS = TenantDirectory(TenantsFile(tenants={"acme": CONFIG}))


def call(event_id: str, caller: str, at: datetime, **fields: Any) -> CrmEvent:
    values: dict[str, Any] = {"client_id": caller, "occurred_at": at, "duration_s": None}
    return make_event(event_id, "call", **{**values, **fields})


def history() -> list[CrmEvent]:
    return [
        # A: missed, then answered when calling again 10 s later (answered within 20 s)
        call("a1", "A", NOW - 60 * M, answered=False),
        call("a2", "A", NOW - 60 * M + timedelta(seconds=10), duration_s=120.0),
        # B: missed, called back 5 minutes later (an outbound reply, a breach of 20 s)
        call("b1", "B", NOW - 50 * M, answered=False),
        call("b2", "B", NOW - 45 * M, direction="out", duration_s=60.0),
        # C: missed twice, nobody called back: two abandoned calls
        call("c1", "C", NOW - 40 * M, answered=False),
        call("c2", "C", NOW - 30 * M, answered=False),
        # D: answered at once (no wait, nothing abandoned)
        call("d1", "D", NOW - 20 * M, duration_s=300.0),
        # E: missed; the only reply came before it, so it is abandoned
        call("e0", "E", NOW - 15 * M, direction="out", answered=False),
        call("e1", "E", NOW - 10 * M, answered=False),
        # F: missed, answered by an automated callback only: abandoned
        call("f1", "F", NOW - 5 * M, answered=False),
        make_event("f2", "message", client_id="F", direction="out", automated=True,
                   occurred_at=NOW - 4 * M, conversation_id=None),
    ]  # fmt: skip
