"""`salespulse` on a three-master Redis Cluster (`SALESPULSE_REDIS_MODE=cluster`,
tests/redis_cluster.py): the door, both worker stages and the read side of tenants whose
keys live on different masters, and a worker killed mid-stream that resumes to the KPIs
every event counted once gives."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from metrics.read.kpi_reader import Groups, KpiReader
from salespulse.cli import main
from salespulse.core import redis_clients
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.settings import Settings
from tests.helpers import T0, eventually, make_event, produce, wait_until_applied
from tests.integration.deploy_support import DEPLOY
from tests.integration.processes import salespulse_process
from tests.integration.test_end_to_end import Samples, sample, scrape
from tests.kpi_memory import MemoryStore
from tests.redis_cluster import RedisCluster, cluster_nodes

pytestmark = pytest.mark.integration

# On the three masters: acme's slot is on one, hooli's and umbrella's on the others.
TENANTS = ("acme", "hooli", "umbrella")


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: RedisCluster) -> Settings:
    return settings.model_copy(update={"redis_url": redis_cluster.url, "redis_mode": "cluster"})


@pytest.fixture
async def cluster_client(cluster_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = redis_clients.async_redis(cluster_settings, cluster_settings.redis_url or "")
    yield client
    await client.aclose()


def waiting(values: Samples, tenant: str) -> float:
    """The tenant's waiting clients over every team and channel."""
    return sum(
        value
        for (name, labels), value in values.items()
        if name == "salespulse_waiting_conversations" and ("tenant", tenant) in labels
    )


def test_the_tenants_live_on_every_master(
    cluster_settings: Settings, redis_cluster: RedisCluster
) -> None:
    keys = cluster_settings.kpi_keys()
    masters = {redis_cluster.node_of_key(keys.won(tenant)) for tenant in TENANTS}
    assert masters == {node.port for node in redis_cluster.nodes}


