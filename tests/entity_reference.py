"""The contributions of an entity state as streams/entities.py derived them before its
single-walk rewrite (issue 19): slow and plain, kept as the reference the fast code must
equal on random states (tests/unit/test_entity_derive.py). Not used by the product.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from itertools import pairwise

from salespulse.core.kpi.codecs import WonDeal
from salespulse.core.kpi.redis_layout import SEP
from salespulse.core.kpi.sketch import bin_key
from salespulse.core.tenants import Pipeline, TenantConfig
from streams.entities import Dims, Parts, dims_of, money_units, us_to_ms
from streams.entity_state import CODE, DealState, LeadState


def _latest_dims(latest: dict[str, tuple[int, str, str]], config: TenantConfig) -> Dims:
    manager = latest.get("m")
    team = latest.get("t")
    pipeline = latest.get("p")
    source = latest.get("s")
    return dims_of(
        config,
        manager[2] if manager else None,
        team[2] if team else None,
        pipeline[2] if pipeline else None,
        source[2] if source else None,
    )


class _Ranks:
    """Stage ranks of one configured pipeline: open stages in order, then won stages;
    with the names of the components it contributes to, made once (derive runs for
    every touched deal)."""

    def __init__(self, name: str, pipeline: Pipeline) -> None:
        opens = [s.id for s in pipeline.stages if s.kind == "open"]
        wons = [s.id for s in pipeline.stages if s.kind == "won"]
        self.rank = {stage: index for index, stage in enumerate(opens)}
        self.rank.update({stage: len(opens) for stage in wons})
        # consecutive ranked steps: open[i] → open[i+1], last open → first won;
        # (stage a, rank of stage b, cohort denominator, cohort numerator)
        chain = opens + wons[:1]
        self.steps = [
            (a, self.rank[b], f"cohort_den:{name}:{a}", f"cohort_num:{name}:{a}")
            for a, b in pairwise(chain)
        ]
        # End-to-end starts at the first ranked stage (first open, else first won).
        self.first = chain[0] if chain else None
        self.e2e_den, self.e2e_num = f"e2e_den:{name}", f"e2e_num:{name}"
        self.wons = set(wons)
        self.warm = next((s.id for s in pipeline.stages if s.warm), None)
        self.warm_rank = self.rank.get(self.warm) if self.warm is not None else None
        self.warm_num = f"warm_num:{name}"
        # flow: stage a → (rank of the next ranked stage, its numerator's name)
        self.flow = {a: (self.rank[b], f"flow_num:{name}:{a}") for a, b in pairwise(chain)}
        self.flow_e2e_num = f"flow_e2e_num:{name}"


class _RanksByName(dict[str, "_Ranks | None"]):
    """Pipeline name → its ranks (None: not configured), filled as names show up."""

    def __init__(self, config: TenantConfig) -> None:
        super().__init__()
        self._config = config

    def __missing__(self, pipeline: str) -> _Ranks | None:
        configured = self._config.pipelines.get(pipeline)
        ranks = _Ranks(pipeline, configured) if configured is not None else None
        if len(self) < 10_000:  # names come from events: keep a flood of unknown ones out
            self[pipeline] = ranks
        return ranks


# Keyed by identity (tenant configs are frozen and live as long as the process); the
# config object is kept beside its ranks so an id can never be reused for another one.
_ranks_cache: dict[int, tuple[TenantConfig, _RanksByName]] = {}


def _ranks_of(config: TenantConfig) -> _RanksByName:
    cached = _ranks_cache.get(id(config))
    if cached is None or cached[0] is not config:
        cached = _ranks_cache[id(config)] = (config, _RanksByName(config))
    return cached[1]


def current_kind(state: DealState, config: TenantConfig) -> str | None:
    if state.current is None:
        return None
    _, _, pipeline, stage, given = state.current
    if given:
        return given
    configured = config.pipelines.get(pipeline)
    if configured is not None:
        for candidate in configured.stages:
            if candidate.id == stage:
                return candidate.kind
    return "open"


OpenMembership = tuple[str, str, int]


def deal_facts(
    state: DealState, config: TenantConfig
) -> tuple[Dims, Parts, OpenMembership | None, WonDeal | None]:
    """Dimensions, contributions, open membership and won record at once: derive needs
    them all for every touched deal, and they share the current kind, the dimensions, the
    amount. (The funnel's ``out[k] = out.get(k, 0) + n`` lines are inlined on purpose: they
    run for every touched deal of every batch.)"""
    out: Parts = {}
    latest = state.latest
    dims = _latest_dims(latest, config)
    current = state.current
    membership: OpenMembership | None = None
    won: WonDeal | None = None
    if current is not None:
        kind = current_kind(state, config)
        since = current[0]
        if kind == "won":
            units = _won(out, state, config, since)
            client, lead = latest.get("cl"), latest.get("l")
            won = WonDeal(since, units, client and client[2], lead and lead[2], *dims)
        elif kind == "lost":
            reason = latest.get(CODE["lost_reason"])
            _add(out, since, "lost", 1)
            if reason is not None:
                _add(out, since, f"lost_by_reason:{reason[2]}", 1)
        elif kind == "open":
            membership = current[2], current[3], since
    if state.created is not None:
        _add(out, state.created, "deals_created", 1)
    if state.entries:
        entries = [(us, key) for key, us in state.entries.items()]
        _funnel(out, state, config, dims, entries)
        if len(entries) > 1:
            _stays(out, sorted(entries))
        _every_entry(out, state, config)
    else:
        _funnel(out, state, config, dims, [])
    return dims, out, membership, won


def _every_entry(out: Parts, state: DealState, config: TenantConfig) -> None:
    """stage_entries (every distinct entry), and the flow: of the entries into a step's
    stage A, those whose next entry (the deal's earliest later one) ranks at or after the
    step's B; end to end, of the entries into the first stage, those followed by the
    entry into a won stage of the pipeline. Both counted at A's entry: never above 1."""
    every = [(us, key) for key, us in state.entries.items()]
    for key, later in state.again.items():
        every += [(us, key) for us in later]
    every.sort()
    times = [us for us, _ in every]
    ranks_by_name = _ranks_of(config)
    for index, (us, key) in enumerate(every):
        pipeline, stage = _split_stage(key)
        _add(out, us, _entry_name(key), 1)
        ranks = ranks_by_name[pipeline]
        if ranks is None:
            continue
        step = ranks.flow.get(stage)
        nxt = bisect_left(times, us + 1, index)
        if step is not None:
            for after_us, after_key in every[nxt:]:
                if after_us != times[nxt]:
                    break
                after_pipeline, after_stage = _split_stage(after_key)
                if after_pipeline == pipeline and ranks.rank.get(after_stage, -1) >= step[0]:
                    _add(out, us, step[1], 1)
                    break
        if stage == ranks.first and any(
            key_after[0] == pipeline and key_after[1] in ranks.wons
            for key_after in (_split_stage(after_key) for _, after_key in every[nxt:])
        ):
            _add(out, us, ranks.flow_e2e_num, 1)


def _add(out: Parts, us: int, component: str, amount: int) -> None:
    key = us, component
    out[key] = out.get(key, 0) + amount


def _won(out: Parts, state: DealState, config: TenantConfig, since: int) -> int | None:
    """Adds the won deal's contributions; returns its amount in units, if convertible."""
    _add(out, since, "won", 1)
    units = None
    amount = state.latest.get(CODE["amount"])
    currency = state.latest.get(CODE["currency"])
    currency_code = currency[2] if currency else None
    if amount is not None:
        units = money_units(Decimal(amount[2]), currency_code, config)
        if units is None:
            _add(out, since, "unconvertible_amounts", 1)
        else:
            _add(out, since, "revenue", units)
            cost = state.latest.get(CODE["cost"])
            if cost is not None:
                cost_units = money_units(Decimal(cost[2]), currency_code, config)
                if cost_units is not None:
                    _add(out, since, "margin", units - cost_units)
    if state.created is not None:
        duration = since - state.created
        _add(out, since, "cycle_sum_ms", us_to_ms(duration))
        _add(out, since, "cycle_count", 1)
        _add(out, since, f"cycle_qb:{bin_key(duration)}", 1)
    return units


def _funnel(
    out: Parts,
    state: DealState,
    config: TenantConfig,
    dims: Dims,
    entries: list[tuple[int, str]],
) -> None:
    reached: dict[str, int] = {}  # pipeline → highest rank reached
    by_pipeline: dict[str, dict[str, int]] = {}
    ranks_by_name = _ranks_of(config)
    for us, key in entries:
        pipeline, stage = _split_stage(key)
        by_pipeline.setdefault(pipeline, {})[stage] = us
        ranks = ranks_by_name[pipeline]
        if ranks is not None:
            rank = ranks.rank.get(stage)
            if rank is not None and rank > reached.get(pipeline, -1):
                reached[pipeline] = rank
    for pipeline, stages in by_pipeline.items():
        ranks = ranks_by_name[pipeline]
        if ranks is None:
            continue
        top = reached.get(pipeline, -1)
        for stage_a, rank_b, den, num in ranks.steps:
            entered = stages.get(stage_a)
            if entered is not None:
                part = entered, den
                out[part] = out.get(part, 0) + 1
                if top >= rank_b:
                    part = entered, num
                    out[part] = out.get(part, 0) + 1
        first = stages.get(ranks.first) if ranks.first is not None else None
        if first is not None:
            part = first, ranks.e2e_den
            out[part] = out.get(part, 0) + 1
            if ranks.wons & stages.keys():
                part = first, ranks.e2e_num
                out[part] = out.get(part, 0) + 1
    if state.created is not None:
        # Every created deal is in the denominator, under its current pipeline.
        home = state.current[2] if state.current else dims[2]
        _add(out, state.created, f"warm_den:{home}", 1)
        ranks = ranks_by_name[home]
        if ranks is not None and ranks.warm is not None:
            reached_warm = (
                reached.get(home, -1) >= ranks.warm_rank
                if ranks.warm_rank is not None
                else ranks.warm in by_pipeline.get(home, {})  # an unranked (lost) warm stage
            )
            if reached_warm:
                _add(out, state.created, ranks.warm_num, 1)


def _stays(out: Parts, entries: list[tuple[int, str]]) -> None:
    times = [us for us, _ in entries]
    for us, key in entries:
        later = bisect_left(times, us + 1)
        if later == len(times):
            continue
        left = times[later]
        stay = left - us
        stay_sum, stay_count, stay_bins = _stay_names(key)
        for part, amount in (
            ((left, stay_sum), us_to_ms(stay)),
            ((left, stay_count), 1),
            ((left, f"{stay_bins}{bin_key(stay)}"), 1),
        ):
            out[part] = out.get(part, 0) + amount


class _StageKeys(dict[str, tuple[str, str]]):
    """Stage key (pipeline SEP stage) → (pipeline, stage): split on every derive of a deal."""

    def __missing__(self, key: str) -> tuple[str, str]:
        pipeline, stage = key.split(SEP, 1)
        if len(self) < _NAMES_LIMIT:  # keys come from events: bounded like _RanksByName
            self[key] = pipeline, stage
        return pipeline, stage


class _StayNames(dict[str, tuple[str, str, str]]):
    """Stage key → its time-in-stage component names: sum, count, and the head of its
    DDSketch bins (salespulse/core/kpi/sketch.py; the bin key follows)."""

    def __missing__(self, key: str) -> tuple[str, str, str]:
        pipeline, stage = _split_stage(key)
        base = f"{pipeline}:{stage}"
        names = f"stay_sum_ms:{base}", f"stay_count:{base}", f"stay_qb:{base}:"
        if len(self) < _NAMES_LIMIT:
            self[key] = names
        return names


class _EntryNames(dict[str, str]):
    """Stage key → its stage_entries component name."""

    def __missing__(self, key: str) -> str:
        pipeline, stage = _split_stage(key)
        name = f"stage_entries:{pipeline}:{stage}"
        if len(self) < _NAMES_LIMIT:
            self[key] = name
        return name


_NAMES_LIMIT = 10_000
_split_stage = _StageKeys().__getitem__
_stay_names = _StayNames().__getitem__
_entry_name = _EntryNames().__getitem__


def lead_facts(state: LeadState, config: TenantConfig) -> tuple[Dims, Parts] | None:
    """The lead's dimensions and contributions; None when it contributes nothing."""
    if state.first is None:
        return None
    parts: Parts = {}
    if state.created is not None:
        parts[(state.created, "leads_created")] = 1
    first_stage = state.first[2]
    left = [us for stage, us in state.stage_first.items() if stage != first_stage]
    if left:
        _add(parts, min(left), "leads_processed", 1)
    if not parts:
        return None
    return _latest_dims(state.latest, config), parts
