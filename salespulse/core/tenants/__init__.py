"""The tenants file: business settings per tenant (one CRM account), in YAML.

Validated once at start; a bad file fails fast with the file, the key path and the
problem. Secrets are never written in the file itself: each names an environment
variable or a file to read, and is only revealed where it is used.

    tenants:
      acme:
        timezone: Europe/Moscow
        currency: RUB
        locale: ru                               # the wall's language: en (default), uk, ru
        currency_rates: {USD: "92.5"}          # 1 USD = 92.5 RUB
        pipelines:
          sales:
            stages:
              - {id: new}
              - {id: qualified, warm: true, limit_hours: 48}
              - {id: won, kind: won}
              - {id: lost, kind: lost}
        teams: {north: {name: "Север", managers: ["17", "42"]}}   # name: as the wall shows it
        managers: {"17": Олена Коваленко}      # display names, over the CRM's (staff only)
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

from salespulse.core.tenants.base import (
    CurrencyCode,
    FrozenModel,
    Money,
    Month,
    Secret,
    TenantName,
    TenantsFileError,
)
from salespulse.core.tenants.config import (
    Labels,
    Pipeline,
    Stage,
    Target,
    Targets,
    Team,
    TenantConfig,
    TenantDirectory,
    TenantsFile,
    load_tenants,
)
from salespulse.core.tenants.crm_sources import (
    AmoCrmSource,
    Bitrix24Source,
    CrmSource,
    CrmSources,
    HubSpotSource,
    PipedriveSource,
)
from salespulse.core.tenants.screens_and_tokens import (
    ApiTokens,
    TokenRef,
    Wall,
    WallPanel,
    WallScreen,
    WallTile,
    token_digest,
)

__all__ = [
    "AmoCrmSource",
    "ApiTokens",
    "Bitrix24Source",
    "CrmSource",
    "CrmSources",
    "CurrencyCode",
    "FrozenModel",
    "HubSpotSource",
    "Labels",
    "Money",
    "Month",
    "PipedriveSource",
    "Pipeline",
    "Secret",
    "Stage",
    "Target",
    "Targets",
    "Team",
    "TenantConfig",
    "TenantDirectory",
    "TenantName",
    "TenantsFile",
    "TenantsFileError",
    "TokenRef",
    "Wall",
    "WallPanel",
    "WallScreen",
    "WallTile",
    "load_tenants",
    "token_digest",
]
