"""The SLA stage folds batch N+1 while batch N is written (streams/store_stage.py), on a
real redis-server: N+1 is folded on the states N writes, so a conversation spanning
batches is neither refused nor folded twice, and when N is written other than as it was
folded, N+1 is folded again from Redis before it is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings
from streams.redis_sink import ApplyOutcome
from streams.sla_fold import SlaFold
from streams.sla_store import SlaApplier, SlaStore
from tests.helpers import T0, make_event
from tests.integration.test_sla_marks import TENANTS, forget_conversations
from tests.redis_dump import dump

pytestmark = pytest.mark.integration


class CountingStore(SlaStore):
    """Records each script call's outcome: refused ones were folded again."""

    def __init__(self, client: aioredis.Redis, keys: KpiKeys) -> None:
        super().__init__(client, keys, group="sla", day_ttl_s=7200, conversation_ttl_s=3600)
        self.outcomes: list[bool] = []

    async def apply(self, fold: SlaFold, offsets: dict[str, int]) -> ApplyOutcome:
        outcome = await super().apply(fold, offsets)
        self.outcomes.append(outcome.applied)
        return outcome


def message(event_id: str, minutes: int, direction: str = "in") -> CrmEvent:
    return make_event(
        event_id,
        "message",
        conversation_id="conv-1",
        direction=direction,
        occurred_at=T0 + timedelta(minutes=minutes),
        backfill=True,
    )


def chats(batches: int) -> list[list[CrmEvent]]:
    """Batches of three conversations each: every one is carried on in the next batch."""
    out: list[list[CrmEvent]] = []
    for b in range(batches):
        batch = []
        for c in range(3):
            chat = {"conversation_id": f"conv-{c}", "backfill": True}
            at = T0 + timedelta(minutes=10 * b)
            batch += [
                make_event(f"in-{b}-{c}", "message", occurred_at=at, **chat),
                make_event(
                    f"out-{b}-{c}",
                    "message",
                    direction="out",
                    occurred_at=at + timedelta(minutes=c + 1),
                    **chat,
                ),
            ]
        out.append(batch)
    return out


async def serially(client: aioredis.Redis, keys: KpiKeys, batches: list[list[CrmEvent]]) -> None:
    """Each batch folded after the one before it is written (no overlap)."""
    applier = SlaApplier(CountingStore(client, keys), TENANTS, keys)
    for batch in batches:
        await applier.commit(await applier.prepare(batch), {})


async def test_overlapped_batches_of_the_same_conversations_are_each_written_once(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    batches = chats(4)
    expected_keys = KpiKeys(f"{settings.redis_key_prefix}serial:")
    await serially(redis_client, expected_keys, batches)

    keys = KpiKeys(f"{settings.redis_key_prefix}overlap:")
    store = CountingStore(redis_client, keys)
    applier = SlaApplier(store, TENANTS, keys)
    prepared = await applier.prepare(batches[0])
    for batch in batches[1:]:
        following = await applier.prepare(batch)  # while `prepared` is not written yet
        await applier.commit(prepared, {})
        prepared = following
    await applier.commit(prepared, {})

    assert store.outcomes == [True] * len(batches)  # none refused: none folded twice
    assert await dump(redis_client, keys.prefix) == await dump(redis_client, expected_keys.prefix)


async def test_a_batch_written_other_than_folded_has_the_next_one_folded_again(
    redis_client: aioredis.Redis, settings: Settings
) -> None:
    """Batch N repeats a reply counted in a conversation since forgotten: folded, its
    state holds that reply; written, it does not (the store refuses it as marked and the
    refold skips it), at the same version. N+1, folded on the first, must not be written
    on it."""
    earlier = [message("in-1", 0), message("out-1", 2, "out")]
    batch_n = [message("out-1", 2, "out"), message("in-2", 20)]
    batch_next = [message("out-2", 25, "out")]

    expected_keys = KpiKeys(f"{settings.redis_key_prefix}serial:")
    await serially(redis_client, expected_keys, [earlier])
    await forget_conversations(redis_client, expected_keys)
    await serially(redis_client, expected_keys, [batch_n, batch_next])

    keys = KpiKeys(f"{settings.redis_key_prefix}overlap:")
    await serially(redis_client, keys, [earlier])
    assert await forget_conversations(redis_client, keys) == 1
    store = CountingStore(redis_client, keys)
    applier = SlaApplier(store, TENANTS, keys)
    prepared = await applier.prepare(batch_n)
    following = await applier.prepare(batch_next)
    await applier.commit(prepared, {})
    await applier.commit(following, {})

    assert store.outcomes == [False, True, True]  # N refused once, as marked
    assert await dump(redis_client, keys.prefix) == await dump(redis_client, expected_keys.prefix)
