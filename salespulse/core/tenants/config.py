"""A tenant's business settings (pipelines, teams, targets, calendars, SLA), the file that
holds them all, and the directory the running processes look tenants up in."""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, model_validator

from salespulse.core.business_hours import BusinessCalendar, BusinessHours
from salespulse.core.sla_policy import Basis, SlaConfig, SlaTarget, WaitKind
from salespulse.core.tenants.base import (
    CurrencyCode,
    FrozenModel,
    Locale,
    Money,
    Month,
    TenantName,
    TenantsFileError,
)
from salespulse.core.tenants.crm_sources import CrmSources
from salespulse.core.tenants.screens_and_tokens import ApiTokens, Wall


class Stage(FrozenModel):
    id: str = Field(min_length=1)
    kind: Literal["open", "won", "lost"] = "open"
    # The first stage marked warm is where a deal counts as "warm" (cold → warm conversion).
    warm: bool = False
    # A deal in this stage longer than this is "stuck" (bottleneck KPI).
    limit_hours: float | None = Field(default=None, gt=0)


class Pipeline(FrozenModel):
    stages: list[Stage] = Field(min_length=1)
    # Open stages whose deals are "ready to close"; default: the last open stage.
    ready_to_close: list[str] | None = None

    def ready_stages(self) -> list[str]:
        """`ready_to_close` as configured (`[]`: none), else the last open stage."""
        if self.ready_to_close is not None:
            return self.ready_to_close
        opens = [stage.id for stage in self.stages if stage.kind == "open"]
        return opens[-1:]

    def limit_hours_of(self, stage_id: str) -> float | None:
        return next((stage.limit_hours for stage in self.stages if stage.id == stage_id), None)

    @model_validator(mode="after")
    def _consistent(self) -> Pipeline:
        ids = [stage.id for stage in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stage ids repeat: {ids}")
        open_ids = {stage.id for stage in self.stages if stage.kind == "open"}
        for stage_id in self.ready_to_close or []:
            if stage_id not in open_ids:
                raise ValueError(f"ready_to_close names {stage_id!r}, not an open stage")
        return self


class Team(FrozenModel):
    # How the wall names the team ("Київ · продажі"); default: its id.
    name: str | None = Field(default=None, min_length=1, max_length=60)
    managers: list[str] = Field(default_factory=list)
    # The team's own calendar (another shift or time zone); default: the tenant's.
    business_hours: BusinessHours | None = None


class Target(FrozenModel):
    revenue: Money | None = None
    deals_won: int | None = Field(default=None, ge=0)


class Targets(FrozenModel):
    """Monthly targets."""

    managers: dict[str, Target] = Field(default_factory=dict)
    teams: dict[str, Target] = Field(default_factory=dict)


class Labels(FrozenModel):
    """Bounds on Prometheus label values, so a big office cannot explode the series count."""

    per_manager: bool = True
    max_values: int = Field(default=200, ge=1)


class TenantConfig(FrozenModel):
    timezone: str = "UTC"
    currency: CurrencyCode = "USD"
    # Language of the wall and of formatted numbers, money and dates (never the TV's own).
    locale: Locale = "en"
    # Value of one unit of the keyed currency in the tenant's currency.
    currency_rates: dict[CurrencyCode, Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]] = (
        Field(default_factory=dict)
    )
    pipelines: dict[str, Pipeline] = Field(default_factory=dict)
    teams: dict[str, Team] = Field(default_factory=dict)
    targets: Targets = Field(default_factory=Targets)
    # Manager id → display name (staff only): wins over the names synced from the CRM
    # (handlers/enrichment/users.py), which win over the wall's own `wall.names`.
    managers: dict[str, Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=dict
    )
    # Wall monitors (GET /wall): named screens with their tokens and layout.
    wall: Wall = Field(default_factory=Wall)
    # Who may read this tenant's KPIs and write its events, besides the operator's tokens.
    tokens: ApiTokens = Field(default_factory=ApiTokens)
    # source → month → cost in the tenant's currency.
    marketing_costs: dict[str, dict[Month, Money]] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=Labels)
    crm: CrmSources = Field(default_factory=CrmSources)
    # When the office answers; None: always (business seconds equal calendar seconds).
    business_hours: BusinessHours | None = None
    sla: SlaConfig = Field(default_factory=SlaConfig)

    @model_validator(mode="after")
    def _checks(self) -> TenantConfig:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        seen: dict[str, str] = {}
        for team, members in self.teams.items():
            for manager in members.managers:
                if manager in seen:
                    raise ValueError(
                        f"teams: manager {manager!r} is in both {seen[manager]!r} and {team!r}"
                    )
                seen[manager] = team
        wants_business = self.sla.basis == "business" or any(
            policy.basis == "business" for policy in self.sla.policies
        )
        if wants_business and self.business_hours is None:
            raise ValueError("sla: basis 'business' needs the tenant's business_hours")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def team_name(self, team: str) -> str:
        """The team's display name from the tenants file, else its id."""
        configured = self.teams.get(team)
        return configured.name if configured is not None and configured.name else team

    def team_of(self, manager: str | None) -> str | None:
        if manager is None:
            return None
        return self._team_by_manager.get(manager)

    @cached_property
    def _team_by_manager(self) -> dict[str, str]:
        return {m: team for team, members in self.teams.items() for m in members.managers}

    @property
    def default_basis(self) -> Basis:
        return "business" if self.business_hours is not None else "calendar"

    def calendar_for(self, team: str | None) -> BusinessCalendar | None:
        """The team's calendar, else the tenant's; None when the office is always open."""
        return self._calendars.get(team) if team in self._calendars else self._calendars[None]

    def sla_target(
        self, channel: str | None, pipeline: str | None, kind: WaitKind
    ) -> SlaTarget | None:
        return self.sla.target_for(channel, pipeline, kind, self.default_basis)

    @cached_property
    def _calendars(self) -> dict[str | None, BusinessCalendar | None]:
        def calendar(hours: BusinessHours | None) -> BusinessCalendar | None:
            if hours is None:
                return None
            if "timezone" not in hours.model_fields_set:  # written without one: the tenant's
                hours = hours.model_copy(update={"timezone": self.timezone})
            return BusinessCalendar(hours)

        calendars: dict[str | None, BusinessCalendar | None] = {None: calendar(self.business_hours)}
        for name, team in self.teams.items():
            if team.business_hours is not None:
                calendars[name] = calendar(team.business_hours)
        return calendars


