"""The enrichment stage: raw CRM requests (``crm.raw``) → REST fetch → canonical events.

Bitrix24 deal/lead/activity webhooks and HubSpot deal webhooks name a record without its
state; the webhook answered at once after queueing them here. For each request this
stage fetches the record (paced per portal, transient errors retried with backoff),
reads the deal's stored stage, normalises, produces the events to ``crm.events``
(acks=all), then stores the new stage, and commits the raw offsets only after all that.
A crash in between repeats the work; the event ids are the same, so nothing counts twice.
A request that cannot succeed (deleted record, refused credentials, nothing configured,
retries exhausted) goes to the dead-letter topic with its reason, ready for a replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis
from aiokafka import ConsumerRecord

from handlers.crm import bitrix24_records, hubspot
from handlers.crm.common import Context, EnrichmentRequest, EntityState, code, decode_request
from handlers.crm.sources import context_for, reveal
from handlers.enrichment.crm_rest.bitrix24 import Bitrix24Client
from handlers.enrichment.crm_rest.http import (
    PermanentRestError,
    RateLimiter,
    RestError,
    RetryPolicy,
    TransientRestError,
)
from handlers.enrichment.crm_rest.hubspot import HubSpotClient
from handlers.enrichment.crm_state import CrmStateStore
from salespulse.core.batch_stage import Batch, BatchStage, Commits
from salespulse.core.errors import InvalidEventError
from salespulse.core.events import CrmEvent
from salespulse.core.pipeline_metrics import PipelineMetrics
from salespulse.core.publishing import EventPublisher
from salespulse.core.retry import retry
from salespulse.core.settings import Settings
from salespulse.core.tenants import Bitrix24Source, HubSpotSource, TenantDirectory, TenantsFileError

logger = logging.getLogger(__name__)

_DAY_S = 86_400


@dataclass(frozen=True)
class EnrichmentOptions:
    http_timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bitrix24_rate_per_s: float = 2.0
    bitrix24_burst: int = 2
    hubspot_rate_per_s: float = 10.0
    hubspot_burst: int = 10
    dictionary_ttl_s: float = 600.0
    # A record first seen through an update counts as created if it is younger than this.
    backfill_days: int = 30
    # After a portal exhausted its retries, its next requests are dead-lettered at once
    # for this long instead of each being retried in full.
    outage_hold_s: float = 60.0


@dataclass(frozen=True)
class StateWrite:
    crm: str
    entity: str
    entity_id: str
    state: EntityState


class Enricher:
    """One request at a time: fetch → normalise → produce → store state (or dead-letter)."""

    def __init__(
        self,
        *,
        tenants: TenantDirectory,
        state: CrmStateStore,
        publisher: EventPublisher,
        metrics: PipelineMetrics,
        session: aiohttp.ClientSession,
        options: EnrichmentOptions,
    ) -> None:
        self._tenants = tenants
        self._state = state
        self._publisher = publisher
        self._metrics = metrics
        self._options = options
        self._outage_until: dict[str, float] = {}
        calls = metrics.enrichment_rest_calls
        self.bitrix24 = Bitrix24Client(
            session,
            limiter=RateLimiter(options.bitrix24_rate_per_s, options.bitrix24_burst),
            retry=options.retry,
            timeout_s=options.http_timeout_s,
            dictionary_ttl_s=options.dictionary_ttl_s,
            on_call=lambda outcome: calls.labels(crm="bitrix24", outcome=outcome).inc(),
        )
        self.hubspot = HubSpotClient(
            session,
            limiter=RateLimiter(options.hubspot_rate_per_s, options.hubspot_burst),
            retry=options.retry,
            timeout_s=options.http_timeout_s,
            dictionary_ttl_s=options.dictionary_ttl_s,
            on_call=lambda outcome: calls.labels(crm="hubspot", outcome=outcome).inc(),
        )

    async def handle(self, value: bytes | None, *, key: bytes | None, origin: str) -> str:
        """Enrich one raw record; returns the outcome: events, no_change or dead_lettered."""
        try:
            request = decode_request(value or b"")
        except msgspec.DecodeError as exc:
            await self._dead_letter(value or b"", key, origin, "undecodable_record", str(exc))
            return "dead_lettered"
        try:
            events, writes = await self.enrich(request)
        except RestError as exc:
            reason, problem = exc.reason, str(exc)
        except InvalidEventError as exc:
            reason, problem = "unsupported_record", "; ".join(str(p) for p in exc.problems)
        else:
            if request.backfill:  # built from a replayed delivery: history, nobody waits
                events = [msgspec.structs.replace(event, backfill=True) for event in events]
            if events:
                await retry(
                    "publish enriched events", lambda: self._publisher.publish_events(events)
                )
            for write in writes:
                await self._store(request.tenant, write)
            outcome = "events" if events else "no_change"
            self._metrics.enrichment_requests.labels(crm=request.crm, outcome=outcome).inc()
            return outcome
        logger.warning(
            "enrichment of %s %s %s for %s dead-lettered: %s",
            request.crm,
            request.entity,
            request.entity_id,
            request.tenant,
            reason,
        )
        await self._dead_letter(value or b"", key, origin, reason, problem)
        self._metrics.enrichment_requests.labels(crm=request.crm, outcome="dead_lettered").inc()
        return "dead_lettered"

    async def enrich(self, request: EnrichmentRequest) -> tuple[list[CrmEvent], list[StateWrite]]:
        config = self._tenants.get(request.tenant)
        ctx = context_for(request.crm, request.tenant, config, request.received_at)
        portal = f"{request.crm}:{request.account}"
        # A portal that just exhausted its retries is not retried again for every queued
        # request (that would hold the batch for minutes): its requests go to the
        # dead-letter topic at once, ready for a replay, until the hold is over.
        if time.monotonic() < self._outage_until.get(portal, 0.0):
            raise TransientRestError(f"{portal} was unavailable moments ago; not retried")
        try:
            if request.crm == "bitrix24":
                return await self._bitrix24(request, config.crm.bitrix24, ctx)
            return await self._hubspot(request, config.crm.hubspot, ctx)
        except TenantsFileError as exc:
            raise PermanentRestError(str(exc), reason="not_configured") from None
        except TransientRestError:
            self._outage_until[portal] = time.monotonic() + self._options.outage_hold_s
            raise

    async def _bitrix24(
        self, request: EnrichmentRequest, source: Bitrix24Source | None, ctx: Context
    ) -> tuple[list[CrmEvent], list[StateWrite]]:
        if source is None or source.rest_url is None:
            raise PermanentRestError("no Bitrix24 rest_url for the tenant", reason="not_configured")
        rest_url = reveal(source.rest_url)
        portal = request.account
        record = await self.bitrix24.record(rest_url, portal, request.entity, request.entity_id)
        if request.entity == "activity":
            return bitrix24_records.activity_events(request, record, naive_zone=ctx.zone), []
        since = request.received_at - timedelta(days=self._options.backfill_days)
        state = await self._get_state(request)
        if request.entity == "deal":
            category = code(record.get("CATEGORY_ID")) or "0"
            kinds = await self.bitrix24.stage_kinds(
                rest_url, portal, category, must_know=code(record.get("STAGE_ID"))
            )
            events, new = bitrix24_records.deal_events(
                request,
                record,
                kinds=kinds,
                state=state,
                naming=ctx.naming,
                naive_zone=ctx.zone,
                backfill_since=since,
            )
        else:
            events, new = bitrix24_records.lead_events(
                request,
                record,
                state=state,
                naming=ctx.naming,
                naive_zone=ctx.zone,
                backfill_since=since,
            )
        return events, _writes(request, new)

    async def _hubspot(
        self, request: EnrichmentRequest, source: HubSpotSource | None, ctx: Context
    ) -> tuple[list[CrmEvent], list[StateWrite]]:
        if source is None or source.access_token is None:
            raise PermanentRestError(
                "no HubSpot access_token for the tenant", reason="not_configured"
            )
        token = reveal(source.access_token)
        portal = request.account
        deal = await self.hubspot.deal(source.api_base, token, portal, request.entity_id)
        properties = deal.get("properties")
        stage = request.value or (
            code(properties.get("dealstage")) if isinstance(properties, dict) else None
        )
        kinds = await self.hubspot.pipelines(source.api_base, token, portal, must_know=stage)
        state = await self._get_state(request)
        events, new = hubspot.deal_events(request, deal, kinds=kinds, state=state, ctx=ctx)
        return events, _writes(request, new)

    async def _store(self, tenant: str, write: StateWrite) -> None:
        await retry(
            "store CRM state",
            lambda: self._state.put(tenant, write.crm, write.entity, write.entity_id, write.state),
        )

    async def _get_state(self, request: EnrichmentRequest) -> EntityState | None:
        return await retry(
            "read CRM state",
            lambda: self._state.get(request.tenant, request.crm, request.entity, request.entity_id),
        )

    async def _dead_letter(
        self, raw: bytes, key: bytes | None, origin: str, reason: str, problem: str
    ) -> None:
        problems: list[dict[str, object]] = [{"problem": problem}]
        await retry(
            "dead-letter an enrichment request",
            lambda: self._publisher.publish_dead_letter(
                raw, reason=reason, problems=problems, origin=origin, key=key
            ),
        )
        self._metrics.enrichment_dead_letters.labels(reason=reason).inc()


def _writes(request: EnrichmentRequest, state: EntityState | None) -> list[StateWrite]:
    if state is None:
        return []
    return [StateWrite(request.crm, request.entity, request.entity_id, state)]


# records of one portal (the raw record's key), in order
ByPortal = dict[bytes | None, list[ConsumerRecord]]


class CrmEnrichmentService(BatchStage[tuple[ByPortal, Commits]]):
    """Consumes the raw topic in batches until stopped; commits after each batch.

    On the batch runtime (salespulse/core/batch_stage.py), one batch at a time: a stop
    lets the batch in hand finish and commit before the consumer leaves the group."""

    stage_name = "enrichment"

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        session_timeout_s: float,
        build_enricher: Callable[[aiohttp.ClientSession], Enricher],
        max_records: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            bootstrap=bootstrap,
            topic=topic,
            group=group,
            session_timeout_s=session_timeout_s,
            max_records=max_records,
            timeout_ms=200,
            # A batch waits for REST calls (paced, retried): allow it minutes, not seconds.
            consumer_options={"max_poll_interval_ms": 15 * 60 * 1000},
            **kwargs,
        )
        self._build_enricher = build_enricher
        self._session: aiohttp.ClientSession | None = None
        self.enricher: Enricher | None = None

    async def on_start(self) -> None:
        # aiohttp objects bind to the running loop: made here, not in __init__.
        self._session = aiohttp.ClientSession()
        self.enricher = self._build_enricher(self._session)
        await super().on_start()

    async def on_stop(self) -> None:
        await super().on_stop()  # the batch in hand still needs the session
        if self._session is not None:
            await self._session.close()

    async def prepare(self, batch: Batch) -> tuple[ByPortal, Commits]:
        by_portal: ByPortal = {}
        for records in batch.values():
            for record in records:
                by_portal.setdefault(record.key, []).append(record)
        commits = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        return by_portal, commits

    async def write(self, ready: tuple[ByPortal, Commits]) -> Commits:
        """Portals in parallel, each portal's records in order; then commit.

        Safe to commit even if that fails: the next owner repeats these requests and
        derives the same event ids."""
        assert self.enricher is not None  # narrowing: on_start made it
        enricher = self.enricher
        by_portal, commits = ready

        async def run(records: list[ConsumerRecord]) -> None:
            for record in records:
                origin = f"{record.topic}/{record.partition}/{record.offset}"
                await enricher.handle(record.value, key=record.key, origin=origin)

        await asyncio.gather(*(run(records) for records in by_portal.values()))
        return commits


def build_enrichment_service(
    settings: Settings,
    tenants: TenantDirectory,
    redis_client: aioredis.Redis,
    publisher: EventPublisher,
    metrics: PipelineMetrics,
) -> CrmEnrichmentService:
    """The enrichment stage as the worker role runs it."""
    if settings.kafka_bootstrap is None:
        raise ValueError("the enrichment service needs kafka_bootstrap set")
    options = EnrichmentOptions(
        http_timeout_s=settings.enrichment_http_timeout_s,
        retry=RetryPolicy.of(settings),
        bitrix24_rate_per_s=settings.bitrix24_rate_per_s,
        bitrix24_burst=settings.bitrix24_burst,
        hubspot_rate_per_s=settings.hubspot_rate_per_s,
        hubspot_burst=settings.hubspot_burst,
        dictionary_ttl_s=settings.crm_dictionary_ttl_s,
        backfill_days=settings.enrichment_backfill_days,
    )
    state = CrmStateStore(
        redis_client,
        settings.redis_key_prefix,
        ttl_s=settings.crm_state_retention_days * _DAY_S,
    )

    def build(session: aiohttp.ClientSession) -> Enricher:
        return Enricher(
            tenants=tenants,
            state=state,
            publisher=publisher,
            metrics=metrics,
            session=session,
            options=options,
        )

    return CrmEnrichmentService(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.raw_topic,
        group=settings.enrichment_group,
        session_timeout_s=settings.kafka_session_timeout_s,
        build_enricher=build,
    )
