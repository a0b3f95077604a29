"""The tenants file: business settings per tenant (one CRM account), in YAML.

Validated once at start; a bad file fails fast with the file, the key path and the
problem. Secrets are never written in the file itself: each names an environment
variable or a file to read, and is only revealed where it is used.

    tenants:
      acme:
        timezone: Europe/Moscow
        currency: RUB
        currency_rates: {USD: "92.5"}          # 1 USD = 92.5 RUB
        pipelines:
          sales:
            stages:
              - {id: new}
              - {id: qualified, warm: true, limit_hours: 48}
              - {id: won, kind: won}
              - {id: lost, kind: lost}
        teams: {north: {managers: ["17", "42"]}}
        targets: {managers: {"17": {revenue: "1000000", deals_won: 20}}}
        marketing_costs: {website: {"2026-11": "50000"}}
        business_hours: {weekly: {mon: ["09:00-18:00"], tue: ["09:00-18:00"]}, country: RU}
        sla: {policies: [{channel: chat, first_response: 5m}, {first_response: 1h}]}
        crm:
          bitrix24: {application_token: {env: ACME_BITRIX_TOKEN}, rest_url: {env: ACME_BITRIX_REST}}
        tokens:                                  # bearer tokens of acme's own consumers
          read: {grafana: {token_sha256: "…"}}   # GET /v1/kpis, /v1/waiting of acme
          ingest: {etl: {token: {env: ACME_INGEST_TOKEN}}}   # POST /v1/events, acme only
"""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from salespulse.core.business_hours import BusinessCalendar, BusinessHours
from salespulse.core.errors import SalesPulseError
from salespulse.core.sla_policy import Basis, SlaConfig, SlaTarget, WaitKind

