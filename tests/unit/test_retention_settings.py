"""The retention settings keep their floors (docs/kpi-semantics.md, "Retention")."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from salespulse.core.settings import Settings


def test_defaults_are_valid_and_above_the_lateness() -> None:
    settings = Settings()
    assert settings.entity_retention_days > settings.lateness_days
    assert settings.conversation_retention_days > settings.lateness_days
    assert settings.conversation_retention_days > settings.wait_max_age_days
    # months outlive days: "March two years ago" is read from its month bucket
    assert settings.month_bucket_retention_days >= 4 * 365 > settings.day_bucket_retention_days


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"entity_retention_days": 35}, "SALESPULSE_ENTITY_RETENTION_DAYS"),
        ({"conversation_retention_days": 30}, "SALESPULSE_CONVERSATION_RETENTION_DAYS"),
        ({"wait_max_age_days": 40}, "SALESPULSE_WAIT_MAX_AGE_DAYS"),
        ({"month_bucket_retention_days": 399}, "SALESPULSE_MONTH_BUCKET_RETENTION_DAYS"),
    ],
)
def test_a_retention_at_or_below_its_floor_is_refused_naming_it(
    overrides: dict[str, float], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**overrides)  # type: ignore[arg-type]


def test_day_buckets_outlive_a_week() -> None:
    """The week window sums its seven day buckets: none may expire within its week."""
    assert Settings(day_bucket_retention_days=8).day_bucket_retention_days == 8
    with pytest.raises(ValidationError, match="day_bucket_retention_days"):
        Settings(day_bucket_retention_days=7)