class TenantsFile(FrozenModel):
    tenants: dict[TenantName, TenantConfig] = Field(default_factory=dict)


class TenantDirectory:
    """Config per tenant; a tenant not in the file gets the defaults (UTC, no pipelines)."""

    def __init__(self, tenants: TenantsFile, default_timezone: str = "UTC") -> None:
        self._tenants = dict(tenants.tenants)
        self._default = TenantConfig(timezone=default_timezone)
        self._zones: dict[str, ZoneInfo] = {}

    def get(self, tenant: str) -> TenantConfig:
        return self._tenants.get(tenant, self._default)

    def names(self) -> list[str]:
        return sorted(self._tenants)

    def zone_for(self, tenant: str) -> ZoneInfo:
        zone = self._zones.get(tenant)
        if zone is None:
            zone = self._zones[tenant] = self.get(tenant).zone
        return zone


def load_tenants(path: Path) -> TenantsFile:
    """Parse and validate; raise TenantsFileError naming the file, key and problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TenantsFileError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TenantsFileError(f"{path}: not valid YAML: {exc}") from None
    try:
        return TenantsFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = [
            f"{path}: {'.'.join(str(part) for part in error['loc']) or '(top level)'}: "
            f"{error['msg']}"
            for error in exc.errors()
        ]
        raise TenantsFileError("\n".join(problems)) from None
