"""Call-centre KPIs (issue 17 item 9) on a small call-centre history: abandonment rate,
average handle time, service level; the stream against hand-computed values and the
batch oracle."""

from __future__ import annotations

import pytest

from metrics.views.kpi_view import present
from salespulse.core.kpi.catalogue import TOTAL_GROUP, WINDOWS
from tests.call_centre import CONFIG, NOW, TENANTS, M, call, history
from tests.kpi_memory import MemoryStore
from tests.oracle.call_centre import abandoned_calls


def kpis(store: MemoryStore, window: str = "today") -> dict[str, tuple[float | None, ...]]:
    group = store.components("acme", window, None, NOW)[TOTAL_GROUP]
    return {
        kpi.name: (kpi.value, kpi.numerator, kpi.denominator)
        for kpi in present(group, CONFIG, window, NOW)
    }


@pytest.mark.parametrize("arrival", ["in order", "reversed"])
def test_abandonment_handle_time_and_service_level(arrival: str) -> None:
    events = history()
    store = MemoryStore(TENANTS)
    for event in events if arrival == "in order" else reversed(events):
        store.apply_batch([event])  # one by one: a reply arriving later takes it back
    shown = kpis(store)
    # inbound calls: a1 a2 b1 c1 c2 d1 e1 f1 = 8; abandoned c1, c2, e1, f1 = 4
    assert shown["calls_abandoned"][0] == 4
    assert shown["abandonment_rate"] == (0.5, 4, 8)
    # AHT: talk time of answered calls (a2 120 s, b2 60 s, d1 300 s) / 3 answered
    assert shown["talk_time_avg_seconds"] == (160.0, 480.0, 3)
    # first responses judged against 20 s: A (10 s, met), B (300 s, breached) → 1/2
    assert shown["service_level"] == (0.5, 1, 2)


def test_the_oracle_agrees_on_abandoned_calls_in_every_window() -> None:
    events = history()
    store = MemoryStore(TENANTS)
    store.apply_batch(events)
    for window in WINDOWS:
        stream = store.components("acme", window, None, NOW)[TOTAL_GROUP]
        assert stream.get("calls_abandoned", 0) == abandoned_calls(
            events, CONFIG, "acme", window, NOW
        ), window
    # a callback that finally comes takes C's two calls out of the abandoned
    store.apply_batch([call("c3", "C", NOW - 1 * M, direction="out")])
    assert store.components("acme", "today", None, NOW)[TOTAL_GROUP]["calls_abandoned"] == 2
