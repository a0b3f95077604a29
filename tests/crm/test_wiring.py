"""The composition root serves the webhook routes, runs the enrichment, creates the raw topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.enrichment.stage import CrmEnrichmentService
from handlers.enrichment.users import UserSyncService
from salespulse.app.compose import Role, build_runtime, topic_specs
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantsFileError

TENANTS = """
tenants:
  acme:
    crm:
      amocrm: {url_secret: {env: ACME_AMO_SECRET}, account_id: 29013640}
"""


@pytest.fixture
def wired(crm_settings: Settings, tmp_path: Path, secrets_env: None) -> Settings:
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(TENANTS)
    return crm_settings.model_copy(update={"tenants_file": tenants_file})


def test_the_raw_topic_is_created_with_the_others(crm_settings: Settings) -> None:
    assert topic_specs(crm_settings)[crm_settings.raw_topic] == crm_settings.topic_partitions


def test_the_ingest_serves_the_webhooks_and_the_worker_enriches(wired: Settings) -> None:
    ingest = build_runtime(wired, [Role.INGEST])
    paths = {route.path for route in ingest.routes if hasattr(route, "path")}
    assert {
        "/v1/webhooks/bitrix24/{tenant}",
        "/v1/webhooks/amocrm/{tenant}/{secret}",
        "/v1/webhooks/hubspot/{tenant}",
        "/v1/webhooks/pipedrive/{tenant}",
    } <= paths
    assert not any(isinstance(s, CrmEnrichmentService | UserSyncService) for s in ingest.services)
    worker = build_runtime(wired, [Role.WORKER])
    assert any(isinstance(s, CrmEnrichmentService) for s in worker.services)
    assert any(isinstance(s, UserSyncService) for s in worker.services)  # manager names


def test_a_missing_crm_secret_stops_the_ingest_from_starting(
    wired: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACME_AMO_SECRET")
    with pytest.raises(TenantsFileError, match=r"tenants\.acme\.crm\.amocrm\.url_secret"):
        build_runtime(wired, [Role.INGEST])
