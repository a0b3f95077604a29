"""The one frozen settings object, read from ``SALESPULSE_*`` environment variables.

Built once by the entry point and passed down; nothing else reads ``os.environ``.
Tests construct it directly.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salespulse.tenants import TenantDirectory, TenantsFile, load_tenants

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Settings(BaseSettings):
    """Wiring for one SalesPulse process. Business settings arrive with the tenants file."""

    model_config = SettingsConfigDict(env_prefix="SALESPULSE_", frozen=True, extra="forbid")

    # Unset → `salespulse run` starts its own broker / redis-server (the embedded default).
    kafka_bootstrap: str | None = None
    redis_url: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    events_topic: str = "crm.events"
    dlq_topic: str = "crm.events.dlq"
    topic_partitions: int = Field(default=8, ge=1)
    consumer_group: str = "salespulse-kpi"
    app_id: str = "salespulse"
    data_dir: Path = Path(".salespulse")

    # Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    redis_key_prefix: str = "sp:"

    batch_max_records: int = Field(default=5000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    # Tansu's first group join waits about half the session timeout: keep it short.
    kafka_session_timeout_s: float = Field(default=10.0, gt=0)
    produce_timeout_s: float = Field(default=5.0, gt=0)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Event ids are remembered per event day this long; a CRM retry older than this
    # would count again (the lateness limit of the KPI engine is below it).
    dedupe_retention_days: int = Field(default=40, ge=1)
    # Per-day KPI buckets are kept this long for calendar windows and late events.
    day_bucket_retention_days: int = Field(default=400, ge=2)

    # Business settings per tenant (YAML, see salespulse/tenants.py); unset → defaults.
    tenants_file: Path | None = None
    # Zone of tenants the tenants file does not list.
    default_timezone: str = "UTC"

    log_level: str = "INFO"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value, "SALESPULSE_DEFAULT_TIMEZONE")
        return value

    def tenant_directory(self) -> TenantDirectory:
        """Load the tenants file (fails fast naming file, key and problem)."""
        tenants = load_tenants(self.tenants_file) if self.tenants_file else TenantsFile()
        return TenantDirectory(tenants, self.default_timezone)


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{where}: unknown time zone {name!r}") from exc
