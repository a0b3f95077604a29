"""The cap on manager label values (metrics/kpi_collector._cap), pure."""

from __future__ import annotations

from metrics.collectors.kpi import OTHER, _cap


def test_the_most_active_keep_their_labels_and_the_rest_pool_into_other() -> None:
    groups = {f"m{n}": {"won": n, "calls": 10, "cycle_p90_ms": 5} for n in range(1, 6)}
    capped = _cap(groups, 3)
    assert set(capped) == {"m5", "m4", OTHER}
    assert capped[OTHER] == {"won": 1 + 2 + 3, "calls": 30}, "a percentile does not add up"


def test_a_manager_called_other_joins_the_pool_and_nothing_is_lost() -> None:
    groups = {
        OTHER: {"calls": 100},  # the busiest of all, with the pool's own name
        "m1": {"calls": 50},
        "m2": {"calls": 20},
        "m3": {"calls": 10},
    }
    capped = _cap(groups, 3)
    assert set(capped) == {"m1", "m2", OTHER}
    assert capped[OTHER] == {"calls": 100 + 10}
    assert sum(group["calls"] for group in capped.values()) == 180


def test_under_the_cap_every_group_keeps_its_own_label() -> None:
    groups = {OTHER: {"calls": 1}, "m1": {"calls": 2}}
    assert _cap(groups, 3) == groups
