"""Scale-out: `salespulse worker` processes in one consumer group, as production runs them.

Real subprocesses on the harness's broker and Redis, fed a slice of the Maven CRM history
(tests/data/maven_crm: 7,767 events of a real-shaped B2B pipeline). The reference is one
worker alone; two workers sharing the partitions, and two workers of which one is SIGKILLed
mid-stream, must leave exactly the same KPIs in Redis, for every window and grouping.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from handlers.validation import parse_events
from metrics.read.kpi_reader import Groups, KpiReader
from salespulse.app.embedded import free_port
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS, TOTAL_GROUP, WINDOWS
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, load_tenants
from salespulse.dev.datasets import maven_crm
from tests.helpers import eventually, produce
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# A public-domain slice carried in the repo (tests/data/maven_crm/README.md says which).
MAVEN = ROOT / "tests" / "data" / "maven_crm"
DEMO_TENANTS = ROOT / "salespulse" / "app" / "demo_tenants.yaml"
TENANT = "maven"
# The history ends on 2017-12-31: read at its last evening, every window holds something.
AT = datetime(2017, 12, 31, 18, tzinfo=UTC)
PARTITIONS = 4
Snapshot = dict[tuple[str, str | None], Groups]


@pytest.fixture(scope="module")
def history() -> list[CrmEvent]:
    """The Maven history as the ingest decodes it (a backfill keeps each event's times)."""
    events = list(maven_crm(MAVEN))
    return parse_events(msgspec.json.encode(events), None)


@pytest.fixture(scope="module")
def tenants() -> TenantDirectory:
    return TenantDirectory(load_tenants(DEMO_TENANTS))


def phase(settings: Settings, name: str) -> Settings:
    """One run's own topic, consumer group and Redis keys on the shared servers."""
    return settings.model_copy(
        update={
            "events_topic": f"{settings.events_topic}.{name}",
            "consumer_group": f"{settings.consumer_group}-{name}",
            "sla_consumer_group": f"{settings.sla_consumer_group}-{name}",
            "redis_key_prefix": f"{settings.redis_key_prefix}{name}:",
            "tenants_file": DEMO_TENANTS,
            "topic_partitions": PARTITIONS,
            # Small batches: many Redis writes and commits per worker, so a kill lands
            # between them rather than after the end.
            "batch_max_records": 200,
        }
    )


@contextmanager
def workers(
    settings: Settings, count: int, tmp_path: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], Settings, Path]]]:
    """`count` worker processes of one group, each with its own HTTP port and data dir."""
    with ExitStack() as stack:
        started = []
        for n in range(count):
            own = settings.model_copy(
                update={"http_port": free_port(), "data_dir": tmp_path / f"worker-{n}"}
            )
            log = tmp_path / f"{settings.consumer_group}-worker-{n}.log"
            started.append((stack.enter_context(salespulse_process("worker", own, log)), own, log))
        yield started


def counter(settings: Settings, name: str) -> float:
    url = f"http://127.0.0.1:{settings.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def ready(settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.http_port}/readyz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state and member count, as the broker's coordinator reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [(_error, _group, state, _protocol_type, _protocol, members)] = response.groups
    finally:
        await admin.close()
    return str(state), len(members)


async def wait_for_members(bootstrap: str, group: str, count: int) -> None:
    async def joined() -> bool:
        return await group_state(bootstrap, group) == ("Stable", count)

    await eventually(joined, 60, f"{count} stable member(s) in {group}")


def records_per_partition(events: list[CrmEvent], topic: str) -> Counter[str]:
    """Where the producer puts each event: its key's partition (aiokafka's default)."""
    partitions = list(range(PARTITIONS))
    return Counter(
        f"{topic}:{DefaultPartitioner()(event.partition_key, partitions, partitions)}"
        for event in events
    )


async def applied_offsets(client: aioredis.Redis, settings: Settings) -> dict[str, int]:
    """``topic:partition`` → the offset after the last record in Redis (its watermark + 1)."""
    key = KpiKeys(settings.redis_key_prefix).offsets(settings.consumer_group)
    stored = await client.hgetall(key)
    return {k.decode() if isinstance(k, bytes) else k: int(v) + 1 for k, v in stored.items()}


async def wait_all_applied(
    client: aioredis.Redis, settings: Settings, events: list[CrmEvent]
) -> None:
    """Every record of the topic is in Redis: each partition's watermark is at its end."""
    ends = dict(records_per_partition(events, settings.events_topic))

    async def done() -> bool:
        return await applied_offsets(client, settings) == ends

    await eventually(done, 120, f"{len(events)} records applied for {settings.consumer_group}")


def snapshot(redis_url: str, settings: Settings, tenants: TenantDirectory) -> Snapshot:
    reader = KpiReader(redis.Redis.from_url(redis_url), KpiKeys(settings.redis_key_prefix), tenants)
    return {
        (window, by): reader.components(TENANT, window, by, AT)
        for window, by in itertools.product(WINDOWS, (None, *DIMENSIONS))
    }


