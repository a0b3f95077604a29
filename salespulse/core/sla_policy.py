"""Response-time SLA policies of a tenant (the `sla:` block of the tenants file). Pure.

    sla:
      warning_ratio: 0.8          # default warning threshold: 80 % of the target
      basis: business             # default clock: business (needs business_hours) or calendar
      policies:
        - {channel: chat, first_response: 5m, next_response: 15m}
        - {channel: phone, pipeline: vip, first_response: 90s, basis: calendar, warning: 60s}
        - {first_response: 1h}    # any other channel
      max_wait: 7d                # default: SALESPULSE_WAIT_MAX_AGE_DAYS; a policy may set its own

A wait gets the most specific policy that matches it: channel and pipeline both named
beats channel only, which beats pipeline only, which beats neither; among equals, the
first in the file. A wait no policy matches has no SLA: it is still listed and timed,
but it is never "at risk" or "breached".

A wait still unanswered ``max_wait`` after it opened (the policy's, else the block's,
else SALESPULSE_WAIT_MAX_AGE_DAYS) leaves the live waiting list as expired, and a wait
that is already that old when its live contact arrives (a late event) never enters it;
a backfilled contact never enters it at all (docs/sla.md, "Limits").

Durations are seconds (a number) or text such as ``90s``, ``5m``, ``2h``, ``1d``, ``1h30m``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Basis = Literal["calendar", "business"]
WaitKind = Literal["first", "next"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_MAX_SECONDS = 30 * 86_400


def parse_duration(value: object) -> float:
    """Seconds from a number or from text like '1h30m'; ValueError naming the problem."""
    if isinstance(value, bool):  # bool is an int to Python, never a duration to a reader
        # pydantic turns only ValueError into a validation error naming the key
        raise ValueError(f"{value!r} is not a duration")  # noqa: TRY004
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match is None or not any(match.groups()):
            raise ValueError(f"{value!r}: expected seconds or text like '90s', '5m', '1h30m'")
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = float(days * 86_400 + hours * 3600 + minutes * 60 + secs)
    else:
        raise ValueError(f"{value!r} is not a duration")  # noqa: TRY004
    if not 0 < seconds <= _MAX_SECONDS:
        raise ValueError(f"{value!r}: a duration here must be more than 0 and at most 30 days")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class SlaPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: any channel / any pipeline.
    channel: str | None = None
    pipeline: str | None = None
    first_response: Duration
    # Default: the first-response target.
    next_response: Duration | None = None
    # Default: the `sla.basis`.
    basis: Basis | None = None
    # Default: warning_ratio × target (of each kind).
    warning: Duration | None = None
    # Default: the `sla.max_wait`, else SALESPULSE_WAIT_MAX_AGE_DAYS.
    max_wait: Duration | None = None

    @model_validator(mode="after")
    def _warning_before_target(self) -> SlaPolicy:
        if self.warning is not None and self.warning >= self.first_response:
            raise ValueError(
                f"warning ({self.warning:g} s) must be shorter than first_response "
                f"({self.first_response:g} s)"
            )
        return self

    @property
    def specificity(self) -> int:
        return (2 if self.channel is not None else 0) + (1 if self.pipeline is not None else 0)


class SlaTarget(NamedTuple):
    """What one wait is measured against."""

    target_s: float
    warning_s: float
    basis: Basis


class SlaConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    warning_ratio: float = Field(default=0.8, gt=0, lt=1)
    # None: business when the tenant has business_hours, else calendar.
    basis: Basis | None = None
    policies: list[SlaPolicy] = Field(default_factory=list)
    # None: SALESPULSE_WAIT_MAX_AGE_DAYS.
    max_wait: Duration | None = None

    def max_wait_for(self, channel: str | None, pipeline: str | None) -> float | None:
        """How long a wait on this channel and pipeline stays on the live list, seconds;
        None: the deployment's SALESPULSE_WAIT_MAX_AGE_DAYS."""
        best = self._policy_for(channel, pipeline)
        if best is not None and best.max_wait is not None:
            return best.max_wait
        return self.max_wait

    def _policy_for(self, channel: str | None, pipeline: str | None) -> SlaPolicy | None:
        best: SlaPolicy | None = None
        for policy in self.policies:
            if policy.channel is not None and policy.channel != channel:
                continue
            if policy.pipeline is not None and policy.pipeline != pipeline:
                continue
            if best is None or policy.specificity > best.specificity:
                best = policy
        return best

    def target_for(
        self, channel: str | None, pipeline: str | None, kind: WaitKind, default_basis: Basis
    ) -> SlaTarget | None:
        """The target of a wait on this channel and pipeline, or None (no policy)."""
        best = self._policy_for(channel, pipeline)
        if best is None:
            return None
        target = best.first_response
        if kind == "next" and best.next_response is not None:
            target = best.next_response
        warning = best.warning if best.warning is not None else target * self.warning_ratio
        # A warning set for the first response may exceed a shorter next-response target.
        warning = min(warning, target * self.warning_ratio) if warning >= target else warning
        return SlaTarget(target, warning, best.basis or self.basis or default_basis)
