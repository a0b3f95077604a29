"""The ingest's disk spool against a real broker that is down, then comes back.

ARCHITECTURE, "Nothing lost": when Kafka is down the ingest spools to local disk and
drains later rather than failing the CRM (Bitrix24 never retries).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from handlers.spool import DiskSpool
from salespulse.app.compose import topic_specs
from salespulse.app.embedded import free_port, start_broker
from salespulse.core.events import decode_event
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from tests.helpers import eventually, metric_value, read_topic
from tests.integration.processes import salespulse_process

pytestmark = pytest.mark.integration


def event(n: int, deal: str = "deal-1") -> dict[str, object]:
    return {
        "event_id": f"spool-{n}",
        "tenant": "acme",
        "type": "deal_stage_changed",
        "occurred_at": f"2026-11-22T08:00:{n:02d}Z",
        "entity_id": deal,
        "pipeline": "sales",
        "stage_to": f"s{n}",
    }


async def hang(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it has stopped: kill() returns
    before that (under CPU load, measured: 7 kills in 100 with a broker thread still
    running), and a broker thread still running acknowledges what it is sent."""
    os.kill(pid, signal.SIGSTOP)

    async def every_thread_stopped() -> bool:
        return all(state in ("T", "t") for state in thread_states(pid))

    await eventually(every_thread_stopped, 30, f"every thread of process {pid} to stop")