TenantName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class TenantsFileError(SalesPulseError):
    """The tenants file cannot be used; the message names the file, key and problem."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Secret(_Frozen):
    """Where a secret lives: an environment variable or a file. Never the value itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` or `file`")
        return self

    def reveal(self) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise TenantsFileError(f"secret: environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None  # narrowing: the validator guarantees one of the two
        try:
            return SecretStr(self.file.read_text().strip())
        except OSError as exc:
            raise TenantsFileError(f"secret: cannot read {self.file}: {exc.strerror}") from None


class Stage(_Frozen):
    id: str = Field(min_length=1)
    kind: Literal["open", "won", "lost"] = "open"
    # The first stage marked warm is where a deal counts as "warm" (cold → warm conversion).
    warm: bool = False
    # A deal in this stage longer than this is "stuck" (bottleneck KPI).
    limit_hours: float | None = Field(default=None, gt=0)


class Pipeline(_Frozen):
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


class Team(_Frozen):
    managers: list[str] = Field(default_factory=list)
    # The team's own calendar (another shift or time zone); default: the tenant's.
    business_hours: BusinessHours | None = None


class Target(_Frozen):
    revenue: Money | None = None
    deals_won: int | None = Field(default=None, ge=0)


class Targets(_Frozen):
    """Monthly targets."""

    managers: dict[str, Target] = Field(default_factory=dict)
    teams: dict[str, Target] = Field(default_factory=dict)


class Labels(_Frozen):
    """Bounds on Prometheus label values, so a big office cannot explode the series count."""

    per_manager: bool = True
    max_values: int = Field(default=200, ge=1)


class CrmSource(_Frozen):
    """What every CRM source may set besides its secrets."""

    # CRM stage id → the stage id KPIs use (and `pipelines` lists), e.g. {"C1:WON": won}.
    stage_map: dict[str, str] = Field(default_factory=dict)
    # CRM pipeline / funnel id → pipeline name, e.g. {"5389528": sales}.
    pipeline_map: dict[str, str] = Field(default_factory=dict)
    # Zone of the CRM's local-time strings (amoCRM note dates, Bitrix24 dates without an
    # offset). Default: the tenant's timezone; for Pipedrive: UTC, its API's zone.
    timezone: str | None = None

    @model_validator(mode="after")
    def _known_zone(self) -> CrmSource:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        return self


class Bitrix24Source(CrmSource):
    # Shown when the outgoing webhook is made (apps: received in ONAPPINSTALL).
    application_token: Secret
    # The inbound REST webhook URL (https://<portal>/rest/<user>/<key>/) for enrichment.
    rest_url: Secret | None = None
    # When set, a webhook must name this portal in auth[member_id] / auth[domain].
    member_id: str | None = None
    domain: str | None = None


class AmoCrmSource(CrmSource):
    # amoCRM signs nothing: a secret path segment authenticates the sender.
    url_secret: Secret
    account_id: int
    # The account's one currency (webhooks carry none); default: the tenant's currency.
    currency: CurrencyCode | None = None


class HubSpotSource(CrmSource):
    # The app's client secret: the key of X-HubSpot-Signature-v3.
    client_secret: Secret
    # A private-app or OAuth token with crm.objects.deals.read, for enrichment.
    access_token: Secret | None = None
    api_base: str = "https://api.hubapi.com"
    # When set, every event must carry this portalId.
    portal_id: int | None = None


class PipedriveSource(CrmSource):
    # The webhook's http_auth_user / http_auth_password.
    username: str
    password: Secret
    # When set, every webhook must carry this company_id.
    company_id: int | None = None


class CrmSources(_Frozen):
    bitrix24: Bitrix24Source | None = None
    amocrm: AmoCrmSource | None = None
    hubspot: HubSpotSource | None = None
    pipedrive: PipedriveSource | None = None


WallTile = Literal[
    "revenue", "won", "calls", "conversion", "first_response",
    "waiting", "deals_created", "meetings", "messages", "average_check",
]  # fmt: skip
WallPanel = Literal["waiting", "leaderboard"]
ScreenName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRef(_Frozen):
    """A token: a secret to read, or only its SHA-256 (hex), so the file never holds it."""

    token: Secret | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_token(self) -> TokenRef:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of `token` or `token_sha256`")
        return self

    def digest(self) -> bytes:
        """The token's SHA-256; reading a secret happens here (a missing one stops the start)."""
        if self.token is not None:
            return token_digest(self.token.reveal().get_secret_value())
        assert self.token_sha256 is not None  # narrowing: validated as one of two
        return bytes.fromhex(self.token_sha256)


class WallScreen(TokenRef):
    """One wall monitor (GET /wall): what it shows, and the read-only token that opens it."""

    title: str | None = None
    # None: the whole tenant, and the URL may narrow it to any team (`&team=`).
    team: str | None = None
    tiles: tuple[WallTile, ...] = Field(
        default=("revenue", "won", "calls", "conversion", "first_response"),
        min_length=1,
        max_length=8,
    )
    panels: tuple[WallPanel, ...] = ("waiting", "leaderboard")
    leaderboard_by: Literal["revenue", "won", "calls"] = "revenue"
    rows: int = Field(default=8, ge=1, le=30)
    # Other screens of this tenant shown in turn with this one (the token opens them too).
    rotate: list[ScreenName] = Field(default_factory=list)
    rotate_seconds: float = Field(default=30.0, ge=5)


class Wall(_Frozen):
    screens: dict[ScreenName, WallScreen] = Field(default_factory=dict)
    # Manager id → name shown on the wall's leaderboard (staff only; clients never appear).
    names: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rotation_known(self) -> Wall:
        for name, screen in self.screens.items():
            for other in screen.rotate:
                if other not in self.screens:
                    raise ValueError(f"screens.{name}.rotate: no screen {other!r}")
        return self


TokenName = ScreenName  # names one consumer of a tenant (grafana, crm-widget, etl)


class ApiTokens(_Frozen):
    """Bearer tokens of this tenant's own consumers, by name (salespulse/core/access.py)."""

    # GET /v1/kpis and /v1/waiting of this tenant only.
    read: dict[TokenName, TokenRef] = Field(default_factory=dict)
    # POST /v1/events with this tenant's events only (others: 403).
    ingest: dict[TokenName, TokenRef] = Field(default_factory=dict)


class TenantConfig(_Frozen):
    timezone: str = "UTC"
    currency: CurrencyCode = "USD"
    # Value of one unit of the keyed currency in the tenant's currency.
    currency_rates: dict[CurrencyCode, Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]] = (
        Field(default_factory=dict)
    )
    pipelines: dict[str, Pipeline] = Field(default_factory=dict)
    teams: dict[str, Team] = Field(default_factory=dict)
    targets: Targets = Field(default_factory=Targets)
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


class TenantsFile(_Frozen):
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
