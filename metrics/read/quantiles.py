"""Percentiles from the DDSketch bins of a window's buckets. Pure.

The fold counts every duration in a bin of salespulse/core/kpi/sketch.py, stored as a
counter field of the bucket hashes like any other component:

    cycle_qb:{key}                 sales cycle (created → won), µs
    stay_qb:{pipeline}:{stage}:{key}   time in stage, µs
    resp_qb:{kind}:{key}           calendar response time (kind first | next), ms

A window's sum of them is the sketch of the window's durations (bins merge by adding
counts); per group the reader turns each into its median and p90 components, in whole
milliseconds, within 1 % of the exact nearest-rank values (docs/kpi-semantics.md):

    cycle_p50_ms, cycle_p90_ms
    stay_p50_ms:{pipeline}:{stage}, stay_p90_ms:{pipeline}:{stage}
    resp_p50_ms:{kind}, resp_p90_ms:{kind}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from salespulse.core.kpi.catalogue import PERCENTILES
from salespulse.core.kpi.sketch import quantile

# sketch family → how many of its stored units make a millisecond
_FAMILIES: Final = {"cycle_qb": 1000, "stay_qb": 1000, "resp_qb": 1}
_SUFFIXES: Final = tuple(f"_p{percent}_ms" for percent in PERCENTILES)


def sketch_bin(component: str) -> tuple[str, int] | None:
    """(the sketch a stored bin belongs to, its bin key), or None for another component.

    The sketch is named by the component without its key: ``stay_qb:sales:new``.
    """
    family, _, rest = component.partition(":")
    if family not in _FAMILIES or not rest:
        return None
    sketch, _, key = component.rpartition(":")
    try:
        return sketch, int(key)
    except ValueError:  # not a bin the fold writes
        return None


def percentile_components(sketch: str, bins: Mapping[int, int]) -> dict[str, int]:
    """The median and p90 components of one sketch's summed bins (none when empty)."""
    family, _, label = sketch.partition(":")
    per_ms = _FAMILIES[family]
    head = family.removesuffix("_qb")
    tail = f":{label}" if label else ""
    out: dict[str, int] = {}
    for percent in PERCENTILES:
        value = quantile(bins, percent)
        if value is not None:
            out[f"{head}_p{percent}_ms{tail}"] = round(value / per_ms)
    return out


def is_percentile(component: str) -> bool:
    """A percentile component: read per group, it does not add up across groups."""
    return component.partition(":")[0].endswith(_SUFFIXES)
