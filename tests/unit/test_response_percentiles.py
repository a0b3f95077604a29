"""Response-time percentiles through the SLA fold, the buckets and the reader: within 1 % of
the exact nearest-rank values, per tenant and per manager, whatever the batches (pure)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.read.grouping import group_components
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import PERCENTILES, TOTAL_GROUP
from salespulse.core.kpi.codecs import decode_field
from tests.helpers import make_event
from tests.histories import NOW, TENANT, TENANTS
from tests.kpi_memory import MemoryStore
from tests.oracle.compare import differences

MANAGERS = ("m-1", "m-2", "m-3")
# (reply delay in ms, manager): one first response per conversation
replies = st.lists(
    st.tuples(st.integers(1, 2 * 86_400_000), st.sampled_from(MANAGERS)), min_size=1, max_size=60
)


def conversation(n: int, delay_ms: int, manager: str) -> list[CrmEvent]:
    opened = NOW - timedelta(days=3) + timedelta(minutes=n)
    common = {"tenant": TENANT, "conversation_id": f"conv-{n}", "manager_id": manager}
    return [
        make_event(f"in-{n}", "message", occurred_at=opened, **common),
        make_event(
            f"out-{n}",
            "message",
            direction="out",
            occurred_at=opened + timedelta(milliseconds=delay_ms),
            **common,
        ),
    ]


def nearest_rank(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-percent * len(ordered) // 100)) - 1]


def exact(delays: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    return {
        group: {
            f"resp_p{percent}_ms:first": nearest_rank(values, percent) for percent in PERCENTILES
        }
        for group, values in delays.items()
    }


@given(replies, st.randoms(use_true_random=False))
def test_response_percentiles_are_within_one_percent_of_the_exact_ones(
    drawn: list[tuple[int, str]], rng: random.Random
) -> None:
    events = [
        e for n, (delay, manager) in enumerate(drawn) for e in conversation(n, delay, manager)
    ]
    arrived = events + rng.sample(events, k=len(events) // 4)  # CRM retries
    rng.shuffle(arrived)
    store = MemoryStore(TENANTS)
    while arrived:
        size = rng.randint(1, 8)
        store.apply_batch(arrived[:size])
        arrived = arrived[size:]

    by_manager: dict[str, list[int]] = {}
    for delay, manager in drawn:
        by_manager.setdefault(manager, []).append(delay)
    everything = {TOTAL_GROUP: [delay for delay, _ in drawn]}
    for by, truth in ((None, everything), ("manager", {**everything, **by_manager})):
        shown = {
            group: {c: v for c, v in components.items() if c.startswith("resp_p")}
            for group, components in store.components(TENANT, "all", by, NOW).items()
        }
        assert not differences(shown, exact(truth)), (by, differences(shown, exact(truth)))


def test_groups_without_percentiles_skip_the_bins_and_keep_every_sum() -> None:
    store = MemoryStore(TENANTS)
    store.apply_batch([e for n in range(5) for e in conversation(n, 1000 * (n + 1), "m-1")])
    sums: dict[tuple[str, tuple[str, ...]], int] = {}
    for fields in store.buckets.values():
        for field, amount in fields.items():
            component, *dims = decode_field(field)
            sums[(component, tuple(dims))] = sums.get((component, tuple(dims)), 0) + amount
    full = group_components(sums, "manager")
    lean = group_components(sums, "manager", percentiles=False)
    assert full["m-1"]["resp_p50_ms:first"] == pytest.approx(3000, rel=0.01)
    assert {g: {c: v for c, v in group.items() if "_p50_" not in c and "_p90_" not in c}
            for g, group in full.items()} == lean  # fmt: skip
