"""Whatever the ingest accepts, the worker stays up and counts it exactly or dead-letters it.

Hypothesis generates bodies that ``parse_events`` accepts — every event type, amounts up
to the door's limit, dates on the edges of the accepted range, CRM retries — for a
tenant east of UTC whose currency rates blow some amounts past what the store can hold.
They go through the real broker to the real KPI and SLA consumers and Redis. Then: both
stages still consume; every record is counted, dropped as a duplicate, or dead-lettered
(too late, poison); and every KPI read back from Redis equals the in-memory fold of the
events the worker did count (tests/kpi_memory.py), to the 1/10,000.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from handlers.validation import parse_events
from metrics.read.kpi_reader import KpiReader
from salespulse.app.compose import build_kpi_consumer, build_sla_consumer, topic_specs
from salespulse.core.events import EARLIEST, MAX_AMOUNT, MAX_DURATION_S, CrmEvent, EventType
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantConfig, TenantDirectory, TenantsFile
from salespulse.core.topics import ensure_topics
from streams.store_stage import StoreStage
from tests.helpers import eventually, metric_value, produce, read_topic
from tests.kpi_memory import MemoryStore

pytestmark = pytest.mark.integration

EXAMPLES = 12
# Read at the start of the module: the door bounds receipts by the clock.
NOW = datetime.now(UTC).replace(microsecond=0)
CONFIG = TenantConfig.model_validate({
    "timezone": "Pacific/Kiritimati",  # UTC+14: the first to leave any day
    "currency": "IDR",
    # XAU's rate takes a top amount past the store's 64 bits, XPT's past exact decimals
    "currency_rates": {"USD": "16000", "XAU": "1000000", "XPT": "1e10"},
    "pipelines": {"sales": {"stages": [
        {"id": "new"}, {"id": "offer", "limit_hours": 1},
        {"id": "won", "kind": "won"}, {"id": "lost", "kind": "lost"},
    ]}},
})  # fmt: skip
TENANTS = TenantDirectory(TenantsFile(tenants={f"edge-{n}": CONFIG for n in range(EXAMPLES + 5)}))
TYPES = get_args(EventType)


@st.composite
def amounts(draw: st.DrawFn) -> str:
    exact = st.integers(0, int(MAX_AMOUNT * 10_000)).map(lambda units: Decimal(units) / 10_000)
    edge = st.sampled_from([Decimal(0), MAX_AMOUNT, Decimal(10**13), Decimal("0.00005")])
    return str(draw(st.one_of(edge, exact, st.decimals(0, MAX_AMOUNT, places=6))))


@st.composite
def instants(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """(occurred_at, received_at) inside the door's range, often on its edges."""
    received = draw(
        st.sampled_from([NOW, NOW + timedelta(days=1), EARLIEST + timedelta(days=3)])
        | st.datetimes(EARLIEST.replace(tzinfo=None), NOW.replace(tzinfo=None)).map(
            lambda moment: moment.replace(tzinfo=UTC)
        )
    )
    ago = timedelta(seconds=draw(st.integers(-86_400, 40 * 86_400)))
    occurred = draw(st.sampled_from([EARLIEST, received + timedelta(days=1), received - ago]))
    return max(occurred, EARLIEST), received


@st.composite
def event_json(draw: st.DrawFn, number: int, tenant: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(TYPES))
    occurred, received = draw(instants())
    event: dict[str, Any] = {
        "event_id": f"e{number}",
        "tenant": tenant,
        "type": kind,
        "occurred_at": occurred.isoformat(),
        "received_at": received.isoformat(),
        "manager_id": draw(st.sampled_from(["m1", "m2", "m3"])),
        "entity_id": draw(st.sampled_from(["d1", "d2", "d3", "l1"])),
        "conversation_id": draw(st.sampled_from(["c1", "c2"])),
        "pipeline": draw(st.sampled_from(["sales", "other"])),
        "stage_to": draw(st.sampled_from(["new", "offer", "won", "lost"])),
        "direction": draw(st.sampled_from(["in", "out"])),
        "answered": draw(st.booleans()),
        "duration_s": draw(st.sampled_from([0, MAX_DURATION_S]) | st.floats(0, MAX_DURATION_S)),
        "rating": draw(st.integers(1, 5)),
        "source_channel": draw(st.sampled_from(["web", "ads"])),
        "channel": draw(st.sampled_from(["phone", "chat", "email"])),
    }
    if draw(st.booleans()) or kind in ("payment", "invoice", "marketing_cost"):
        event["amount"] = draw(amounts())
        event["currency"] = draw(st.sampled_from(["IDR", "USD", "XAU", "XPT", "EUR"]))
    if draw(st.booleans()):
        event["cost"] = draw(amounts())
    if kind == "deal_stage_changed":
        event["stage_kind"] = draw(st.sampled_from(["won", "lost", "open", None]))
    return event


@dataclass
class Worker:
    settings: Settings
    reader: KpiReader
    kpi: StoreStage[Any]
    sla: StoreStage[Any]
    kpi_metrics: PipelineMetrics
    sla_metrics: PipelineMetrics
    examples: itertools.count[int] = field(default_factory=itertools.count)

    def kpi_handled(self) -> float:
        metrics = self.kpi_metrics
        return float(
            metric_value(metrics, "salespulse_worker_events_applied_total")
            + metric_value(metrics, "salespulse_worker_duplicates_dropped_total")
            + metric_value(metrics, "salespulse_dead_letters_total", reason="too_late")
            + metric_value(metrics, "salespulse_dead_letters_total", reason="poison")
        )

    def sla_handled(self) -> float:
        metrics = self.sla_metrics
        return float(
            metric_value(metrics, "salespulse_worker_sla_events_applied_total")
            + metric_value(metrics, "salespulse_dead_letters_total", reason="poison")
        )

    def dead_letters(self) -> int:
        kpi, sla = self.kpi_metrics, self.sla_metrics
        return int(
            metric_value(kpi, "salespulse_dead_letters_total", reason="poison")
            + metric_value(kpi, "salespulse_dead_letters_total", reason="too_late")
            + metric_value(sla, "salespulse_dead_letters_total", reason="poison")
        )


