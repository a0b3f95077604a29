"""Retention that makes `salespulse rebuild` possible: crm.events outlives the day buckets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from salespulse.app.compose import topic_specs
from salespulse.core.settings import Settings

DAY_MS = 86_400_000


def test_the_events_topic_is_created_with_the_events_retention() -> None:
    settings = Settings(events_retention_days=500)
    partitions, configs = topic_specs(settings)[settings.events_topic]  # type: ignore[misc]
    assert partitions == settings.topic_partitions
    assert configs == {"retention.ms": str(500 * DAY_MS)}
    assert Settings().events_retention_days >= Settings().day_bucket_retention_days


def test_a_topic_retention_shorter_than_the_day_buckets_is_refused() -> None:
    with pytest.raises(ValidationError, match="SALESPULSE_EVENTS_RETENTION_DAYS must be at least"):
        Settings(events_retention_days=30, day_bucket_retention_days=400)
