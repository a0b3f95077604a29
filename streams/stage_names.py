"""Component names made from a deal's stage keys, memoised: the fold (streams/entities.py)
asks for them for every entry of every touched deal, so each is split or formatted once."""

from __future__ import annotations

from salespulse.core.kpi.redis_layout import SEP


class _StageKeys(dict[str, tuple[str, str]]):
    """Stage key (pipeline SEP stage) → (pipeline, stage): split on every derive of a deal."""

    def __missing__(self, key: str) -> tuple[str, str]:
        pipeline, stage = key.split(SEP, 1)
        if len(self) < _NAMES_LIMIT:  # keys come from events: bounded like entities._RanksByName
            self[key] = pipeline, stage
        return pipeline, stage


class _StayNames(dict[str, tuple[str, str, str]]):
    """Stage key → its time-in-stage component names: sum, count, and the head of its
    DDSketch bins (salespulse/core/kpi/sketch.py; the bin key follows)."""

    def __missing__(self, key: str) -> tuple[str, str, str]:
        pipeline, stage = split_stage(key)
        base = f"{pipeline}:{stage}"
        names = f"stay_sum_ms:{base}", f"stay_count:{base}", f"stay_qb:{base}:"
        if len(self) < _NAMES_LIMIT:
            self[key] = names
        return names


class _EntryNames(dict[str, str]):
    """Stage key → its stage_entries component name."""

    def __missing__(self, key: str) -> str:
        pipeline, stage = split_stage(key)
        name = f"stage_entries:{pipeline}:{stage}"
        if len(self) < _NAMES_LIMIT:
            self[key] = name
        return name


_NAMES_LIMIT = 10_000
split_stage = _StageKeys().__getitem__
stay_names = _StayNames().__getitem__
entry_name = _EntryNames().__getitem__
