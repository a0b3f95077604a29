"""apply_batch.lua reads and writes only keys it declares in KEYS (what Redis Cluster
requires of a script), watched on a real redis-server through MONITOR, which lists every
command a script runs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.applier import KpiApplier
from streams.journal import JournalPart
from streams.redis_sink import RedisKpiSink
from streams.sla_store import SlaApplier, SlaStore
from tests.helpers import T0, make_event
from tests.histories import TENANTS

pytestmark = pytest.mark.integration

# Every command apply_batch.lua runs; each takes its key as the first argument.
SCRIPT_COMMANDS = frozenset(
    {"SMISMEMBER", "MGET", "HMGET", "SADD", "EXPIRE", "SET", "HINCRBY", "ZADD", "ZREM"}
    | {"HSET", "HGET", "HDEL", "HEXISTS"}
)
_LINE = re.compile(r"\S+ \[\d+ (?P<source>.*?)\] (?P<args>.*)")
_ARG = re.compile(r'"(.*?)(?<!\\)"')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def monitor_form(key: str) -> str:
    """A key as MONITOR prints it (Redis's sdscatrepr): unprintable bytes as \\xNN."""
    out = []
    for byte in key.encode():
        char = chr(byte)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


async def script_commands(
    redis_url: str, marker: str, action: Callable[[], Awaitable[None]]
) -> list[list[str]]:
    """The arguments of every command a script ran while ``action`` did (no other test
    runs meanwhile); the end is the marker command the test sends after the action."""
    client = aioredis.Redis.from_url(redis_url)
    commands: list[list[str]] = []
    try:
        async with client.monitor() as monitor:
            assert monitor.connection is not None
            await action()
            await client.echo(marker)
            async with asyncio.timeout(30):
                while True:
                    raw = await monitor.connection.read_response()
                    line = raw.decode() if isinstance(raw, bytes) else str(raw)
                    parsed = _LINE.match(line)
                    assert parsed is not None, line
                    args = _ARG.findall(parsed["args"])
                    if args == ["ECHO", marker]:
                        return commands
                    if parsed["source"] == "lua":
                        commands.append(args)
    finally:
        await client.aclose()


def conversation(event_id: str, direction: str, minutes: int) -> CrmEvent:
    return make_event(
        event_id,
        "message",
        direction=direction,
        conversation_id="conv-1",
        occurred_at=T0.replace(minute=minutes),
        received_at=T0.replace(minute=minutes),
    )


# A cluster needs every key declared in KEYS; on one Redis the KPI stage carries its keys
# in the batch instead (cheaper to pack), still named by the caller, never built.
@pytest.mark.parametrize("cluster_keys", [True, False], ids=["cluster", "single"])
async def test_the_batch_script_touches_only_the_keys_it_declares(
    settings: Settings, redis_url: str, redis_client: aioredis.Redis, cluster_keys: bool
) -> None:
    keys = KpiKeys(settings.redis_key_prefix, tenant_slots=cluster_keys)
    # a few hash fields a call: the rest go as journal parts, drained by later calls
    sink = RedisKpiSink(
        redis_client, keys, group="kpi", dedupe_ttl_s=3600, day_ttl_s=7200, entity_ttl_s=3600,
        part_fields=3,
    )  # fmt: skip
    kpi = KpiApplier(sink, TENANTS, keys)
    sla_store = SlaStore(
        redis_client, keys, group="sla", day_ttl_s=7200, conversation_ttl_s=60, part_fields=3
    )
    sla = SlaApplier(sla_store, TENANTS, keys)
    # Every part of a batch: dedupe sets, entity states, bucket hashes (totals set, or
    # added), open-deal and waiting zsets (in and out), won records (set and deleted),
    # lastseen, members, marks.
    first = [
        make_event("call-1"),
        make_event("lead-1", "lead_created"),
        make_event(
            "open-1", "deal_stage_changed", entity_id="d-1", stage_to="new", stage_kind=None
        ),
        make_event("won-2", "deal_stage_changed", entity_id="d-2"),
        # revenue past 2^53 units: added by HINCRBY, not set from a total worked out in Lua
        msgspec.structs.replace(
            make_event("won-3", "deal_stage_changed", entity_id="d-3"),
            amount=Decimal("900719925474.0993"),
        ),
        conversation("in-1", "in", 1),
    ]
    moved = T0.replace(minute=5)
    later = [
        make_event(
            "open-1b",
            "deal_stage_changed",
            entity_id="d-1",
            stage_to="call",
            stage_kind=None,
            occurred_at=moved,
        ),
        make_event(
            "lost-2",
            "deal_stage_changed",
            entity_id="d-2",
            stage_to="lost",
            stage_kind="lost",
            occurred_at=moved,
        ),
        conversation("out-1", "out", 2),
    ]
    declared: set[str] = set()
    parted: list[JournalPart] = []

    async def apply_batches() -> None:
        for offset, events in enumerate((first, later)):
            offsets = {"crm.events:0": offset}
            calls = [
                sink.arguments(await kpi.apply(events, offsets), offsets)[0],
                sla_store.arguments(await sla.commit(await sla.prepare(events), offsets), offsets),
            ]
            for call in calls:
                declared.update(call.keys if cluster_keys else call.named_keys())
                # a part's keys: declared by its call on a cluster, carried in it on one Redis
                parted.extend(call.pending.parts)
                declared.add(call.pending.journal)
                for part in call.pending.parts:
                    declared.update(part.keys)

    commands = await script_commands(redis_url, f"{keys.prefix}done", apply_batches)

    assert {args[0] for args in commands} == SCRIPT_COMMANDS  # the batches ran every path
    assert len(parted) >= 4
    shown = {monitor_form(key) for key in declared}
    # MGET names only keys; every other command one, first
    named = [args[1:] if args[0] == "MGET" else args[1:2] for args in commands]
    undeclared = [keys for keys in named if not shown.issuperset(keys)]
    assert undeclared == []
