"""Constants of the KPI catalogue shared by the fold, the reader and the docs.

docs/kpi-semantics.md defines every KPI; this module holds the numbers it refers to.
"""

from __future__ import annotations

from typing import Final

WINDOWS: Final = ("15m", "1h", "24h", "today", "week", "month", "all")
DIMENSIONS: Final = ("manager", "team", "pipeline", "source")

# Upper bounds (inclusive) of the duration histogram for sales cycle and time in stage.
DURATION_BUCKETS_S: Final = (
    60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600,
    86_400, 2 * 86_400, 3 * 86_400, 5 * 86_400, 7 * 86_400, 10 * 86_400, 14 * 86_400,
    21 * 86_400, 30 * 86_400, 45 * 86_400, 60 * 86_400, 90 * 86_400, 120 * 86_400,
    180 * 86_400, 365 * 86_400,
)  # fmt: skip

# Upper bounds (inclusive) of the response-time histograms: sales answers in seconds to a day.
RESPONSE_BUCKETS_S: Final = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)

DEFAULT_LATENESS_S: Final = 35 * 86_400
NO_VALUE: Final = "none"
UNASSIGNED: Final = "unassigned"
# The key of the tenant total among the groups of a KPI read (manager, team, ... → sums).
# Empty: no dimension value can be (an absent one reads NO_VALUE or UNASSIGNED), whereas a
# team or a source called "total" can exist.
TOTAL_GROUP: Final = ""
