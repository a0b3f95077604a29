"""Constants of the KPI catalogue shared by the fold, the reader and the docs.

docs/kpi-semantics.md defines every KPI; this module holds the numbers it refers to.
"""

from __future__ import annotations

from typing import Final

WINDOWS: Final = ("15m", "1h", "24h", "today", "week", "month", "all")
DIMENSIONS: Final = ("manager", "team", "pipeline", "source")

# Upper bounds (inclusive) of the response-time histograms: sales answers in seconds to a day.
RESPONSE_BUCKETS_S: Final = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)

# Percentiles /v1/kpis shows of durations (sales cycle, time in stage, response times):
# nearest rank, from DDSketch bins within 1 % (salespulse/core/kpi/sketch.py).
PERCENTILES: Final = (50, 90)

DEFAULT_LATENESS_S: Final = 35 * 86_400
NO_VALUE: Final = "none"
UNASSIGNED: Final = "unassigned"
# The key of the tenant total among the groups of a KPI read (manager, team, ... → sums).
# Empty: no dimension value can be (an absent one reads NO_VALUE or UNASSIGNED), whereas a
# team or a source called "total" can exist.
TOTAL_GROUP: Final = ""
