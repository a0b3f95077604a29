"""Test harness: a real Kafka-protocol broker (Tansu) and a real redis-server per session
(and, for the cluster tests, a real three-master Redis Cluster).

Both are local processes on free ports, started once and stopped at the end. Every test
gets its own topics, consumer group and Redis key prefix, so tests never see each
other's data and can share the servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis
import pytest
import redis.asyncio as aioredis

from salespulse.app.embedded import LocalProcess, free_port, start_broker, start_redis
from salespulse.core import redis_clients
from salespulse.core.settings import Settings

# Autouse: every /v1 JSON answer a test receives is checked against the OpenAPI document.
from tests.openapi_check import validate_v1_answers  # noqa: F401
from tests.redis_cluster import RedisCluster, start_redis_cluster

# Property tests run by profile: "dev" (the default) keeps the inner loop quick, "ci" (CI
# sets CI=true) runs at least as many examples as any property was ever given. Properties
# state no example count of their own, so the profile decides; HYPOTHESIS_PROFILE picks
# one by name. Loaded here, before any test module applies its @settings.
hypothesis.settings.register_profile("dev", max_examples=30)
hypothesis.settings.register_profile("ci", max_examples=300)
_ON_CI = os.environ.get("CI", "").lower() in ("true", "1")
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if _ON_CI else "dev"))


@pytest.fixture(autouse=True)
def _no_salespulse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("SALESPULSE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def broker(servers_dir: Path) -> Iterator[LocalProcess]:
    with start_broker(servers_dir / "broker") as process:
        yield process


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[LocalProcess]:
    with start_redis(servers_dir / "redis") as process:
        yield process


@pytest.fixture(scope="session")
def redis_cluster(servers_dir: Path) -> Iterator[RedisCluster]:
    """Three redis-server masters in cluster mode (tests/redis_cluster.py), started only
    for the tests that ask for it."""
    with start_redis_cluster(servers_dir / "redis-cluster") as cluster:
        yield cluster


@pytest.fixture
async def cluster_client(redis_cluster: RedisCluster) -> AsyncIterator[aioredis.Redis]:
    """A cluster client of the product's (SALESPULSE_REDIS_MODE=cluster) on that cluster."""
    client = redis_clients.async_redis(
        Settings(redis_mode="cluster", redis_url=redis_cluster.url), redis_cluster.url
    )
    yield client
    await client.aclose()


@pytest.fixture
def bootstrap(broker: LocalProcess) -> str:
    return f"127.0.0.1:{broker.port}"


@pytest.fixture
def redis_url(redis_server: LocalProcess) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Settings:
    """Settings of one test: its own topics, groups, key prefix, port and data dir."""
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        events_topic=f"crm.events.{unique}",
        dlq_topic=f"crm.events.dlq.{unique}",
        consumer_group=f"kpi-{unique}",
        # Its own SLA group too: a group shared across tests rebalances over all of them,
        # and waits out the session of a worker another test killed.
        sla_consumer_group=f"sla-{unique}",
        app_id=f"salespulse-{unique}",
        redis_key_prefix=f"t-{unique}:",
        http_port=free_port(),
        data_dir=tmp_path / "data",
        topic_partitions=4,
        kafka_session_timeout_s=6.0,
        produce_timeout_s=5.0,
        batch_timeout_ms=20,
        # Tests date their events from a fixed T0 (tests/helpers.py) while waits expire by
        # the wall clock: a wait must not leave the list just because the calendar moved on.
        # tests/integration/test_retention.py sets its own short retentions.
        wait_max_age_days=3650,
        conversation_retention_days=3651,
        # For the same reason, an event of T0 posted today must not be too late (received
        # more than SALESPULSE_LATENESS_DAYS after it happened) once the calendar passes
        # T0 + 35 days; the product's own limits are tested in test_too_late_at_the_door.py.
        lateness_days=3000,
        dedupe_retention_days=3001,
        entity_retention_days=3001,
    )


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