def thread_states(pid: int) -> list[str]:
    """The state letter of each thread (proc(5) stat, after the command's ')')."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rpartition(")")[2].split()[0])
        except FileNotFoundError:  # a thread that exited meanwhile
            continue
    return states


def spool_bytes(metrics: PipelineMetrics) -> float:
    [family] = metrics.spool_bytes.collect()
    return float(family.samples[0].value)


async def spooling_ingest(
    port: int, settings: Settings, spool_dir: Path, max_bytes: int = 1 << 20
) -> tuple[TestClient[web.Request, web.Application], PipelineMetrics, KafkaPublisher]:
    metrics = PipelineMetrics(CollectorRegistry())
    publisher = KafkaPublisher(
        f"127.0.0.1:{port}",
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=5.0,
        spool_after_s=1.0,
        metrics=metrics,
    )
    publisher.use_spool(DiskSpool(spool_dir, max_bytes))
    app = web.Application()
    app.add_routes(IngestHandler(publisher, metrics, max_body_bytes=1 << 20).routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, metrics, publisher


async def test_a_down_broker_costs_nothing_the_spool_drains_in_order(settings, tmp_path):
    port = free_port()
    client, metrics, publisher = await spooling_ingest(port, settings, tmp_path / "spool")
    try:
        started = time.monotonic()
        first = await client.post("/v1/events", json=[event(1), event(2)])
        assert first.status == 202, "kept on disk: the CRM gets its 2xx"
        assert time.monotonic() - started < 3, "the sender waits ~spool_after_s, not longer"
        # Queued behind the spooled ones (no broker wait now), and a bad body's dead letter.
        assert (await client.post("/v1/events", json=event(3))).status == 202
        bad = await client.post(
            "/v1/events", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad.status == 400
        assert (await bad.json())["dead_lettered"] is True
        assert metric_value(metrics, "salespulse_ingest_spooled_records_total") == 4
        assert spool_bytes(metrics) > 0
        assert metric_value(metrics, "salespulse_ingest_broker_unavailable_total") == 0

        with start_broker(port=port) as broker:
            bootstrap = f"127.0.0.1:{broker.port}"
            await ensure_topics(bootstrap, topic_specs(settings))
            # The broker is back but the drainer is still backing off: this one must not
            # overtake the spooled events of its deal.
            assert (await client.post("/v1/events", json=event(4))).status == 202

            async def drained() -> bool:
                return spool_bytes(metrics) == 0

            await eventually(drained, 60, "the spool to drain into the broker")
            records = await read_topic(bootstrap, settings.events_topic, 4)
            assert [decode_event(r.value).event_id for r in records] == [
                "spool-1",
                "spool-2",
                "spool-3",
                "spool-4",
            ], "one deal's events keep their order through the spool"
            [dead] = await read_topic(bootstrap, settings.dlq_topic, 1)
            assert dead.value == b"{"
            assert dict(dead.headers)["reason"] == b"malformed_json"
            assert metric_value(metrics, "salespulse_ingest_spool_drained_records_total") == 5
            # Drained: the next event goes straight to the broker again.
            assert (await client.post("/v1/events", json=event(5))).status == 202
            assert len(await read_topic(bootstrap, settings.events_topic, 5)) == 5
            assert metric_value(metrics, "salespulse_ingest_spooled_records_total") == 5
    finally:
        await client.close()
        await publisher.stop()
    assert (tmp_path / "spool" / "records").stat().st_size == 0


async def test_what_one_run_spooled_the_next_run_sends(settings, tmp_path):
    port = free_port()
    client, _, publisher = await spooling_ingest(port, settings, tmp_path / "spool")
    try:
        assert (await client.post("/v1/events", json=[event(1), event(2)])).status == 202
    finally:
        await client.close()
        await publisher.stop()  # stops with the records still on disk
    with start_broker(port=port) as broker:
        bootstrap = f"127.0.0.1:{broker.port}"
        await ensure_topics(bootstrap, topic_specs(settings))
        client, _, publisher = await spooling_ingest(port, settings, tmp_path / "spool")
        try:
            records = await read_topic(bootstrap, settings.events_topic, 2)
            assert [decode_event(r.value).event_id for r in records] == ["spool-1", "spool-2"]
        finally:
            await client.close()
            await publisher.stop()


async def test_a_full_spool_answers_503_and_keeps_what_it_holds(settings, tmp_path):
    port = free_port()
    client, metrics, publisher = await spooling_ingest(
        port, settings, tmp_path / "spool", max_bytes=1500
    )
    try:
        assert (await client.post("/v1/events", json=event(1))).status == 202
        many = [event(n, deal=f"deal-{n}") for n in range(2, 20)]
        refused = await client.post("/v1/events", json=many)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "5"
        assert metric_value(metrics, "salespulse_ingest_broker_unavailable_total") == 1
        assert metric_value(metrics, "salespulse_ingest_spooled_records_total") == 1
        with start_broker(port=port) as broker:
            bootstrap = f"127.0.0.1:{broker.port}"
            await ensure_topics(bootstrap, topic_specs(settings))
            [record] = await read_topic(bootstrap, settings.events_topic, 1)
            assert msgspec.json.decode(record.value)["event_id"] == "spool-1"
    finally:
        await client.close()
        await publisher.stop()


async def test_a_broker_that_hangs_still_gets_the_sender_answered_in_time(settings, tmp_path):
    """A broker that stops answering mid-flight (a hung or overloaded node, here SIGSTOP):
    the sender still has its 2xx within amoCRM's 2 s, from the spool, although dropping a
    producer with batches in flight takes seconds; then everything drains when it wakes."""
    with start_broker() as broker:
        bootstrap = f"127.0.0.1:{broker.port}"
        await ensure_topics(bootstrap, topic_specs(settings))
        client, metrics, publisher = await spooling_ingest(broker.port, settings, tmp_path / "s")
        pid = broker.pid
        try:
            assert (await client.post("/v1/events", json=event(0))).status == 202
            assert metric_value(metrics, "salespulse_ingest_spooled_records_total") == 0, (
                "a healthy broker: no spool"
            )
            await hang(pid)
            try:
                for n in range(1, 4):
                    started = time.monotonic()
                    response = await client.post("/v1/events", json=event(n))
                    assert response.status == 202
                    assert time.monotonic() - started < 1.8, f"request {n} waited for the broker"
                assert metric_value(metrics, "salespulse_ingest_spooled_records_total") == 3
            finally:
                os.kill(pid, signal.SIGCONT)

            async def drained() -> bool:
                return spool_bytes(metrics) == 0

            await eventually(drained, 60, "the spool to drain once the broker wakes")
            records = await read_topic(bootstrap, settings.events_topic, 4)
            assert {decode_event(r.value).event_id for r in records} == {
                f"spool-{n}" for n in range(4)
            }
        finally:
            await client.close()
            await publisher.stop()


async def test_an_ingest_started_while_the_broker_is_down_serves_and_catches_up(settings, tmp_path):
    """`salespulse ingest` itself: it starts and takes events with Kafka down, and only
    once Kafka is up creates the topics (the configured partitions, not a broker's default
    auto-created ones) and drains into them."""
    port = free_port()
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    base = f"http://127.0.0.1:{settings.http_port}"
    with salespulse_process("ingest", down, tmp_path / "ingest.log"):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200, "ready: it can spool"
            async with session.post(f"{base}/v1/events", json=[event(1), event(2)]) as response:
                assert response.status == 202
            with start_broker(port=port):
                records = await read_topic(down.kafka_bootstrap, settings.events_topic, 2, 60)
                assert [decode_event(r.value).event_id for r in records] == ["spool-1", "spool-2"]
                admin = AIOKafkaAdminClient(bootstrap_servers=down.kafka_bootstrap)
                await admin.start()
                try:
                    [described] = await admin.describe_topics([settings.events_topic])
                finally:
                    await admin.close()
                assert len(described["partitions"]) == settings.topic_partitions
                async with session.post(f"{base}/v1/events", json=event(3)) as response:
                    assert response.status == 202
                assert len(await read_topic(down.kafka_bootstrap, settings.events_topic, 3)) == 3
    log = (tmp_path / "ingest.log").read_text()
    assert "Traceback" not in log
