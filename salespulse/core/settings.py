"""The one frozen settings object, read from ``SALESPULSE_*`` environment variables.

Built once by the entry point and passed down; nothing else reads ``os.environ``.
Tests construct it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory, TenantsFile, load_tenants

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MIN_TOKEN_LENGTH = 16


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
    # The conversation clock (response times, waiting clients) reads the same topic.
    sla_consumer_group: str = "salespulse-sla"
    app_id: str = "salespulse"
    data_dir: Path = Path(".salespulse")

    # Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    redis_key_prefix: str = "sp:"
    # `cluster`: redis_url names any node of a Redis Cluster; every key of a tenant is
    # hash-tagged by the tenant so it lives in one slot (docs/redis-cluster.md). `single`
    # (one Redis) keeps the key names of docs/redis-layout.md as they are.
    redis_mode: Literal["single", "cluster"] = "single"

    # `salespulse run`: the worker's KPI and SLA stages in a process each, so that their
    # folds never hold up the ingest's answers and every core works
    # (salespulse/app/worker_process.py). false: everything in one process.
    worker_process: bool = True

    batch_max_records: int = Field(default=5000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    # Tansu's first group join waits about half the session timeout: keep it short.
    kafka_session_timeout_s: float = Field(default=10.0, gt=0)
    produce_timeout_s: float = Field(default=5.0, gt=0)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A request body that takes longer than this to arrive is answered 408 and its
    # connection closed (a slow sender would otherwise hold it as long as it likes).
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    # The ingest's disk spool (handlers/spool.py, under data_dir/spool): what the broker
    # does not acknowledge within spool_after_s is kept there, up to spool_max_bytes, and
    # sent on when the broker is back. 0 bytes turns it off: the ingest then answers 503.
    spool_max_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    spool_after_s: float = Field(default=1.0, gt=0)
    # When set, POST /v1/events answers 401 unless sent `Authorization: Bearer <token>`.
    # (The CRM webhooks verify their senders themselves; this guards the canonical door.)
    ingest_token: SecretStr | None = None
    # Access (salespulse/core/access.py; tenants' own tokens are in the tenants file). The
    # operator's bearer token for GET /v1/kpis and /v1/waiting of every tenant.
    read_token: SecretStr | None = None
    # Beyond loopback an open ingest or open reads refuse to start, unless these say that a
    # proxy in front authenticates every request.
    ingest_behind_auth_proxy: bool = False
    reads_behind_auth_proxy: bool = False
    # GET /metrics asks for `Authorization: Bearer <metrics_token>` and/or basic auth.
    metrics_token: SecretStr | None = None
    metrics_username: str | None = None
    metrics_password: SecretStr | None = None
    # Event ids are remembered per event day this long; a CRM retry older than this
    # would count again (the lateness limit of the KPI engine is below it).
    dedupe_retention_days: int = Field(default=40, ge=1)
    # An event received more than this long after it happened is too late: dead-lettered
    # and counted, never silently dropped (measured from received_at, so replays are fine).
    lateness_days: int = Field(default=35, ge=1)
    # Per-day KPI buckets are kept this long for calendar windows and late events; at
    # least 8 days: the week window sums its 7 day buckets (a DST week is 7 days 1 hour).
    day_bucket_retention_days: int = Field(default=400, ge=8)
    # Per-month KPI buckets are kept this long (after their month's last write): periods
    # older than the day buckets ("March two years ago") are read from them.
    month_bucket_retention_days: int = Field(default=1830, ge=2)
    # retention.ms of crm.events when SalesPulse creates it: what `salespulse rebuild` can
    # restore (an existing topic keeps its config; RUNBOOK "Retention and persistence").
    events_retention_days: int = Field(default=400, ge=1)
    # Retention of the worker's states in Redis (docs/kpi-semantics.md, docs/sla.md), each
    # counted from the state's last event and above the lateness limit: a late event for a
    # forgotten state would start it afresh (a closed deal counted as created again).
    # Won and lost deals and leads; open deals are kept (they show as open or stuck).
    entity_retention_days: float = Field(default=90, gt=0)
    # Conversations (their contact/reply marks), answered or not.
    conversation_retention_days: float = Field(default=40, gt=0)
    # A wait still unanswered this long leaves the waiting list as expired (counted).
    wait_max_age_days: float = Field(default=7, gt=0)
    # The KPI worker's cache of entity states, by estimated bytes (streams/applier.py).
    entity_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)

    # Business settings per tenant (YAML, see salespulse/core/tenants.py); unset → defaults.
    tenants_file: Path | None = None
    # Zone of tenants the tenants file does not list.
    default_timezone: str = "UTC"

    # CRM webhooks (handlers/webhooks.py) and their REST enrichment (handlers/enrichment/stage.py).
    # Bitrix24 deal/lead/activity and HubSpot deal webhooks are queued here for enrichment.
    raw_topic: str = "crm.raw"
    enrichment_group: str = "salespulse-enrich"
    # The public base URL the CRMs call (https://hooks.example.com), if a proxy rewrites
    # scheme or host: HubSpot signs the URL it called.
    webhook_public_url: str | None = None
    # amoCRM counts an answer slower than 2 s as failed (and switches the hook off).
    amocrm_answer_deadline_s: float = Field(default=1.5, gt=0, lt=2)
    enrichment_http_timeout_s: float = Field(default=10.0, gt=0)
    # Transient REST errors (5xx, timeouts, rate limits) are retried this often, backing
    # off from the first delay, doubling, up to the cap; then the request is dead-lettered.
    enrichment_max_attempts: int = Field(default=6, ge=1)
    enrichment_backoff_s: float = Field(default=0.5, gt=0)
    enrichment_backoff_max_s: float = Field(default=30.0, gt=0)
    # REST pace per portal: Bitrix24 allows about 2 requests/s; HubSpot 100 per 10 s.
    bitrix24_rate_per_s: float = Field(default=2.0, gt=0)
    bitrix24_burst: int = Field(default=2, ge=1)
    hubspot_rate_per_s: float = Field(default=10.0, gt=0)
    hubspot_burst: int = Field(default=10, ge=1)
    # Stage dictionaries (Bitrix24 crm.status.list, HubSpot pipelines) are cached this long.
    crm_dictionary_ttl_s: float = Field(default=600.0, gt=0)
    # How long a deal's last known stage is kept (for stage_from and change detection).
    crm_state_retention_days: int = Field(default=400, ge=1)
    # A deal or lead first seen through an update counts as created if younger than this
    # (Bitrix24 never retries a lost "add"); keep it below the worker's lateness limit.
    enrichment_backfill_days: int = Field(default=30, ge=0)
    # The CRMs' user lists (manager id → name) are fetched at the worker's start and then
    # this often (handlers/enrichment/users.py); an hour keeps a new hire's id on the
    # wall for at most that long, for a handful of paced calls per portal.
    user_sync_interval_s: float = Field(default=3600.0, ge=10)
    # amoCRM allows 7 requests/s per account; Pipedrive about 10/s per token.
    amocrm_rate_per_s: float = Field(default=5.0, gt=0)
    pipedrive_rate_per_s: float = Field(default=5.0, gt=0)

    log_level: str = "INFO"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value, "SALESPULSE_DEFAULT_TIMEZONE")
        return value

    @field_validator("ingest_token", "read_token", "metrics_token", "metrics_password")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # A short token is guessable over a public ingest: refuse it at start.
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"SALESPULSE_{str(info.field_name).upper()} must be at least {MIN_TOKEN_LENGTH} "
                "characters (e.g. `openssl rand -hex 24`)"
            )
        return value

    @model_validator(mode="after")
    def _prefix_holds_no_hash_tag(self) -> Settings:
        # Redis Cluster hashes the first {...} of a key: one in the prefix would put every
        # key in one slot instead of each tenant's in its own.
        if self.redis_mode == "cluster" and (
            "{" in self.redis_key_prefix or "}" in self.redis_key_prefix
        ):
            raise ValueError("SALESPULSE_REDIS_KEY_PREFIX must hold no '{' or '}' in cluster mode")
        return self

    @model_validator(mode="after")
    def _basic_auth_complete(self) -> Settings:
        if (self.metrics_username is None) != (self.metrics_password is None):
            raise ValueError(
                "SALESPULSE_METRICS_USERNAME and SALESPULSE_METRICS_PASSWORD go together"
            )
        return self

    @model_validator(mode="after")
    def _dedupe_outlives_lateness(self) -> Settings:
        if self.dedupe_retention_days <= self.lateness_days:
            raise ValueError(
                "SALESPULSE_DEDUPE_RETENTION_DAYS must exceed SALESPULSE_LATENESS_DAYS: "
                "a CRM retry of an accepted late event is then recognised by its dedupe set "
                "before any fold (its permanent mark or its deal's state would still keep it "
                "from counting twice, but only after folding it again)"
            )
        return self

    @model_validator(mode="after")
    def _events_outlive_day_buckets(self) -> Settings:
        if self.events_retention_days < self.day_bucket_retention_days:
            raise ValueError(
                "SALESPULSE_EVENTS_RETENTION_DAYS must be at least "
                "SALESPULSE_DAY_BUCKET_RETENTION_DAYS: a rebuilt KPI store would lack the "
                "days the topic no longer holds"
            )
        return self

    @model_validator(mode="after")
    def _months_outlive_days(self) -> Settings:
        if self.month_bucket_retention_days < self.day_bucket_retention_days:
            raise ValueError(
                "SALESPULSE_MONTH_BUCKET_RETENTION_DAYS must be at least "
                "SALESPULSE_DAY_BUCKET_RETENTION_DAYS: a month older than the day buckets is "
                "read from its month bucket"
            )
        return self

    @model_validator(mode="after")
    def _states_outlive_lateness(self) -> Settings:
        for name in ("entity_retention_days", "conversation_retention_days"):
            if getattr(self, name) <= self.lateness_days:
                raise ValueError(
                    f"SALESPULSE_{name.upper()} must exceed SALESPULSE_LATENESS_DAYS: a late "
                    "event for a forgotten state would count it afresh"
                )
        if self.conversation_retention_days <= self.wait_max_age_days:
            raise ValueError(
                "SALESPULSE_CONVERSATION_RETENTION_DAYS must exceed "
                "SALESPULSE_WAIT_MAX_AGE_DAYS: an open wait outlives its conversation otherwise"
            )
        return self

    @model_validator(mode="after")
    def _spool_answers_amocrm_in_time(self) -> Settings:
        if self.spool_max_bytes and self.spool_after_s >= self.amocrm_answer_deadline_s:
            raise ValueError(
                "SALESPULSE_SPOOL_AFTER_S must be below SALESPULSE_AMOCRM_ANSWER_DEADLINE_S: "
                "amoCRM would get a 503 before its events reach the spool"
            )
        return self

    def ingest_token_value(self) -> str | None:
        """The bearer token POST /v1/events asks for, if any (for the ingest and its senders)."""
        return self.ingest_token.get_secret_value() if self.ingest_token else None

    def read_token_value(self) -> str | None:
        """The operator's bearer token for GET /v1/kpis and /v1/waiting, if any."""
        return self.read_token.get_secret_value() if self.read_token else None

    def metrics_basic_auth(self) -> tuple[str, str] | None:
        """(user, password) GET /metrics asks for, if any."""
        if self.metrics_username is None or self.metrics_password is None:
            return None
        return self.metrics_username, self.metrics_password.get_secret_value()

    def kpi_keys(self) -> KpiKeys:
        """Every Redis key name of this deployment (tenant-tagged in cluster mode)."""
        return KpiKeys(self.redis_key_prefix, tenant_slots=self.redis_mode == "cluster")

    def tenant_directory(self) -> TenantDirectory:
        """Load the tenants file (fails fast naming file, key and problem)."""
        tenants = load_tenants(self.tenants_file) if self.tenants_file else TenantsFile()
        return TenantDirectory(tenants, self.default_timezone)


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{where}: unknown time zone {name!r}") from exc