@pytest.fixture(scope="module")
async def worker(
    broker, redis_server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{broker.port}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/0",
        events_topic="crm.events.edges",
        dlq_topic="crm.events.dlq.edges",
        consumer_group="kpi-edges",
        sla_consumer_group="sla-edges",
        redis_key_prefix="edges:",
        topic_partitions=4,
        kafka_session_timeout_s=6.0,
        batch_timeout_ms=20,
        batch_max_records=32,  # several batches per example: poison meets good events
        data_dir=tmp_path_factory.mktemp("edges"),
    )
    bootstrap = settings.kafka_bootstrap or ""
    await ensure_topics(bootstrap, topic_specs(settings))
    client = aioredis.Redis.from_url(settings.redis_url or "")
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    kpi_metrics = PipelineMetrics(CollectorRegistry())
    sla_metrics = PipelineMetrics(CollectorRegistry())
    kpi = build_kpi_consumer(settings, TENANTS, client, publisher, kpi_metrics)
    sla = build_sla_consumer(settings, TENANTS, client, publisher, sla_metrics)
    await kpi.start()
    await sla.start()
    reader = KpiReader(
        redis.Redis.from_url(settings.redis_url or ""), KpiKeys(settings.redis_key_prefix), TENANTS
    )
    yield Worker(settings, reader, kpi, sla, kpi_metrics, sla_metrics)
    await kpi.stop()
    await sla.stop()
    await publisher.stop()
    await client.aclose()


def poison_by_stage(records: list[Any], tenant: str) -> dict[str, Counter[str]]:
    """Per stage: how many copies of each event id of `tenant` it dead-lettered as poison."""
    found: dict[str, Counter[str]] = {"kpi": Counter(), "sla": Counter()}
    for record in records:
        headers = dict(record.headers)
        event = msgspec.json.decode(record.value)
        if headers["reason"] == b"poison" and event["tenant"] == tenant:
            stage = "kpi" if b"the kpi stage" in headers["problems"] else "sla"
            found[stage][event["event_id"]] += 1
    return found


def counted_by(events: list[CrmEvent], poisoned: Counter[str]) -> list[CrmEvent]:
    """One copy of each event a stage counted: a retry may count where its first copy was
    poison (the total it would have overflowed fell in between)."""
    copies = Counter(event.event_id for event in events)
    kept = {e.event_id: e for e in events if poisoned[e.event_id] < copies[e.event_id]}
    return list(kept.values())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # each example is seconds of real broker traffic: report a failure, do not shrink it
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), size=st.integers(1, 60))
async def test_every_accepted_event_is_counted_exactly_or_dead_lettered(
    worker: Worker, data: st.DataObject, size: int
) -> None:
    tenant = f"edge-{next(worker.examples)}"
    bodies = [data.draw(event_json(n, tenant)) for n in range(size)]
    # backfill mode: each event keeps its own receipt, checked like the ingest checks it
    accepted = parse_events(msgspec.json.encode(bodies), None)
    retries = data.draw(st.lists(st.sampled_from(accepted), max_size=size // 3))
    records = accepted + retries
    kpi_before, sla_before = worker.kpi_handled(), worker.sla_handled()
    await produce(worker.settings.kafka_bootstrap or "", worker.settings.events_topic, records)

    lateness = timedelta(days=worker.settings.lateness_days)
    in_time = [
        e for e in records if e.received_at is None or e.received_at - e.occurred_at <= lateness
    ]

    async def all_handled() -> bool:
        kpi_done = worker.kpi_handled() - kpi_before >= len(records)
        return kpi_done and worker.sla_handled() - sla_before >= len(in_time)

    await eventually(all_handled, 120, f"{len(records)} records of {tenant} handled")
    assert worker.kpi_handled() - kpi_before == len(records)
    assert worker.sla_handled() - sla_before == len(in_time)
    for stage in (worker.kpi, worker.sla):
        consuming = stage._consuming
        assert consuming is not None
        assert not consuming.done(), "a stage stopped consuming"

    dead = await read_topic(
        worker.settings.kafka_bootstrap or "", worker.settings.dlq_topic, worker.dead_letters()
    )
    poisoned = poison_by_stage(dead, tenant)
    store = MemoryStore(TENANTS)  # both stages, each over the events it counted
    store._apply_kpi_batch(counted_by(in_time, poisoned["kpi"]))
    store._apply_sla_batch(counted_by(in_time, poisoned["sla"]))
    for window, by in itertools.product(("all", "month", "today"), (None, "manager")):
        stream = await asyncio.to_thread(worker.reader.components, tenant, window, by, NOW)
        batch = store.components(tenant, window, by, NOW)
        differing = {
            (group, name): (stream.get(group, {}).get(name), batch.get(group, {}).get(name))
            for group in stream.keys() | batch.keys()
            for name in stream.get(group, {}).keys() | batch.get(group, {}).keys()
            if stream.get(group, {}).get(name) != batch.get(group, {}).get(name)
        }
        assert not differing, (tenant, window, by, differing)
