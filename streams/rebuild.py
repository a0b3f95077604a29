"""`salespulse rebuild`: rebuild the KPI store from ``crm.events`` and switch to it at once.

The topic is the record of everything counted; Redis is derived from it. When Redis lost
its keys (a wipe, an empty restart: streams/store_guard.py flags it, alert
KpiStoreReset), the rebuild re-consumes the topic from the earliest retained offset:

1. **Fill** a staging key set, ``{prefix}rebuild:…`` (KpiKeys.staging), through the
   workers' own appliers: the KPI stage (counters, entity states, dedupe sets, event
   marks, won and open-deal indexes) and the SLA stage (conversation states, waiting list, response
   times), with the same filters as the live consumers (records without a value or not
   decodable were dead-lettered when first read; too-late events are not counted), up to
   the high-water mark of every partition. Readers never look at staging keys: the
   wall, ``/metrics`` and ``/v1/kpis`` keep serving the current store meanwhile.
2. **Switch** in one Lua script (streams/switch_store.lua), so no reader and no worker
   batch runs in between: it refuses while a live worker has applied beyond what the
   staging set holds (the rebuild reads on and tries again), else it deletes the store's
   current keys (only the families of KpiKeys, never e.g. the enrichment's crmstate:) and
   renames every staging key onto its live name, watermarks included. That also clears
   the ``store_reset`` marker. Every rebuilt entity version is lifted above any version
   the old set held, so a live worker's batch folded on an old state (in flight, or from
   its state cache) always meets a version conflict and is refolded on the new states;
   events the rebuild already applied are dropped as duplicates: nothing counts twice.
   The script lists keys with KEYS: Redis is blocked for that moment (about a second per
   million keys), once per rebuild.
3. Nothing is left to clean up: the old keys are gone, the staging keys are live.

Re-running is safe: a rebuild starts by deleting any staging keys a stopped run left, and
rebuilding a healthy store gives the same store. It only restores what the topic still
holds: events deleted by retention before the rebuild cannot come back (its summary
names partitions whose first offset is not 0), hence ``crm.events`` retention of at
least the day-bucket retention (salespulse/core/topics.py) and Redis persistence (RUNBOOK).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import resources

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from redis.exceptions import RedisError

from salespulse.core.errors import KpiStoreError
from salespulse.core.events import CrmEvent, decode_event
from salespulse.core.kpi.redis_layout import STORE_FAMILIES
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory
from streams.applier import KpiApplier
from streams.poison import apply_isolating
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from streams.store_guard import tp_name

logger = logging.getLogger(__name__)

_DAY_S = 86_400
# Switch attempts: each one that finds a live worker ahead reads on to the new end first.
MAX_SWITCH_ROUNDS = 20
FETCH_TIMEOUT_MS = 1000
PROGRESS_EVERY_S = 2.0
# Fetches that return nothing while a partition still lacks a high-water mark before the
# rebuild gives up (the broker is not answering for it).
MAX_IDLE_FETCHES = 30


class RebuildError(Exception):
    """The rebuild cannot run or cannot finish (named reason, nothing switched)."""


@cache
def switch_script() -> str:
    return resources.files("streams").joinpath("switch_store.lua").read_text(encoding="utf-8")


@dataclass
class RebuildSummary:
    records: int = 0
    events: int = 0
    skipped: int = 0
    # events a stage could not take (dead-lettered as poison by the live workers too)
    poison: int = 0
    rounds: int = 0
    keys_dropped: int = 0
    keys_moved: int = 0
    seconds: float = 0.0
    # partitions whose earliest retained record is not offset 0: history lost to retention
    truncated: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"salespulse rebuild: switched to the rebuilt store in {self.seconds:.1f}s",
            f"  records read {self.records:,}, events applied {self.events:,}, "
            f"not counted (no value, undecodable, too late) {self.skipped:,}, "
            f"poison (skipped by a stage) {self.poison:,}",
            f"  switch attempts {self.rounds}, keys replaced {self.keys_dropped:,}, "
            f"keys now live {self.keys_moved:,}",
        ]
        if self.truncated:
            first = ", ".join(f"{tp} from offset {o}" for tp, o in sorted(self.truncated.items()))
            lines.append(f"  WARNING: retention already deleted older records ({first})")
        return "\n".join(lines)


class StoreRebuild:
    def __init__(
        self,
        settings: Settings,
        client: aioredis.Redis,
        tenants: TenantDirectory,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        if settings.kafka_bootstrap is None:
            raise RebuildError("SALESPULSE_KAFKA_BOOTSTRAP is not set: no broker to rebuild from")
        self._settings = settings
        self._bootstrap = settings.kafka_bootstrap
        self._client = client
        self._live = settings.kpi_keys()
        self._staging = self._live.staging()
        self._progress = progress
        self._lateness = timedelta(days=settings.lateness_days)
        sink = RedisKpiSink(
            client,
            self._staging,
            group=settings.consumer_group,
            dedupe_ttl_s=settings.dedupe_retention_days * _DAY_S,
            day_ttl_s=settings.day_bucket_retention_days * _DAY_S,
            month_ttl_s=settings.month_bucket_retention_days * _DAY_S,
            # the live workers' retentions (salespulse/app/compose.py), so rebuilt states expire
            entity_ttl_s=round(settings.entity_retention_days * _DAY_S),
        )
        self._kpi = KpiApplier(sink, tenants, self._staging)
        sla_store = SlaStore(
            client,
            self._staging,
            group=settings.sla_consumer_group,
            day_ttl_s=settings.day_bucket_retention_days * _DAY_S,
            month_ttl_s=settings.month_bucket_retention_days * _DAY_S,
            conversation_ttl_s=round(settings.conversation_retention_days * _DAY_S),
        )
        self._sla = SlaApplier(
            sla_store, tenants, self._staging, wait_max_age_s=settings.wait_max_age_days * _DAY_S
        )
        self._switch = client.register_script(switch_script())
        self._kafka: AIOKafkaConsumer | None = None
        self._started: set[str] = set()  # partitions whose first record was read
        self._next_progress = 0.0
        self.summary = RebuildSummary()

    async def run(self) -> RebuildSummary:
        """Clear staging, fill it, switch (reading on while live workers are ahead)."""
        started = time.monotonic()
        await self.clear_staging()
        await self.open()
        try:
            for _ in range(MAX_SWITCH_ROUNDS):
                await self.fill()
                if await self.switch():
                    break
            else:
                raise RebuildError(
                    f"live workers stayed ahead for {MAX_SWITCH_ROUNDS} switch attempts; "
                    "nothing switched (run it again in a quieter moment)"
                )
        finally:
            await self.close()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def open(self) -> None:
        """Assign every partition of the events topic, from its earliest offset."""
        topic = self._settings.events_topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        try:
            await consumer.start()
        except Exception as exc:  # aiokafka raises several kinds for "no broker"
            await consumer.stop()
            raise RebuildError(f"cannot reach the broker at {self._bootstrap}: {exc}") from exc
        await consumer.topics()  # a metadata request: the cached view may predate the topic
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer.stop()
            raise RebuildError(f"topic {topic} does not exist on {self._bootstrap}")
        assigned = [TopicPartition(topic, n) for n in sorted(numbers)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        self._kafka = consumer
        self._progress(f"reading {topic}: {len(assigned)} partitions from their earliest offset")

    async def close(self) -> None:
        if self._kafka is not None:
            await self._kafka.stop()
            self._kafka = None

    async def fill(self) -> None:
        """Apply everything up to each partition's high-water mark into the staging set."""
        consumer = self._require_consumer()
        idle = 0
        while True:  # one fetch at least: the high-water marks are those of the last fetch
            batch: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=self._settings.batch_max_records
            )
            if any(batch.values()):
                idle = 0
                await self._apply(batch)
            if await self._caught_up(consumer):
                return
            if not any(batch.values()):
                idle += 1
                if idle >= MAX_IDLE_FETCHES:
                    raise RebuildError("the broker stopped answering fetches; nothing switched")

    async def switch(self) -> bool:
        """Make the staging set live, unless a live worker applied beyond it."""
        live = self._live.prefix
        groups = [self._settings.consumer_group, self._settings.sla_consumer_group]
        pattern = _glob_escape(live) + "*"
        args = [live, self._staging.prefix, pattern, " ".join(STORE_FAMILIES), *groups]
        try:
            reply = await self._switch(args=args)
        except RedisError as exc:
            raise KpiStoreError(f"the switch failed (nothing changed): {exc}") from exc
        self.summary.rounds += 1
        if int(reply[0]) == 0:
            group, partition, ahead, staged = (_text(v) for v in reply[1:5])
            self._progress(
                f"live group {group} applied {partition} up to {ahead} (rebuilt: {staged}); "
                "reading on"
            )
            return False
        self.summary.keys_dropped, self.summary.keys_moved = int(reply[1]), int(reply[2])
        return True

    async def clear_staging(self) -> None:
        """Remove what an interrupted rebuild left (SCAN, not KEYS: nobody reads these)."""
        pattern = _glob_escape(self._staging.prefix) + "*"
        removed = 0
        try:
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += await self._client.unlink(*batch)
                    batch = []
            if batch:
                removed += await self._client.unlink(*batch)
        except RedisError as exc:
            raise KpiStoreError(f"cannot clear the staging keys: {exc}") from exc
        if removed:
            self._progress(f"removed {removed:,} staging keys of an earlier, unfinished rebuild")

    async def _apply(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        items: list[tuple[ConsumerRecord, CrmEvent]] = []
        offsets: dict[str, int] = {}
        for tp, records in batch.items():
            if not records:
                continue
            name = tp_name(tp)
            if name not in self._started:
                self._started.add(name)
                if records[0].offset > 0:
                    self.summary.truncated[name] = records[0].offset
            for record in records:
                event = self._countable(record)
                if event is None:
                    self.summary.skipped += 1
                else:
                    items.append((record, event))
            offsets[name] = records[-1].offset
            self.summary.records += len(records)
        await self._apply_isolating(items, offsets)
        self.summary.events += len(items)
        if time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + PROGRESS_EVERY_S
            self._progress(
                f"applied {self.summary.records:,} records ({self.summary.events:,} events)"
            )

    async def _apply_isolating(
        self, items: list[tuple[ConsumerRecord, CrmEvent]], offsets: dict[str, int]
    ) -> None:
        """Both stages, each skipping the events it cannot take, as the live consumers do
        (streams/poison.py): a poison record on the topic must not stop the rebuild, and
        counting it would make the rebuilt store differ from the live one."""
        store_failed: list[KpiStoreError] = []

        async def kpi_part(events: list[CrmEvent]) -> object:
            try:
                return await self._kpi.commit(await self._kpi.prepare(events), {})
            except KpiStoreError as exc:  # not the events' fault: abort, below
                store_failed.append(exc)
                raise

        async def sla_part(events: list[CrmEvent]) -> object:
            try:
                return await self._sla.commit(await self._sla.prepare(events), {})
            except KpiStoreError as exc:
                store_failed.append(exc)
                raise

        for part, stage in ((kpi_part, "kpi"), (sla_part, "sla")):
            _, poison = await apply_isolating(items, part, stage)
            if store_failed:
                raise RebuildError(f"the KPI store failed during the rebuild: {store_failed[0]}")
            self.summary.poison += len(poison)
        # the watermarks last, once both stages hold every event before them
        await self._kpi.apply([], offsets)
        await self._sla.commit(await self._sla.prepare([]), offsets)

    def _countable(self, record: ConsumerRecord) -> CrmEvent | None:
        """The live consumers' filter (streams/store_stage.py), without dead-lettering again."""
        if record.value is None:
            return None
        try:
            event = decode_event(record.value)
        except msgspec.DecodeError:
            return None
        received = event.received_at
        if received is not None and received - event.occurred_at > self._lateness:
            return None
        return event

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
        """Every partition read up to the high-water mark of its last fetch (ListOffsets is
        not used: Tansu answers it with the last record batch's base offset + 1)."""
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None or await consumer.position(tp) < high:
                return False
        return True

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._kafka is None:
            raise RuntimeError("StoreRebuild.open() first")
        return self._kafka


async def rebuild_store(
    settings: Settings, redis_url: str, progress: Callable[[str], None]
) -> RebuildSummary:
    """The whole command: its own Redis connection; Redis errors become RebuildError."""
    if settings.redis_mode == "cluster":
        # The switch renames every store family in one script: on a cluster those keys
        # span every slot (docs/redis-cluster.md, "Limits").
        raise RebuildError("salespulse rebuild needs a single Redis; it cannot switch a cluster")
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.ping()
        rebuild = StoreRebuild(settings, client, settings.tenant_directory(), progress)
        return await rebuild.run()
    except (KpiStoreError, RedisError) as exc:
        raise RebuildError(f"Redis at {redis_url}: {exc}") from exc
    finally:
        await client.aclose()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