@pytest.fixture(scope="module")
async def reference(
    broker, redis_server, history, tenants, tmp_path_factory: pytest.TempPathFactory
) -> Snapshot:
    """The KPIs that one worker alone leaves in Redis for the whole history."""
    unique = uuid.uuid4().hex[:10]
    alone = phase(
        Settings(
            kafka_bootstrap=f"127.0.0.1:{broker.port}",
            redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
            events_topic=f"crm.events.{unique}",
            dlq_topic=f"crm.events.dlq.{unique}",
            consumer_group=f"kpi-{unique}",
            sla_consumer_group=f"sla-{unique}",
            app_id=f"salespulse-{unique}",
            redis_key_prefix=f"t-{unique}:",
            kafka_session_timeout_s=6.0,
            batch_timeout_ms=20,
        ),
        "alone",
    )
    assert alone.kafka_bootstrap is not None
    assert alone.redis_url is not None
    await produce(alone.kafka_bootstrap, alone.events_topic, history, partitions=PARTITIONS)
    client = aioredis.Redis.from_url(alone.redis_url)
    try:
        with workers(alone, 1, tmp_path_factory.mktemp("alone")):
            await wait_all_applied(client, alone, history)
    finally:
        await client.aclose()
    return await asyncio.to_thread(snapshot, alone.redis_url, alone, tenants)


def test_one_worker_alone_counts_the_whole_history(reference, history):
    won = sum(1 for event in history if event.stage_kind == "won")
    assert reference[("all", None)][TOTAL_GROUP]["won"] == won > 1000
    assert reference[("month", None)][TOTAL_GROUP]["won"] > 0, "windows around AT hold data"


async def test_two_workers_share_the_partitions_and_count_the_same(
    settings, history, tenants, reference, redis_client, redis_url, bootstrap, tmp_path
):
    shared = phase(settings, "shared")
    await produce(bootstrap, shared.events_topic, [], partitions=PARTITIONS)  # the topic only
    with workers(shared, 2, tmp_path) as pair:
        # Both in the group before any event exists: each must get partitions and work.
        await wait_for_members(bootstrap, shared.consumer_group, 2)
        await produce(bootstrap, shared.events_topic, history, partitions=PARTITIONS)
        await wait_all_applied(redis_client, shared, history)
        applied = [
            await asyncio.to_thread(counter, own, "salespulse_worker_events_applied_total")
            for _, own, _ in pair
        ]
        dropped = [
            await asyncio.to_thread(counter, own, "salespulse_worker_duplicates_dropped_total")
            for _, own, _ in pair
        ]
        for _, own, _ in pair:
            assert await asyncio.to_thread(ready, own), "a working worker is ready"
    assert all(count > 0 for count in applied), f"a worker got no partition: {applied}"
    assert sum(applied) == len(history), "each event applied by exactly one worker"
    assert dropped == [0, 0]
    assert await asyncio.to_thread(snapshot, redis_url, shared, tenants) == reference


async def test_a_worker_killed_mid_stream_is_taken_over_with_nothing_lost_or_doubled(
    settings, history, tenants, reference, redis_client, redis_url, bootstrap, tmp_path
):
    killed = phase(settings, "killed")
    await produce(bootstrap, killed.events_topic, [], partitions=PARTITIONS)
    first, rest = history[: len(history) * 3 // 5], history[len(history) * 3 // 5 :]
    with workers(killed, 2, tmp_path) as [(victim, victim_settings, _), (_, survivor, _)]:
        await wait_for_members(bootstrap, killed.consumer_group, 2)
        await produce(bootstrap, killed.events_topic, first, partitions=PARTITIONS)

        async def victim_working() -> bool:
            applied = await asyncio.to_thread(
                counter, victim_settings, "salespulse_worker_events_applied_total"
            )
            return applied > 0

        await eventually(victim_working, 60, "the victim to apply its first batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # The rest of the stream lands on every partition, the dead worker's included.
        await produce(bootstrap, killed.events_topic, rest, partitions=PARTITIONS)
        await wait_all_applied(redis_client, killed, history)
        await wait_for_members(bootstrap, killed.consumer_group, 1)
        dropped = await asyncio.to_thread(
            counter, survivor, "salespulse_worker_duplicates_dropped_total"
        )
    after_kill = records_per_partition(rest, killed.events_topic)
    assert len(after_kill) == PARTITIONS, "every partition got records after the kill"
    # ...and wait_all_applied saw every record of every partition in Redis, though only the
    # survivor was alive to apply what came after the kill.
    # Batches the victim wrote but never committed are skipped by watermark, not re-counted.
    assert dropped == 0
    assert await asyncio.to_thread(snapshot, redis_url, killed, tenants) == reference