async def test_posted_events_of_tenants_on_three_masters_show_on_metrics_and_the_api(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{cluster_settings.http_port}"
    now = datetime.now(UTC)
    with salespulse_process("run", cluster_settings, tmp_path / "run.log"):
        async with aiohttp.ClientSession() as session:
            for n, tenant in enumerate(TENANTS):
                for event in (
                    {"event_id": f"call-{n}", "type": "call", "direction": "in",
                     "answered": True, "duration_s": 60.0 + n, "manager_id": "42",
                     "channel": "phone"},
                    {"event_id": f"msg-{n}", "type": "message", "direction": "in",
                     "channel": "chat", "conversation_id": f"conv-{n}"},
                ):  # fmt: skip
                    body = {**event, "tenant": tenant, "occurred_at": now.isoformat()}
                    async with session.post(f"{base}/v1/events", json=body) as response:
                        assert response.status == 202

            async def counted() -> bool:
                values = await scrape(session, base)
                return all(
                    sample(values, "salespulse_calls", {"tenant": t, "window": "all"}) == 1
                    and waiting(values, t) == 1
                    for t in TENANTS
                )

            await eventually(counted, 60, "every tenant's call and waiting client on /metrics")
            values = await scrape(session, base)
            for n, tenant in enumerate(TENANTS):
                talk = {"tenant": tenant, "window": "all"}
                assert sample(values, "salespulse_talk_time_seconds", talk) == 60.0 + n
                params = {"tenant": tenant, "window": "today"}
                async with session.get(f"{base}/v1/kpis", params=params) as response:
                    assert response.status == 200
                    assert (await response.json())["tenant"] == tenant
                async with session.get(f"{base}/v1/waiting", params={"tenant": tenant}) as response:
                    assert response.status == 200
                    waits = (await response.json())["waiting"]
                    assert [w["conversation"] for w in waits] == [f"conv-{n}"]


async def test_a_worker_killed_mid_stream_resumes_to_the_same_kpis_on_the_cluster(
    cluster_settings: Settings, cluster_client: aioredis.Redis, tmp_path: Path
) -> None:
    events = [
        make_event(
            f"k-{i}",
            ("call", "message", "deal_stage_changed")[i % 3],
            tenant=TENANTS[i % len(TENANTS)],
            manager_id=f"m-{i % 11}",
            entity_id=f"deal-{i % 97}",
            direction="out" if i % 2 else "in",
            stage_to=("new", "proposal", "won", "lost")[i % 4],
            occurred_at=T0 + timedelta(seconds=i),
        )
        for i in range(15_000)
    ]
    await produce(cluster_settings.kafka_bootstrap or "", cluster_settings.events_topic, events)
    tenants = cluster_settings.tenant_directory()
    memory = MemoryStore(tenants)
    memory.apply_batch(events)
    expected = {tenant: memory.components(tenant, "all", None, T0) for tenant in TENANTS}
    url = cluster_settings.redis_url or ""
    keys = cluster_settings.kpi_keys()
    reader = KpiReader(redis_clients.sync_redis(cluster_settings, url), keys, tenants)

    async def stored() -> dict[str, Groups]:
        return {
            tenant: await asyncio.to_thread(reader.components, tenant, "all", None, T0)
            for tenant in TENANTS
        }

    async def applied_offsets() -> int:
        raw = await cluster_client.hgetall(keys.offsets(cluster_settings.consumer_group))
        return sum(int(v) + 1 for v in raw.values())

    log = tmp_path / "worker.log"
    # Small batches, so that the kill lands between batches' (and tenants') Redis writes.
    with salespulse_process("worker", cluster_settings, log, batch_max_records=200) as first:

        async def partway() -> bool:
            return await applied_offsets() > 1_500

        await eventually(partway, 90, "the first worker to be partway through")
        first.send_signal(signal.SIGKILL)
        first.wait()
    partial = await applied_offsets()
    assert partial < len(events), "the kill should land before the end"

    with salespulse_process("worker", cluster_settings, log, batch_max_records=200):

        async def caught_up() -> bool:
            return await stored() == expected

        await eventually(caught_up, 120, "the restarted worker to reach the expected KPIs")
        groups = [cluster_settings.consumer_group, cluster_settings.sla_consumer_group]
        await wait_until_applied(cluster_client, cluster_settings, groups)
        assert await stored() == expected


def test_rebuild_refuses_a_cluster_clearly(
    cluster_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("kafka_bootstrap", "redis_url", "redis_key_prefix", "redis_mode"):
        monkeypatch.setenv(f"SALESPULSE_{name.upper()}", str(getattr(cluster_settings, name)))

    assert main(["rebuild"]) == 1
    err = capsys.readouterr().err
    assert "needs a single Redis" in err
    assert "nothing switched" in err


async def test_a_worker_started_before_the_cluster_is_made_dead_letters_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """Kubernetes starts the workers while its Job is still making the cluster: a slot map
    with no slot is an outage (waited out, or the worker stops and is restarted), never
    a poison batch to dead-letter; once the cluster is made every event counts once."""
    events = [
        make_event(f"w-{i}", "call", tenant=TENANTS[i % len(TENANTS)], occurred_at=T0)
        for i in range(30)
    ]
    with cluster_nodes(tmp_path / "nodes") as nodes:
        url = f"redis://127.0.0.1:{nodes[0].port}/0"
        unmade = settings.model_copy(update={"redis_url": url, "redis_mode": "cluster"})
        await produce(unmade.kafka_bootstrap or "", unmade.events_topic, events)
        log = tmp_path / "worker.log"
        with salespulse_process("worker", unmade, log):

            async def waiting_for_redis() -> bool:
                return "the Redis Cluster is not serving" in log.read_text(errors="replace")

            await eventually(waiting_for_redis, 60, "the worker to wait for the cluster")
            create = DEPLOY / "redis-cluster" / "create-cluster.sh"
            addresses = [f"127.0.0.1:{node.port}" for node in nodes]
            made = await asyncio.to_thread(
                subprocess.run,
                ["sh", str(create), *addresses],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert made.returncode == 0, made.stdout + made.stderr
        # As Kubernetes restarts a worker that stopped (one that kept waiting stops here).
        with salespulse_process("worker", unmade, log):
            reader = KpiReader(
                redis_clients.sync_redis(unmade, url), unmade.kpi_keys(), unmade.tenant_directory()
            )

            async def counted() -> bool:
                totals = [
                    (await asyncio.to_thread(reader.components, tenant, "all", None, T0))
                    .get(TOTAL_GROUP, {})
                    .get("calls")
                    for tenant in TENANTS
                ]
                return totals == [10, 10, 10]

            await eventually(counted, 120, "every call counted once the cluster is made")
        assert "isolating the event" not in log.read_text(errors="replace")
