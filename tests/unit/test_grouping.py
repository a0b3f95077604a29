"""group_activity (the collector's team and manager series, one pass) equals
group_components per dimension without percentiles or the total."""

from __future__ import annotations

from metrics.read.grouping import RawSums, group_activity, group_components
from salespulse.core.kpi.catalogue import TOTAL_GROUP


def test_group_activity_equals_group_components_per_dimension() -> None:
    sums: RawSums = {
        ("calls:in:answered", ("m-1", "north", "sales", "web")): 3,
        ("calls:out:missed", ("m-2", "north", "sales", "ads")): 2,
        ("won", ("m-1", "north", "sales", "web")): 1,
        ("revenue", ("m-3", "south", "sales", "web")): 500,
        ("cycle_qb:12", ("m-1", "north", "sales", "web")): 4,  # a sketch bin
        ("stay_qb:sales:new:7", ("m-2", "north", "sales", "ads")): 1,
        ("won", ("m-4", "", "sales", "web")): 2,  # a team no dimension value can be
    }
    grouped = group_activity(sums, ["team", "manager"])
    assert list(grouped) == ["team", "manager"]
    for by in ("team", "manager"):
        expected = group_components(sums, by, percentiles=False)
        del expected[TOTAL_GROUP]
        assert grouped[by] == expected
        assert [list(group.items()) for group in grouped[by].values()] == [
            list(group.items()) for group in expected.values()
        ]
    assert group_activity(sums, []) == {}
