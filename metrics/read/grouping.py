"""Stored sums folded into groups (tenant total, per manager, team, ...). Pure.

Split from metrics/read/kpi_reader.py, which reads the sums from Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

from metrics.read.quantiles import percentile_components, sketch_bin
from salespulse.core.kpi.catalogue import DIMENSIONS, TOTAL_GROUP

# as metrics/read/kpi_reader.py names them
Groups = dict[str, dict[str, int]]
RawSums = dict[tuple[str, tuple[str, ...]], int]

_DIRECTION_OUTCOME = {
    ("in", "answered"): ("calls_in", "calls_answered"),
    ("in", "missed"): ("calls_in", "calls_missed"),
    ("out", "answered"): ("calls_out", "calls_answered"),
    ("out", "missed"): ("calls_out", "calls_missed"),
}


def drop_zeros(groups: Groups) -> None:
    """Zero components are omitted, and so are groups left empty (not the total)."""
    for name in list(groups):
        group = groups[name]
        for component in [c for c, v in group.items() if v == 0]:
            del group[component]
        if not group and name != TOTAL_GROUP:
            del groups[name]


# component → (the names it adds to, or None for a sketch bin; the sketch; the bin key):
# components repeat across windows, groups and scrapes, so each is parsed once (the
# scrape of a 200-manager office folds ~50,000 stored sums).
_Route = tuple[tuple[str, ...] | None, str, int]
_ROUTES: dict[str, _Route] = {}


def _route(component: str) -> _Route:
    route = _ROUTES.get(component)
    if route is None:
        binned = None if component.startswith("calls:") else sketch_bin(component)
        if component.startswith("calls:"):
            _, direction, outcome = component.split(":")
            route = ("calls", *_DIRECTION_OUTCOME[(direction, outcome)]), "", 0
        elif binned is not None:
            route = None, binned[0], binned[1]
        else:
            route = (component,), "", 0
        if len(_ROUTES) < 100_000:  # names come from events: keep a flood out
            _ROUTES[component] = route
    return route


def group_components(sums: RawSums, by: str | None, *, percentiles: bool = True) -> Groups:
    """Fold stored sums into groups; derive call marginals and percentiles (sketch bins
    summed per group, metrics/read/quantiles.py). Pure.

    Two loops, not one with a list of targets per sum: a scrape runs this a dozen times
    over ~1,000 sums each. ``percentiles=False`` skips the sketch bins, for a caller that
    shows no percentile (the collector's team and manager series): the bins are most of
    the stored fields of a busy office's long windows."""
    total: dict[str, int] = {}
    groups: Groups = {TOTAL_GROUP: total}
    sketches: dict[tuple[str, str], dict[int, int]] = {}
    routes = _ROUTES
    if by is None:
        for (component, _), amount in sums.items():
            names, sketch, key = routes.get(component) or _route(component)
            if names is None:
                if not percentiles:
                    continue
                bins = sketches.setdefault((TOTAL_GROUP, sketch), {})
                bins[key] = bins.get(key, 0) + amount
                continue
            for name in names:
                total[name] = total.get(name, 0) + amount
    else:
        index = DIMENSIONS.index(by)
        for (component, dims), amount in sums.items():
            names, sketch, key = routes.get(component) or _route(component)
            if names is None and not percentiles:
                continue
            group_name = dims[index]
            group = groups.get(group_name)
            if group is None:
                group = groups[group_name] = {}
            if names is None:
                for target in ((TOTAL_GROUP, sketch), (group_name, sketch)):
                    bins = sketches.setdefault(target, {})
                    bins[key] = bins.get(key, 0) + amount
                continue
            for name in names:
                total[name] = total.get(name, 0) + amount
                group[name] = group.get(name, 0) + amount
    for (group_name, sketch), bins in sketches.items():
        groups[group_name].update(percentile_components(sketch, bins))
    return groups


def group_activity(sums: RawSums, dimensions: Sequence[str]) -> dict[str, Groups]:
    """``group_components(sums, by, percentiles=False)`` of each dimension, without the
    tenant total: what the collector's team and manager series show. Pure.

    One pass over the sums for every dimension, and no total that the caller would drop:
    a scrape groups today and the month by team and by manager (issue 19)."""
    grouped: list[tuple[int, Groups]] = [(DIMENSIONS.index(by), {}) for by in dimensions]
    if not grouped:
        return {}
    routes = _ROUTES
    for (component, dims), amount in sums.items():
        names = (routes.get(component) or _route(component))[0]
        if names is None:  # a sketch bin: no percentile is shown per group here
            continue
        for index, groups in grouped:
            group_name = dims[index]
            group = groups.get(group_name)
            if group is None:
                group = groups[group_name] = {}
            for name in names:
                group[name] = group.get(name, 0) + amount
    for _, groups in grouped:
        groups.pop(TOTAL_GROUP, None)  # group_components' total, as its callers drop it
    return {by: groups for by, (_, groups) in zip(dimensions, grouped, strict=True)}
