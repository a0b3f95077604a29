"""The stream's comparable form against the oracle's: exact, but for percentiles.

Percentile components (``*_p50_ms``, ``*_p90_ms``) come from DDSketch bins on the
stream's side and from the sorted durations on the oracle's: they must agree within
1 % of the exact value, plus 1 ms because both are rounded to whole milliseconds
(docs/kpi-semantics.md, Percentiles). Every other component must be equal.
"""

from __future__ import annotations

Components = dict[str, dict[str, int]]
_PERCENTILE_HEADS = ("_p50_ms", "_p90_ms")


def is_percentile(component: str) -> bool:
    return component.partition(":")[0].endswith(_PERCENTILE_HEADS)


def differences(stream: Components, oracle: Components) -> list[str]:
    """What differs beyond the tolerance, one line each (empty: they agree)."""
    found = []
    if set(stream) != set(oracle):
        found.append(f"groups {sorted(stream)} != {sorted(oracle)}")
    for group in sorted(set(stream) & set(oracle)):
        mine, theirs = stream[group], oracle[group]
        for component in sorted(set(mine) | set(theirs)):
            got, exact = mine.get(component, 0), theirs.get(component, 0)
            if is_percentile(component):
                if abs(got - exact) > 0.01 * abs(exact) + 1:
                    found.append(f"{group!r} {component}: {got} not within 1 % of {exact}")
            elif got != exact:
                found.append(f"{group!r} {component}: {got} != {exact}")
    return found


def assert_matches_oracle(stream: Components, oracle: Components, context: object) -> None:
    found = differences(stream, oracle)
    assert not found, (context, found)
