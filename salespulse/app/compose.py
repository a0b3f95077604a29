"""Composition root: wire handlers → streams → metrics into one faust process.

A process can take any of three roles; ``salespulse run`` takes all of them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka.errors import KafkaError
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from mode import Service
from prometheus_client import CollectorRegistry

from handlers.enrichment.stage import build_enrichment_service
from handlers.enrichment.users import build_user_sync
from handlers.http_ingest import IngestHandler
from handlers.publisher import KafkaPublisher
from handlers.spool import DiskSpool
from handlers.webhooks import build_webhooks
from metrics.api.kpis import kpi_routes
from metrics.api.openapi import openapi_routes
from metrics.api.read_access import ReadAccess
from metrics.api.waiting import waiting_routes
from metrics.collectors.kpi import KpiCollector
from metrics.exposition import RemoteExposition, metrics_routes
from metrics.read.kpi_reader import KpiReader
from metrics.wall.routes import build_wall
from salespulse.app.applied import AppliedOffsets
from salespulse.app.faust_app import create_app
from salespulse.app.health import Readiness
from salespulse.core import redis_clients
from salespulse.core.access import TokenTable, refuse_open_doors
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory
from salespulse.core.topics import TopicSpec, ensure_topics
from streams.applier import KpiApplier
from streams.daily_snapshot import DailySnapshot
from streams.kpi_stage import KpiStage
from streams.redis_sink import RedisKpiSink
from streams.sla_stage import SlaStage
from streams.sla_store import SlaApplier, SlaStore
from streams.store_guard import StoreGuard
from streams.store_stage import BatchApplier, WatermarkStore

logger = logging.getLogger(__name__)

DLQ_PARTITIONS = 1
# A rejected body may be up to max_body_bytes plus headers: more than Kafka's default
# 1 MB record limit. The dead-letter topic is created to take it (see KafkaPublisher).
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_DAY_S = 86_400
# the two stages over crm.events, built alike
S = TypeVar("S", KpiStage, SlaStage)


class Role(enum.StrEnum):
    INGEST = "ingest"
    WORKER = "worker"
    EXPORTER = "exporter"


class Stage(enum.StrEnum):
    """The worker's two consumer groups over crm.events (with the KPI stage go the CRM
    enrichment and the manager-name sync)."""

    KPI = "kpi"
    SLA = "sla"


ALL_STAGES = frozenset(Stage)


class _Lifecycle(Service):
    """Runs setup before, and closers after, the other services."""

    def __init__(
        self,
        setup: Callable[[], Awaitable[None]],
        closers: list[Callable[[], Awaitable[Any]]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._setup = setup
        self._closers = closers

    async def on_start(self) -> None:
        await self._setup()

    async def on_stop(self) -> None:
        for close in reversed(self._closers):
            await close()


@dataclass
class Runtime:
    """Everything `faust.Worker` needs to run one SalesPulse process."""

    app: faust.App
    services: list[Service]
    registry: CollectorRegistry
    metrics: PipelineMetrics
    consumer: KpiStage | None = None
    sla_consumer: SlaStage | None = None
    routes: list[web.RouteDef] = field(default_factory=list)


def build_runtime(
    settings: Settings,
    roles: Iterable[Role],
    *,
    spool: DiskSpool | None = None,
    worker_metrics: Sequence[RemoteExposition] = (),
    stages: frozenset[Stage] = ALL_STAGES,
) -> Runtime:
    """Build (not start) the app and services for the given roles. ``spool``: where the
    ingest keeps what the broker does not take in time (None: it answers 503);
    ``worker_metrics``: worker processes' series, merged into this one's /metrics;
    ``stages``: which of the worker's stages this process runs (`salespulse run` gives
    each its own process: salespulse/app/worker_process.py)."""
    roles = set(roles)
    if settings.kafka_bootstrap is None or settings.redis_url is None:
        raise ValueError("build_runtime needs kafka_bootstrap and redis_url set")
    bootstrap, redis_url = settings.kafka_bootstrap, settings.redis_url
    keys = settings.kpi_keys()
    tenants = settings.tenant_directory()
    registry = CollectorRegistry(auto_describe=False)
    pipeline_metrics = PipelineMetrics(registry)
    app = create_app(settings, bootstrap)
    publisher = KafkaPublisher(
        bootstrap,
        events_topic=settings.events_topic,
        dlq_topic=settings.dlq_topic,
        timeout_s=settings.produce_timeout_s,
        spool_after_s=settings.spool_after_s,
        metrics=pipeline_metrics,
    )
    closers: list[Callable[[], Awaitable[Any]]] = [publisher.stop]

    topic_setup: list[asyncio.Task[None]] = []

    async def setup() -> None:
        if spool is None:
            await ensure_topics(bootstrap, topic_specs(settings))
        elif roles == {Role.INGEST}:
            # An ingest with a spool serves even if Kafka is down when it starts: it spools
            # until the topics exist (the workers need Kafka to do anything at all).
            topics_ready = asyncio.Event()
            publisher.use_spool(spool, topics_ready=topics_ready)
            topic_setup.append(
                asyncio.create_task(_create_topics(bootstrap, settings, topics_ready))
            )
        else:
            publisher.use_spool(spool)  # its drainer needs the running loop
            await ensure_topics(bootstrap, topic_specs(settings))

    async def stop_topic_setup() -> None:
        for task in topic_setup:
            task.cancel()
        await asyncio.gather(*topic_setup, return_exceptions=True)

    closers.append(stop_topic_setup)

    # Readiness checks Redis only where a role of this process reads or writes it.
    uses_redis = bool(roles & {Role.WORKER, Role.EXPORTER})
    readiness = Readiness(bootstrap, redis_url if uses_redis else None, spool=spool)
    closers.append(readiness.close)
    routes: list[web.RouteDef] = readiness.routes()
    # Called as the web server shuts down, before it waits for open requests to end.
    on_shutdown: list[Callable[[web.Application], Awaitable[None]]] = []
    services: list[Service] = [_Lifecycle(setup, closers)]
    consumer = sla_consumer = None
    if Role.INGEST in roles:
        token = settings.ingest_token_value()
        ingest = IngestHandler(
            publisher,
            pipeline_metrics,
            max_body_bytes=settings.max_body_bytes,
            token=token,
            tenants=tenants,
            body_timeout_s=settings.body_read_timeout_s,
            lateness_s=settings.lateness_days * _DAY_S,
        )
        routes += ingest.routes()
        routes += build_webhooks(settings, tenants, publisher, pipeline_metrics).routes()
    if Role.WORKER in roles:
        async_redis = redis_clients.async_redis(settings, redis_url)
        closers.append(async_redis.aclose)
        if Stage.KPI in stages:
            consumer = build_kpi_consumer(
                settings, tenants, async_redis, publisher, pipeline_metrics
            )
            services.append(consumer)
            services.append(
                build_enrichment_service(
                    settings, tenants, async_redis, publisher, pipeline_metrics
                )
            )
            # Manager names from the CRMs, for the exporters' wall, API and info metric.
            services.append(build_user_sync(settings, tenants, async_redis))
        if Stage.SLA in stages:
            sla_consumer = build_sla_consumer(
                settings, tenants, async_redis, publisher, pipeline_metrics
            )
            services.append(sla_consumer)
    if Role.EXPORTER in roles:
        sync_redis = redis_clients.sync_redis(settings, redis_url, socket_timeout=5)
        reader = KpiReader(sync_redis, keys, tenants)
        registry.register(KpiCollector(reader, tenants))
        read_tokens = TokenTable.of("read", tenants, settings.read_token_value())
        access = ReadAccess(read_tokens)
        routes += kpi_routes(
            reader, tenants, access, retention_days=settings.day_bucket_retention_days
        )
        routes += openapi_routes()
        routes += waiting_routes(reader.waiting_reader(), tenants, reader.tenants, access)
        # The wall re-reads KPI sums when either worker stage (KPI, SLA) has applied a batch.
        offsets = (keys.offsets(settings.consumer_group), keys.offsets(settings.sla_consumer_group))
        wall = build_wall(tenants, reader, sync_redis, offsets, waiting=reader.waiting_reader())
        routes += wall.routes()

        async def close_wall(_: web.Application) -> None:
            await wall.close()  # ends the walls' streams, so the server need not wait on them

        on_shutdown.append(close_wall)

        async def close_sync_redis() -> None:
            sync_redis.close()

        closers.append(close_sync_redis)
    if roles & {Role.WORKER, Role.EXPORTER}:
        # How far the stages have applied: `salespulse replay --wait` waits on it.
        applied_redis = redis_clients.async_redis(settings, redis_url)
        closers.append(applied_redis.aclose)
        applied = AppliedOffsets(
            bootstrap,
            settings.events_topic,
            applied_redis,
            keys,
            {"kpi": settings.consumer_group, "sla": settings.sla_consumer_group},
        )
        closers.append(applied.close)
        routes += applied.routes()
    # Refused here, before anything listens: an open door beyond loopback (access.py).
    refuse_open_doors(
        settings,
        tenants,
        serves_ingest=Role.INGEST in roles,
        serves_reads=Role.EXPORTER in roles,
    )
    closers += [remote.close for remote in worker_metrics]
    routes += metrics_routes(
        registry,
        token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
        basic=settings.metrics_basic_auth(),
        remote=worker_metrics,
    )
    web_driver = app.web
    if not isinstance(web_driver, AiohttpWeb):
        raise TypeError(f"SalesPulse serves its routes on aiohttp, not {type(web_driver)!r}")
    web_driver.web_app.add_routes(routes)
    web_driver.web_app.on_shutdown.extend(on_shutdown)
    return Runtime(app, services, registry, pipeline_metrics, consumer, sla_consumer, routes)


async def _create_topics(bootstrap: str, settings: Settings, ready: asyncio.Event) -> None:
    """ensure_topics until the broker answers, backing off; then open the publisher."""
    delay = 1.0
    while True:
        try:
            await ensure_topics(bootstrap, topic_specs(settings), attempts=1)
        except (KafkaError, OSError) as exc:
            logger.warning(
                "broker unreachable for topic setup (%r): spooling, retrying in %.0f s", exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        ready.set()
        return


def topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """The topics SalesPulse creates when missing, with the configs it relies on."""
    return {
        settings.events_topic: (
            settings.topic_partitions,
            {"retention.ms": str(settings.events_retention_days * _DAY_S * 1000)},
        ),
        settings.raw_topic: settings.topic_partitions,
        settings.dlq_topic: (DLQ_PARTITIONS, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
    }


def build_kpi_consumer(
    settings: Settings,
    tenants: TenantDirectory,
    redis_client: aioredis.Redis,
    dead_letters: EventPublisher,
    metrics: PipelineMetrics,
) -> KpiStage:
    """The KPI worker's consumer with its Redis sink, as every process role builds it."""
    keys = settings.kpi_keys()
    sink = RedisKpiSink(
        redis_client,
        keys,
        group=settings.consumer_group,
        dedupe_ttl_s=settings.dedupe_retention_days * _DAY_S,
        day_ttl_s=settings.day_bucket_retention_days * _DAY_S,
        month_ttl_s=settings.month_bucket_retention_days * _DAY_S,
        entity_ttl_s=round(settings.entity_retention_days * _DAY_S),
    )
    snapshot = DailySnapshot(
        redis_client, keys, tenants, ttl_s=settings.day_bucket_retention_days * _DAY_S
    )
    applier = KpiApplier(
        sink,
        tenants,
        keys,
        cache_bytes=settings.entity_cache_bytes,
        before_commit=snapshot.before_commit,
    )
    group = settings.consumer_group
    guard = StoreGuard(redis_client, keys, group=group, stage="kpi", metrics=metrics)
    return _store_stage(
        KpiStage, settings, group, sink, applier, dead_letters, metrics, guard, late_marks=sink
    )


