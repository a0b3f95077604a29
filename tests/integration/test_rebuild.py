"""A wiped KPI store on the real broker and Redis: the workers notice and flag it, and
`salespulse rebuild` restores every KPI exactly while reads stay on the current store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from handlers.publisher import KafkaPublisher
from metrics.read.kpi_reader import KpiReader
from salespulse.app.compose import build_kpi_consumer, build_sla_consumer, topic_specs
from salespulse.app.embedded import free_port
from salespulse.cli import main
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import TOTAL_GROUP
from salespulse.core.kpi.codecs import conversation_ref
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.settings import Settings
from salespulse.core.topics import ensure_topics
from streams.contributions import event_components
from streams.conversation_clock import role_of
from streams.event_marks import REMAINDER_BYTES
from streams.rebuild import RebuildError, StoreRebuild
from streams.store_stage import StoreStage
from tests.helpers import T0, eventually, make_event, metric_value, produce

pytestmark = pytest.mark.integration

Snapshot = dict[str, Any]


@pytest.fixture
async def stages(
    settings: Settings, redis_client: aioredis.Redis, bootstrap: str
) -> AsyncIterator[tuple[Callable[[], Any], PipelineMetrics]]:
    """Starts both live stages (KPI and SLA) on one metrics registry."""
    await ensure_topics(bootstrap, topic_specs(settings))
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    metrics = PipelineMetrics(CollectorRegistry())
    started: list[StoreStage[Any]] = []

    async def start() -> None:
        tenants = settings.tenant_directory()
        for build in (build_kpi_consumer, build_sla_consumer):
            consumer = build(settings, tenants, redis_client, publisher, metrics)
            started.append(consumer)
            await consumer.start()

    yield start, metrics
    for consumer in started:
        await consumer.stop()
    await publisher.stop()


def office_day(first: int, n: int) -> list[CrmEvent]:
    """Calls, chats with replies, deals moving through stages, over several days."""
    now = datetime.now(UTC)
    events = []
    for i in range(first, first + n):
        at = T0 - timedelta(days=i % 9, minutes=i)
        common = {"manager_id": f"m-{i % 4}", "occurred_at": at, "received_at": now}
        match i % 4:
            case 0:
                event = make_event(f"e-{i}", "call", answered=i % 3 != 0, **common)
            case 1:
                direction = "in" if i % 8 == 1 else "out"
                event = make_event(
                    f"e-{i}",
                    "message",
                    direction=direction,
                    conversation_id=f"c-{i % 11}",
                    **common,
                )
            case 2:
                event = make_event(f"e-{i}", "deal_created", entity_id=f"d-{i % 17}", **common)
            case _:
                stage = ("new", "proposal", "won", "lost")[i % 4 if i % 3 else 2]
                event = make_event(
                    f"e-{i}",
                    "deal_stage_changed",
                    entity_id=f"d-{i % 17}",
                    stage_to=stage,
                    stage_kind="won" if stage == "won" else "lost" if stage == "lost" else "open",
                    **common,
                )
        events.append(event)
    return events


def snapshot(redis_url: str, settings: Settings) -> Snapshot:
    """What the exporter serves: every window's components, by total and by manager, and
    the waiting list."""
    reader = KpiReader(
        redis.Redis.from_url(redis_url),
        KpiKeys(settings.redis_key_prefix),
        settings.tenant_directory(),
    )
    views: Snapshot = {
        f"{window}/{by}": reader.components("acme", window, by, T0)
        for window in ("all", "month", "week", "24h")
        for by in (None, "manager")
    }
    views["waiting"] = [
        (w.conversation, w.opened_at) for w in reader.waiting_reader().waiting("acme", T0)
    ]
    return views


async def wipe(client: aioredis.Redis, settings: Settings) -> None:
    """FLUSHALL, for this test's deployment only (the session's Redis is shared)."""
    keys = [key async for key in client.scan_iter(match=f"{settings.redis_key_prefix}*")]
    assert keys
    await client.delete(*keys)


def applied(metrics: PipelineMetrics) -> tuple[float, float]:
    return metric_value(metrics, "salespulse_worker_events_applied_total"), (
        metric_value(metrics, "salespulse_worker_sla_events_applied_total")
    )


async def test_a_wiped_store_is_flagged_and_rebuilt_exactly_while_reads_continue(
    stages, settings, redis_client, redis_url, bootstrap, caplog
):
    start, metrics = stages
    history = office_day(0, 600)
    await produce(bootstrap, settings.events_topic, history)
    await start()

    async def all_applied(n: int) -> bool:
        return applied(metrics) == (n, n)

    await eventually(lambda: all_applied(600), 90, "600 events through both stages")
    before = snapshot(redis_url, settings)
    assert before["all/None"][TOTAL_GROUP]["calls"] == 150
    assert before["waiting"]

    caplog.set_level(logging.ERROR, logger="streams.store_guard")
    await wipe(redis_client, settings)
    # The workers keep counting into the empty store: 40 outbound calls of a new manager.
    later = [
        make_event(f"late-{i}", "call", direction="out", manager_id="m-new", occurred_at=T0)
        for i in range(40)
    ]
    await produce(bootstrap, settings.events_topic, later)

    async def flagged() -> bool:
        marker = KpiKeys(settings.redis_key_prefix).store_reset
        pending = metric_value(metrics, "salespulse_kpi_store_reset_pending") == 1
        return pending and int(await redis_client.exists(marker)) == 1

    await eventually(flagged, 60, "the store reset flagged")
    assert any("wiped or restarted empty" in r.getMessage() for r in caplog.records)
    await eventually(lambda: all_applied(640), 60, "the 40 calls counted after the wipe")
    wiped = snapshot(redis_url, settings)
    assert wiped["all/None"][TOTAL_GROUP]["calls"] == 40, "only what came after the wipe"

    rebuild = StoreRebuild(settings, redis_client, settings.tenant_directory())
    await rebuild.clear_staging()
    await rebuild.open()
    try:
        await rebuild.fill()
        assert snapshot(redis_url, settings) == wiped, "reads stay on the current store"
        # A live worker that applied beyond the rebuilt set holds the switch back:
        more = [
            make_event(f"more-{i}", "call", direction="out", manager_id="m-new", occurred_at=T0)
            for i in range(10)
        ]
        await produce(bootstrap, settings.events_topic, more)
        await eventually(lambda: all_applied(650), 60, "10 more calls applied live")
        assert not await rebuild.switch()
        assert snapshot(redis_url, settings)["all/None"][TOTAL_GROUP]["calls"] == 50
        await rebuild.fill()
        assert await rebuild.switch()
    finally:
        await rebuild.close()

    rebuilt = snapshot(redis_url, settings)
    for view, groups in before.items():
        if view == "waiting":
            assert rebuilt[view] == groups
            continue
        new_manager = rebuilt[view].pop("m-new", None)
        assert new_manager is None or new_manager["calls"] == 50
        if view.endswith("/manager"):
            assert {k: v for k, v in rebuilt[view].items() if k != TOTAL_GROUP} == {
                k: v for k, v in groups.items() if k != TOTAL_GROUP
            }, view
    # The total: as before, plus the 50 answered outbound calls of 30 s counted live.
    total, earlier = rebuilt["all/None"][TOTAL_GROUP], before["all/None"][TOTAL_GROUP]
    for component, added in {"calls": 50, "calls_out": 50, "calls_answered": 50}.items():
        assert total.pop(component) == earlier.pop(component, 0) + added, component
    assert total.pop("talk_time_ms") == earlier.pop("talk_time_ms") + 50 * 30_000
    assert total == earlier

    async def cleared() -> bool:
        return metric_value(metrics, "salespulse_kpi_store_reset_pending") == 0

    await eventually(cleared, 30, "the reset flag cleared by the switch")
    assert [
        k async for k in redis_client.scan_iter(match=f"{settings.redis_key_prefix}rebuild:*")
    ] == []
    # Rebuilt entity versions lie above any the old set had: a batch folded on an old state
    # (in flight, or from a worker's cache) meets a conflict and refolds, never a match.
    deal = await redis_client.get(KpiKeys(settings.redis_key_prefix).entity("acme", "deal", "d-2"))
    assert int(deal.split(b":", 1)[0]) > 10**15

    # The rebuilt set carries the permanent marks of every event that counts or joins an
    # entity, once (so a replay after the retentions still counts none of them again).
    tenants = settings.tenant_directory()
    per_event = [
        e
        for e in [*history, *later, *more]
        if e.entity_id is not None or event_components(e, tenants.get(e.tenant))
    ]
    assert len(per_event) > 150
    prefix = settings.redis_key_prefix
    marks = [k async for k in redis_client.scan_iter(match=f"{prefix}mark:*")]
    held = [v for key in marks for v in (await redis_client.hgetall(key)).values()]
    assert sum(len(value) for value in held) == REMAINDER_BYTES * len(per_event)
    # and the SLA stage's of every contact and reply it joined into a conversation
    joined = [
        e for e in [*history, *later, *more] if conversation_ref(e) and role_of(e) is not None
    ]
    assert len(joined) > 100
    sla_marks = [k async for k in redis_client.scan_iter(match=f"{prefix}smark:*")]
    held = [v for key in sla_marks for v in (await redis_client.hgetall(key)).values()]
    assert sum(len(value) for value in held) == REMAINDER_BYTES * len(joined)

    # The live workers go on after the switch without counting anything twice.
    await produce(bootstrap, settings.events_topic, office_day(600, 8))
    await eventually(lambda: all_applied(658), 60, "8 events after the switch")
    after_switch = snapshot(redis_url, settings)
    # Re-running gives the same store (idempotent).
    summary = await StoreRebuild(settings, redis_client, settings.tenant_directory()).run()
    assert summary.records == 658
    assert summary.keys_moved > 0
    assert not summary.truncated
    assert snapshot(redis_url, settings) == after_switch


async def test_rebuild_refuses_without_a_topic(settings, redis_client):
    with pytest.raises(RebuildError, match="does not exist"):
        await StoreRebuild(settings, redis_client, settings.tenant_directory()).run()


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The command reads SALESPULSE_* like every entry point: this test's deployment."""
    for name in ("kafka_bootstrap", "redis_url", "events_topic", "consumer_group"):
        monkeypatch.setenv(f"SALESPULSE_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("SALESPULSE_SLA_CONSUMER_GROUP", settings.sla_consumer_group)
    monkeypatch.setenv("SALESPULSE_REDIS_KEY_PREFIX", settings.redis_key_prefix)


def test_the_command_rebuilds_from_the_topic_and_can_run_again(
    settings, redis_url, bootstrap, monkeypatch, capsys
):
    asyncio.run(produce(bootstrap, settings.events_topic, office_day(0, 200)))
    use_settings(monkeypatch, settings)

    assert main(["rebuild"]) == 0
    out, err = capsys.readouterr()
    assert "switched to the rebuilt store" in out
    assert "records read 200" in out
    assert "from their earliest offset" in err
    first = snapshot(redis_url, settings)
    assert first["all/None"][TOTAL_GROUP]["calls"] == 50

    assert main(["rebuild"]) == 0
    assert snapshot(redis_url, settings) == first


def test_a_poison_record_on_the_topic_is_skipped_not_fatal(
    settings, redis_url, bootstrap, monkeypatch, capsys
):
    # Written before the door checked ranges: the stages dead-letter it, so must the rebuild.
    poison = make_event("poison-1", "deal_stage_changed", entity_id="d-x", amount=Decimal("1e30"))
    history = office_day(0, 100)
    asyncio.run(produce(bootstrap, settings.events_topic, [*history[:50], poison, *history[50:]]))
    use_settings(monkeypatch, settings)

    assert main(["rebuild"]) == 0
    out, _ = capsys.readouterr()
    assert "switched to the rebuilt store" in out
    assert "records read 101" in out
    assert "poison (skipped by a stage) 0" not in out
    assert snapshot(redis_url, settings)["all/None"][TOTAL_GROUP]["calls"] == 25


def test_the_command_refuses_clearly_without_a_broker(settings, monkeypatch, capsys):
    assert main(["rebuild"]) == 2
    assert "SALESPULSE_KAFKA_BOOTSTRAP" in capsys.readouterr().err

    use_settings(monkeypatch, settings)
    monkeypatch.setenv("SALESPULSE_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert main(["rebuild"]) == 1
    assert "cannot reach the broker" in capsys.readouterr().err


async def test_a_worker_started_on_a_wiped_store_flags_it(
    stages, settings, redis_client, bootstrap, caplog
):
    """Redis restarted empty while no worker ran: committed offsets without watermarks."""
    await produce(bootstrap, settings.events_topic, office_day(0, 100))
    tenants = settings.tenant_directory()
    publisher = KafkaPublisher(
        bootstrap, events_topic=settings.events_topic, dlq_topic=settings.dlq_topic, timeout_s=5
    )
    first_metrics = PipelineMetrics(CollectorRegistry())
    first = build_kpi_consumer(settings, tenants, redis_client, publisher, first_metrics)
    await first.start()

    async def counted() -> bool:
        return metric_value(first_metrics, "salespulse_worker_events_applied_total") == 100

    await eventually(counted, 60, "100 events applied")
    await first.stop()  # finishes its batch and commits the offsets
    await publisher.stop()
    await wipe(redis_client, settings)

    caplog.set_level(logging.ERROR, logger="streams.store_guard")
    start, metrics = stages
    await start()

    async def flagged() -> bool:
        marker = KpiKeys(settings.redis_key_prefix).store_reset
        pending = metric_value(metrics, "salespulse_kpi_store_reset_pending") == 1
        return pending and int(await redis_client.exists(marker)) == 1

    await eventually(flagged, 60, "the reset flagged on assignment")
    assert any("committed up to offset" in r.getMessage() for r in caplog.records)
