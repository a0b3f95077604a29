"""A window's raw sums on real Redis: summed inside Redis (sum_buckets.lua) for windows of
many buckets, exactly equal to summing in Python, also where a double would round."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from metrics.read.kpi_reader import KpiReader, sum_buckets_script
from salespulse.core.kpi.buckets import window_buckets
from salespulse.core.kpi.codecs import encode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory, TenantsFile

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 21, 30, 30, tzinfo=UTC)
DIMS = ("m-1", "north", "sales", "web")
TENANTS = TenantDirectory(TenantsFile())


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    sync = redis.Redis.from_url(redis_url)
    yield sync
    sync.close()


def _fill(client: redis.Redis, keys: KpiKeys, window: str, amounts: list[int]) -> None:
    """One field per component in each of the window's buckets, bucket i holding
    amounts[i % len(amounts)] (and a field only every third bucket has)."""
    granularity, buckets = window_buckets(window, NOW, TENANTS.zone_for("acme"))
    for i, bucket in enumerate(buckets):
        key = keys.bucket("acme", granularity, bucket)
        client.hset(key, encode_field(("revenue", *DIMS)), amounts[i % len(amounts)])
        if i % 3 == 0:
            client.hset(key, encode_field(("won", *DIMS)), 1)


def _python_sums(client: redis.Redis, keys: KpiKeys, window: str) -> dict[str, int]:
    granularity, buckets = window_buckets(window, NOW, TENANTS.zone_for("acme"))
    sums: dict[bytes | str, int] = {}
    for bucket in buckets:
        for name, value in client.hgetall(keys.bucket("acme", granularity, bucket)).items():
            sums[name] = sums.get(name, 0) + int(value)
    return {
        "revenue": sums.get(encode_field(("revenue", *DIMS)), 0),
        "won": sums.get(encode_field(("won", *DIMS)), 0),
    }


@pytest.mark.parametrize("window", ["15m", "1h", "24h"])
@pytest.mark.parametrize(
    "amounts",
    [
        [1, -2, 3],
        # ~2^57 each: a double cannot hold these, the reader must sum them in Python
        [144_115_188_075_855_873, 3],
        # each exact in a double, but the running sum passes 2^53 and comes back
        [2**53 - 1, -(2**53 - 1), 7],
    ],
    ids=["small", "beyond-double", "passes-2^53"],
)
def test_window_sums_equal_exact_python_sums(
    client: redis.Redis, unique: str, window: str, amounts: list[int]
) -> None:
    keys = KpiKeys(f"{unique}:")
    _fill(client, keys, window, amounts)
    reader = KpiReader(client, keys, TENANTS, clock=NOW.timestamp)
    raw = reader.raw("acme", window, NOW)
    expected = _python_sums(client, keys, window)
    assert raw == {(component, DIMS): amount for component, amount in expected.items()}
    assert raw[("won", DIMS)] > 0  # the sparse field is there too


def test_the_script_sums_in_redis_and_declines_what_a_double_would_round(
    client: redis.Redis, unique: str
) -> None:
    """The reader's fast path is really taken for ordinary sums (and refused for huge ones)."""
    keys = KpiKeys(f"{unique}:")
    script = client.register_script(sum_buckets_script())
    revenue = encode_field(("revenue", *DIMS))
    names = [keys.bucket("acme", "m", str(minute)) for minute in range(3)]
    for name, amount in zip(names, (5, -2, 40), strict=True):
        client.hset(name, revenue, amount)
    assert script(keys=names) == [1, revenue, 43]
    client.hset(names[1], revenue, 2**53)
    assert script(keys=names) == [0]
    assert script(keys=[]) == [1]


@pytest.mark.parametrize("big", [False, True], ids=["small", "beyond-double"])
def test_windows_read_together_equal_each_read_alone(
    client: redis.Redis, unique: str, big: bool
) -> None:
    """raw_windows (the collector's one round trip; the week as its days before today,
    today and its days after) gives every window the sums of raw(), in the same order."""
    keys = KpiKeys(f"{unique}:")
    zone = TENANTS.zone_for("acme")
    other = ("m-2", "south", "sales", "ads")
    for window in ("15m", "1h", "24h", "week", "month", "all"):
        granularity, buckets = window_buckets(window, NOW, zone)
        for i, bucket in enumerate(buckets):
            key = keys.bucket("acme", granularity, bucket)
            # fields that only some buckets hold, first met in different buckets
            client.hset(key, encode_field((f"calls:in:answered{i % 4}", *DIMS)), i + 1)
            if i % 2:
                client.hset(key, encode_field(("won", *other)), 2)
            client.hset(key, encode_field(("revenue", *DIMS)), 2**60 if big and i == 2 else 5)
    windows = ("15m", "1h", "24h", "today", "week", "month", "all")
    reader = KpiReader(client, keys, TENANTS, clock=NOW.timestamp)
    together = reader.raw_windows("acme", windows, NOW)
    assert list(together) == list(windows)
    for window in windows:
        alone = reader.raw("acme", window, NOW)
        assert list(together[window].items()) == list(alone.items()), window
    # the week's days on both sides of today are really in it
    assert len(window_buckets("week", NOW, zone)[1]) == 7
    assert together["week"][("won", other)] == 6


@pytest.mark.parametrize("window", ["today", "1h"])
def test_fields_that_parse_alike_are_added_up(
    client: redis.Redis, unique: str, window: str
) -> None:
    """Two spellings of one field (never written so) still read as one sum, from a single
    bucket's HGETALL and from the script alike."""
    keys = KpiKeys(f"{unique}:")
    granularity, buckets = window_buckets(window, NOW, TENANTS.zone_for("acme"))
    key = keys.bucket("acme", granularity, buckets[0])
    client.hset(key, encode_field(("won", *DIMS)), 2)
    client.hset(key, b'["won", "m-1", "north", "sales", "web"]', 3)
    client.hset(key, encode_field(("lost", *DIMS)), 1)
    reader = KpiReader(client, keys, TENANTS, clock=NOW.timestamp)
    together = reader.raw_windows("acme", [window], NOW)[window]
    assert together == reader.raw("acme", window, NOW) == {("won", DIMS): 5, ("lost", DIMS): 1}


@pytest.mark.parametrize("window", ["today", "1h", "15m", "month"])
def test_fields_a_store_wrote_before_in_full_add_up_with_the_shorter_ones(
    client: redis.Redis, unique: str, window: str
) -> None:
    """A store written before fields left out their empty dimensions at the end holds
    the full arrays; after an upgrade one window reads both as one sum, in one bucket and
    across buckets."""
    keys = KpiKeys(f"{unique}:")
    granularity, buckets = window_buckets(window, NOW, TENANTS.zone_for("acme"))
    manager_only = ("m-1", "none", "none", "none")
    assert encode_field(("won", *manager_only)) == b'["won","m-1"]'
    full = b'["won","m-1","none","none","none"]'
    first = keys.bucket("acme", granularity, buckets[0])
    client.hset(first, full, 2)
    client.hset(first, encode_field(("won", *manager_only)), 3)
    expected = 2 + 3
    if len(buckets) > 1:  # the 15m and 1h windows: one more bucket, written before
        client.hset(keys.bucket("acme", granularity, buckets[-1]), full, 4)
        expected += 4
    reader = KpiReader(client, keys, TENANTS, clock=NOW.timestamp)
    together = reader.raw_windows("acme", [window], NOW)[window]
    assert together == reader.raw("acme", window, NOW) == {("won", manager_only): expected}