def build_sla_consumer(
    settings: Settings,
    tenants: TenantDirectory,
    redis_client: aioredis.Redis,
    dead_letters: EventPublisher,
    metrics: PipelineMetrics,
) -> SlaStage:
    """The conversation clock's consumer: its own group over the same topic, so response
    times and waiting clients neither slow the KPI fold nor wait for it."""
    keys = settings.kpi_keys()
    group = settings.sla_consumer_group
    store = SlaStore(
        redis_client,
        keys,
        group=group,
        day_ttl_s=settings.day_bucket_retention_days * _DAY_S,
        month_ttl_s=settings.month_bucket_retention_days * _DAY_S,
        conversation_ttl_s=round(settings.conversation_retention_days * _DAY_S),
    )
    applier = SlaApplier(
        store,
        tenants,
        keys,
        wait_max_age_s=settings.wait_max_age_days * _DAY_S,
        on_waits_expired=metrics.sla_waits_expired.inc,
    )
    guard = StoreGuard(redis_client, keys, group=group, stage="sla", metrics=metrics)
    return _store_stage(SlaStage, settings, group, store, applier, dead_letters, metrics, guard)


def _store_stage(
    stage: type[S],
    settings: Settings,
    group: str,
    store: WatermarkStore,
    applier: BatchApplier[Any],
    dead_letters: EventPublisher,
    metrics: PipelineMetrics,
    guard: StoreGuard,
    **extra: Any,
) -> S:
    if settings.kafka_bootstrap is None:
        raise ValueError(f"the {stage.stage_name} consumer needs kafka_bootstrap set")
    return stage(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.events_topic,
        group=group,
        sink=store,
        applier=applier,
        dead_letters=dead_letters,
        metrics=metrics,
        lateness_s=settings.lateness_days * _DAY_S,
        max_records=settings.batch_max_records,
        timeout_ms=settings.batch_timeout_ms,
        session_timeout_s=settings.kafka_session_timeout_s,
        guard=guard,
        **extra,
    )
