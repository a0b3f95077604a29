"""Settings validation, the Redis field encoding and the fixed pipeline series."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from salespulse.core.kpi.codecs import decode_field, encode_field
from salespulse.core.pipeline_metrics import DEAD_LETTER_REASONS, REJECT_REASONS, PipelineMetrics
from salespulse.core.settings import Settings


def test_defaults_leave_broker_and_redis_to_the_embedded_default() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap is None
    assert settings.redis_url is None
    assert settings.events_topic == "crm.events"
    assert settings.dlq_topic == "crm.events.dlq"


def test_settings_read_the_salespulse_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("tenants:\n  acme:\n    timezone: Europe/Moscow\n")
    monkeypatch.setenv("SALESPULSE_KAFKA_BOOTSTRAP", "kafka-1:9092")
    monkeypatch.setenv("SALESPULSE_TENANTS_FILE", str(tenants))
    monkeypatch.setenv("SALESPULSE_DEFAULT_TIMEZONE", "Asia/Tokyo")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka-1:9092"
    directory = settings.tenant_directory()
    assert str(directory.zone_for("acme")) == "Europe/Moscow"
    assert str(directory.zone_for("other")) == "Asia/Tokyo"


def test_an_unknown_default_zone_fails_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="SALESPULSE_DEFAULT_TIMEZONE"):
        Settings(default_timezone="Mars/Olympus")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.http_port = 1  # type: ignore[misc]  # frozen on purpose; the test proves it


def test_unknown_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="http_prot"):
        Settings(http_prot=1)  # type: ignore[call-arg]  # the typo is the point


@pytest.mark.parametrize(
    "field",
    [("calls", "m-1", "in", "answered", "web"), ("stage_entries", 'a"b', "x|y", "Этап 1", "none")],
)
def test_fields_round_trip_whatever_the_ids_contain(field: tuple[str, ...]) -> None:
    assert decode_field(encode_field(field)) == list(field)


def test_pipeline_series_exist_from_the_start_and_their_count_is_pinned() -> None:
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    samples = [
        s
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]
    rejected = [s for s in samples if s.name == "salespulse_ingest_payloads_rejected_total"]
    dead = [s for s in samples if s.name == "salespulse_dead_letters_total"]
    assert {s.labels["reason"] for s in rejected} == set(REJECT_REASONS)
    assert {s.labels["reason"] for s in dead} == set(DEAD_LETTER_REASONS)
    # 11 plain counters and gauges (incl. the SLA stage's, its expired waits and the spool's)
    # + 9 reject reasons (too_late: history posted without the backfill header)
    # + 9 dead-letter reasons (tenant_forbidden: a tenant's ingest token, another tenant;
    # poison: an event a worker stage cannot take)
    # + histogram (14+1 buckets, _sum, _count): a change here changes dashboards and alerts.
    # CRM webhooks: 4 CRMs x (received, unauthorized, ignored, events, 4 reject reasons,
    # 3 discard reasons)
    # + 2 enriched CRMs x (queued, 3 outcomes, 3 REST outcomes) + 7 enrichment dead letters.
    # The consumer-lag gauge has no series until a consumer has fetched.
    # Recovery: the store-reset gauge + offset resets of the 2 stages (kpi, sla).
    assert len(samples) == 11 + 9 + 9 + 15 + 2 + 4 * 11 + 2 * 7 + 7 + 3


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [
        name
        for name in Settings.model_fields
        if f"SALESPULSE_{name.upper()}" not in readme and f"`_{name.upper()}`" not in readme
    ]
    assert not missing, f"README lacks SALESPULSE_* for {missing}"
