"""The stream arithmetic equals the independent batch oracle (pure, many examples).

The same comparison through the real broker and Redis is in
tests/integration/test_stream_equals_batch.py (fewer examples, it is slower).
"""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import DIMENSIONS, WINDOWS
from tests.histories import CONFIG, NOW, TENANT, TENANTS, histories
from tests.kpi_memory import MemoryStore
from tests.oracle.batch import compute_components
from tests.oracle.compare import assert_matches_oracle


def assert_equal_to_oracle(store: MemoryStore, history: list[CrmEvent]) -> None:
    for window, by in itertools.product(WINDOWS, (None, *DIMENSIONS)):
        stream = store.components(TENANT, window, by, NOW)
        batch = compute_components(history, CONFIG, TENANT, window, by, NOW)
        assert_matches_oracle(stream, batch, (window, by))


@settings(deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.lists(st.integers(0, 500)))
def test_stream_equals_batch_for_any_arrival(
    history: list[CrmEvent], rng: random.Random, cuts: list[int]
) -> None:
    arrived = history + rng.sample(history, k=len(history) // 3)
    rng.shuffle(arrived)
    store = MemoryStore(TENANTS, with_sla=False)
    bounds = sorted({0, len(arrived), *(c % (len(arrived) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(bounds):
        store.apply_batch(arrived[start:stop])
    assert_equal_to_oracle(store, history)


@settings(deadline=None)
@given(histories(date_only=True), st.randoms(use_true_random=False))
def test_stream_equals_batch_with_date_only_timestamps(
    history: list[CrmEvent], rng: random.Random
) -> None:
    """Issue 17 item 4: same-instant events order by causal rank in both."""
    arrived = list(history)
    rng.shuffle(arrived)
    store = MemoryStore(TENANTS, with_sla=False)
    half = len(arrived) // 2
    store.apply_batch(arrived[:half])
    store.apply_batch(arrived[half:])
    assert_equal_to_oracle(store, history)
