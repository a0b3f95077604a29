"""The tenants file's ``crm:`` section as the adapters need it: source, context, secrets."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from handlers.crm.common import Context, CrmName, Naming
from salespulse.core.tenants import (
    AmoCrmSource,
    CrmSource,
    Secret,
    TenantConfig,
    TenantDirectory,
    TenantsFileError,
)

CRMS: tuple[CrmName, ...] = ("bitrix24", "amocrm", "hubspot", "pipedrive")


def source_of(config: TenantConfig, crm: CrmName) -> CrmSource | None:
    source: CrmSource | None = getattr(config.crm, crm)
    return source


def context_for(crm: CrmName, tenant: str, config: TenantConfig, received_at: datetime) -> Context:
    source = source_of(config, crm)
    if source is None:
        return Context(tenant=tenant, received_at=received_at, currency=config.currency)
    zone: tzinfo
    if source.timezone is not None:
        zone = ZoneInfo(source.timezone)
    else:
        zone = UTC if crm == "pipedrive" else config.zone
    currency = config.currency
    if isinstance(source, AmoCrmSource) and source.currency is not None:
        currency = source.currency
    return Context(
        tenant=tenant,
        received_at=received_at,
        naming=Naming(dict(source.stage_map), dict(source.pipeline_map)),
        zone=zone,
        currency=currency,
    )


def reveal(secret: Secret) -> str:
    """The secret's value; an empty one is refused (it would let any empty token in)."""
    value = secret.reveal().get_secret_value()
    if not value:
        raise TenantsFileError("secret: the value is empty")
    return value


def secret_values(source: CrmSource) -> list[str]:
    """Every secret configured for ``source`` that can be read: what a dead letter must
    never contain (handlers/redaction.py)."""
    values: list[str] = []
    for _, value in source:
        if isinstance(value, Secret):
            try:
                values.append(reveal(value))
            except TenantsFileError:
                continue  # nothing to match; the webhook that needs it answers 401
    return values


def check_secrets(tenants: TenantDirectory) -> None:
    """Reveal every configured CRM secret once, so a missing one fails at start.

    Raises TenantsFileError naming the tenant and CRM, never the value.
    """
    for tenant in tenants.names():
        config = tenants.get(tenant)
        for crm in CRMS:
            source = source_of(config, crm)
            if source is None:
                continue
            for name, value in source:
                if isinstance(value, Secret):
                    try:
                        reveal(value)
                    except TenantsFileError as exc:
                        raise TenantsFileError(
                            f"tenants.{tenant}.crm.{crm}.{name}: {exc}"
                        ) from None
