"""Stream arithmetic is order-, repeat- and batch-boundary-independent (pure, in memory)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import TOTAL_GROUP, WINDOWS
from tests.histories import NOW, TENANT, TENANTS, histories
from tests.kpi_memory import MemoryStore


def all_views(store: MemoryStore) -> dict[tuple[str, str | None], object]:
    return {
        (window, by): store.components(TENANT, window, by, NOW)
        for window in WINDOWS
        for by in (None, "manager", "team", "pipeline", "source")
    }


def in_batches(events: list[CrmEvent], cuts: list[int]) -> MemoryStore:
    store = MemoryStore(TENANTS)
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(bounds):
        store.apply_batch(events[start:stop])
    return store


@settings(deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.lists(st.integers(0, 500)))
def test_shuffled_repeated_and_split_histories_give_the_same_kpis(
    history: list[CrmEvent], rng: random.Random, cuts: list[int]
) -> None:
    reference = MemoryStore(TENANTS)
    reference.apply_batch(history)

    arrived = history + rng.sample(history, k=len(history) // 3)  # CRM retries
    rng.shuffle(arrived)
    assert all_views(in_batches(arrived, cuts)) == all_views(reference)


@settings(deadline=None)
@given(histories())
def test_replaying_everything_changes_nothing(history: list[CrmEvent]) -> None:
    store = MemoryStore(TENANTS)
    store.apply_batch(history)
    before = all_views(store)
    store.apply_batch(history)
    assert all_views(store) == before


@settings(deadline=None)
@given(histories())
def test_groups_add_up_to_the_total_for_additive_components(history: list[CrmEvent]) -> None:
    store = MemoryStore(TENANTS)
    store.apply_batch(history)
    for by in ("manager", "team", "pipeline", "source"):
        groups = store.components(TENANT, "all", by, NOW)
        total = groups.pop(TOTAL_GROUP)
        for name in ("calls", "talk_time_ms", "won", "revenue", "deals_created", "lost"):
            assert sum(g.get(name, 0) for g in groups.values()) == total.get(name, 0), (by, name)
