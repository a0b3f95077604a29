"""A tenant's CRM accounts: how their webhooks authenticate and how their ids map to ours."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from salespulse.core.tenants.base import CurrencyCode, FrozenModel, Secret


class CrmSource(FrozenModel):
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
    # For the user sync (manager names): a long-lived token of an integration with access
    # to users, and the account's API base (https://<subdomain>.amocrm.ru).
    access_token: Secret | None = None
    api_base: str | None = None


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
    # For the user sync (manager names): an API token (sent as the x-api-token header).
    api_token: Secret | None = None
    api_base: str = "https://api.pipedrive.com"


class CrmSources(FrozenModel):
    bitrix24: Bitrix24Source | None = None
    amocrm: AmoCrmSource | None = None
    hubspot: HubSpotSource | None = None
    pipedrive: PipedriveSource | None = None
