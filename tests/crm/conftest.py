"""Fixtures of the CRM tests: per-test raw topic and consumer group, CRM secrets in env."""

from __future__ import annotations

import pytest

from salespulse.core.settings import Settings
from tests.crm.support import SECRET_ENV


@pytest.fixture
def crm_settings(settings: Settings, unique: str) -> Settings:
    return settings.model_copy(
        update={"raw_topic": f"crm.raw.{unique}", "enrichment_group": f"enrich-{unique}"}
    )


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
