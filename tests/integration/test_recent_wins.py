"""KpiReader.recent_wins against a real redis-server: the wall's celebration source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from metrics.read.kpi_reader import KpiReader
from metrics.read.won_deals import RecentWin
from salespulse.core.kpi.buckets import to_us
from salespulse.core.kpi.codecs import WonDeal, encode_won
from salespulse.core.kpi.redis_layout import MONEY_SCALE, KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFile

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_recent_wins_are_the_newest_won_deals_since_a_moment_without_clients(
    settings: Settings, redis_url: str
):
    keys = KpiKeys(settings.redis_key_prefix)
    client = redis.Redis.from_url(redis_url)
    reader = KpiReader(client, keys, TenantDirectory(TenantsFile()), clock=NOW.timestamp)

    def won(minutes_ago: float, units: int | None, manager: str) -> bytes:
        at = to_us(NOW - timedelta(minutes=minutes_ago))
        return encode_won(WonDeal(at, units, "client-1", None, manager, "north", "sales", "web"))

    client.hset(
        keys.won("acme"),
        mapping={
            "d-old": won(30, 5 * MONEY_SCALE, "7"),
            "d-1": won(3, 1_250_000 * MONEY_SCALE, "17"),
            "d-2": won(1, None, "42"),  # no rate converted its amount
            "d-3": won(2, 10 * MONEY_SCALE, "17"),
        },
    )
    client.hset(keys.won("other"), mapping={"d-9": won(1, 1, "5")})

    since = NOW - timedelta(minutes=10)
    wins = reader.recent_wins("acme", since)
    assert [win.deal for win in wins] == ["d-2", "d-3", "d-1"]  # newest first, d-old left out
    assert wins[2] == RecentWin(
        "d-1", to_us(NOW - timedelta(minutes=3)), 1_250_000 * MONEY_SCALE, "17", "north"
    )
    assert wins[0].units is None
    assert [win.deal for win in reader.recent_wins("acme", since, limit=1)] == ["d-2"]
    assert reader.recent_wins("nobody", since) == []
