"""The benchmark's traffic: synthetic events of two offices, the backlog producer with its
in-memory reference fold, and the paced producer of the latency phase."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer

from salespulse.core.events import CrmEvent, encode_event
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.dev.bench.naive import BENCH_TENANTS
from salespulse.dev.bench.parts import close_quietly
from streams.fold import States, decode_state, entity_ref, fold_batch

TENANTS = ("acme", "globex")
CURRENCIES = {"acme": "USD", "globex": "EUR"}
MANAGERS_PER_TENANT = 25
STAGES = ("new", "qualified", "proposal", "negotiation")
_DAY_S = 86_400

# (tenant, encoded field) → all-time amount: what path (a) must leave in Redis
Expected = Counter[tuple[str, str]]
_REFERENCE_KEYS = KpiKeys("reference:")
_CHUNK = 20_000


def synthetic_events(
    count: int,
    seed: int,
    id_prefix: str,
    *,
    managers_per_tenant: int = MANAGERS_PER_TENANT,
    span_days: float = 3,
) -> Iterator[CrmEvent]:
    """A plausible mix of two offices' traffic over the last ``span_days``;
    ``received_at`` is stamped when yielded, or, for a history (``span_days`` past the
    lateness window), a second after the event happened, as a CRM export records it."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    history = span_days > 3
    for i in range(count):
        t = 0 if rng.random() < 0.6 else 1
        tenant, client, deal = TENANTS[t], f"c-{rng.randrange(20_000)}", f"d-{rng.randrange(5000)}"
        # A few events arrive before the CRM assigned anybody.
        manager = f"m-{t * managers_per_tenant + rng.randrange(managers_per_tenant):02d}"
        occurred_at = now - timedelta(seconds=rng.uniform(0, span_days * _DAY_S))
        common: dict[str, Any] = dict(
            event_id=f"{id_prefix}-{i}",
            tenant=tenant,
            source="bench",
            occurred_at=occurred_at,
            manager_id=manager if rng.random() > 0.02 else None,
        )
        kind, direction = rng.random(), rng.choice(("in", "out"))
        if kind < 0.40:
            answered = rng.random() < 0.75
            talk = round(rng.uniform(5, 900), 1) if answered else 0.0
            fields: dict[str, Any] = dict(type="call", channel="phone", client_id=client)
            fields.update(direction=direction, answered=answered, duration_s=talk)
        elif kind < 0.70:
            channel = rng.choice(("chat", "messenger", "email"))
            fields = dict(type="message", channel=channel, direction=direction, client_id=client)
            fields.update(conversation_id=f"conv-{client}", automated=rng.random() < 0.05)
        elif kind < 0.80:
            fields = dict(type="lead_created", entity_id=f"l-{i}", source_channel="website")
        elif kind < 0.88:
            fields = dict(type="deal_created", entity_id=deal, pipeline="sales")
        else:
            fields = dict(type="deal_stage_changed", entity_id=deal, pipeline="sales")
            fields["stage_from"] = rng.choice(STAGES)
            outcome = rng.random()
            if outcome < 0.15:
                fields.update(stage_to="won", stage_kind="won", currency=CURRENCIES[tenant])
                fields["amount"] = Decimal(rng.randrange(10_000, 5_000_000)).scaleb(-2)
            elif outcome < 0.30:
                fields.update(stage_to="lost", stage_kind="lost", lost_reason="price")
            else:
                fields.update(stage_to=rng.choice(STAGES), stage_kind="open")
        received_at = occurred_at + timedelta(seconds=1) if history else datetime.now(UTC)
        yield CrmEvent(**common, **fields, received_at=received_at)


def tally(events: Iterable[CrmEvent], expected: Expected) -> Iterator[CrmEvent]:
    """Pass events through while folding them in memory: the reference for the check.

    The same pure fold in large chunks with the entity states carried in a dict: the
    all-time totals must equal what the pipeline wrote, batch by batch, into Redis.
    """
    states: States = {}
    chunk: list[CrmEvent] = []

    def fold_chunk() -> None:
        touched = {ref[0]: ref for e in chunk if (ref := entity_ref(_REFERENCE_KEYS, e))}
        prior: States = {key: states[key] for key in touched if key in states}
        fold = fold_batch(chunk, BENCH_TENANTS, _REFERENCE_KEYS, prior)
        for (tenant, granularity, _), fields in fold.increments.items():
            if granularity == "all":
                for field, amount in fields.items():
                    expected[tenant, field] += amount
        for key, (version, blob) in fold.entity_writes.items():
            states[key] = (version + 1, decode_state(touched[key][1], blob))
        chunk.clear()

    for event in events:
        chunk.append(event)
        if len(chunk) >= _CHUNK:
            fold_chunk()
        yield event
    if chunk:
        fold_chunk()


async def produce(bootstrap: str, events: Iterable[CrmEvent], limits: dict[str, int]) -> None:
    """Send event i to every topic whose limit is above i, keyed like the ingest keys it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for i, event in enumerate(events):
            key, value = event.partition_key, encode_event(event)
            for topic, limit in limits.items():
                if i < limit:
                    pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:  # bounded memory, and errors surface early
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await close_quietly("backlog producer", producer.stop())


def paced_producer(bootstrap: str, topic: str, rate: int, seconds: float, seed: int) -> None:
    """Process entry point: ``rate`` events/s, each stamped ``received_at`` as it is sent."""
    asyncio.run(_paced(bootstrap, topic, rate, seconds, seed))


async def _paced(bootstrap: str, topic: str, rate: int, seconds: float, seed: int) -> None:
    # The ingest's own producer settings, so the latency includes its linger.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        per_tick = max(1, rate // 100)  # 10 ms ticks: steady, no second-sized bursts
        pending: list[asyncio.Future[Any]] = []
        start = time.perf_counter()
        for i, event in enumerate(synthetic_events(round(rate * seconds), seed, f"lat{seed}")):
            if i % per_tick == 0:  # sleep until this tick's slot, so lateness does not drift
                await asyncio.sleep(start + i // per_tick / 100 - time.perf_counter())
            pending.append(await producer.send(topic, encode_event(event), key=event.partition_key))
        await asyncio.gather(*pending)
    finally:
        await close_quietly("paced producer", producer.stop())
