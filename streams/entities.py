"""The KPI contributions derived from an entity's state (streams/entity_state.py). Pure.

The fold writes ``contributions(new) - contributions(old)`` for each touched entity, so the
stored totals always equal the contributions of the final states: stream equals batch,
whatever the order (docs/kpi-semantics.md, "Deal state").
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from itertools import pairwise

from salespulse.core.kpi.catalogue import NO_VALUE, UNASSIGNED
from salespulse.core.kpi.codecs import WonDeal
from salespulse.core.kpi.redis_layout import MONEY_SCALE
from salespulse.core.kpi.sketch import bin_key
from salespulse.core.tenants import Pipeline, TenantConfig
from streams.entity_state import CODE, DealState, LeadState
from streams.stage_names import entry_name, split_stage, stay_names

Dims = tuple[str, str, str, str]  # manager, team, pipeline, source
# (instant in µs, component, dims) → amount
Contribution = tuple[int, str, Dims, int]
# An entity's contributions all share its dimensions (its latest manager, team, ...), so
# they are summed by (instant, component) under one Dims: no 4-tuple in every key.
Parts = dict[tuple[int, str], int]

_UNIT = Decimal(1)


def money_units(amount: Decimal, currency: str | None, config: TenantConfig) -> int | None:
    """Amount in 1/10,000 of the tenant currency, or None when no rate converts it."""
    if currency is not None and currency != config.currency:
        rate = config.currency_rates.get(currency)
        if rate is None:
            return None
        amount = amount * rate
    return int((amount * MONEY_SCALE).quantize(_UNIT, rounding=ROUND_HALF_EVEN))


def us_to_ms(us: int) -> int:
    """Microseconds to whole milliseconds, rounded half-even (docs/kpi-semantics.md)."""
    quotient, remainder = divmod(us, 1000)
    if remainder > 500 or (remainder == 500 and quotient % 2):
        quotient += 1
    return quotient


def dims_of(
    config: TenantConfig,
    manager: str | None,
    team: str | None,
    pipeline: str | None,
    source: str | None,
) -> Dims:
    return (
        manager or UNASSIGNED,
        config.team_of(manager) or team or NO_VALUE,
        pipeline or NO_VALUE,
        source or NO_VALUE,
    )


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
        # stage a → (rank of b, den, num) of its step: a deal enters fewer stages than
        # a pipeline has steps, so the funnel looks its entries up here
        self.step_of = {a: (rank_b, den, num) for a, rank_b, den, num in self.steps}
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


def deal_contributions(state: DealState, config: TenantConfig) -> list[Contribution]:
    dims, parts, _, _ = deal_facts(state, config)
    return [(us, component, dims, amount) for (us, component), amount in parts.items()]


OpenMembership = tuple[str, str, int]


def deal_facts(
    state: DealState, config: TenantConfig
) -> tuple[Dims, Parts, OpenMembership | None, WonDeal | None]:
    """Dimensions, contributions, open membership and won record at once: derive needs
    them all for every touched deal, and they share the current kind, the dimensions, the
    amount. (The ``out[k] = out.get(k, 0) + n`` lines are inlined on purpose: they run for
    every touched deal of every batch.)"""
    out: Parts = {}
    latest = state.latest
    ranks_by_name = _ranks_of(config)
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
    _funnel(out, state, ranks_by_name, dims)
    if state.entries:
        _entries_and_flow(out, state, ranks_by_name)
    return dims, out, membership, won


def _entries_and_flow(out: Parts, state: DealState, ranks_by_name: _RanksByName) -> None:
    """stage_entries (every distinct entry), the time in stage of each first entry, and
    the flow: of the entries into a step's stage A, those whose next entry (the deal's
    earliest later one) ranks at or after the step's B; end to end, of the entries into
    the first stage, those followed by the entry into a won stage of the pipeline. Both
    counted at A's entry: never above 1.

    One sort and one walk from the latest instant back, a group of equal instants at a
    time: an entry needs only the group of the next later instant (flow), whether a won
    entry of its pipeline comes later (end to end), and the next later instant at which
    some stage is first entered (its stay ends there).
    """
    entries = state.entries
    if len(entries) == 1 and not state.again:  # one entry: nothing follows it
        for key, us in entries.items():
            part = us, entry_name(key)
            out[part] = out.get(part, 0) + 1
        return
    every = [(us, key) for key, us in entries.items()]
    for key, again in state.again.items():
        every += [(us, key) for us in again]
    every.sort()
    later_keys: list[str] = []  # stage keys entered at the next later instant
    won_later: set[str] = set()  # pipelines entered in a won stage at a later instant
    later_first: int | None = None  # the next later instant of a first entry
    end = len(every)
    while end:
        at = every[end - 1][0]
        start = end - 1
        while start and every[start - 1][0] == at:
            start -= 1
        group = [key for _, key in every[start:end]]
        has_first = False
        for key in group:
            part = at, entry_name(key)
            out[part] = out.get(part, 0) + 1
            if entries[key] == at:
                has_first = True
                if later_first is not None:
                    stay = later_first - at
                    stay_sum, stay_count, stay_bins = stay_names(key)
                    for part, amount in (
                        ((later_first, stay_sum), us_to_ms(stay)),
                        ((later_first, stay_count), 1),
                        ((later_first, f"{stay_bins}{bin_key(stay)}"), 1),
                    ):
                        out[part] = out.get(part, 0) + amount
            pipeline, stage = split_stage(key)
            ranks = ranks_by_name[pipeline]
            if ranks is None:
                continue
            step = ranks.flow.get(stage)
            if step is not None:
                for after_key in later_keys:
                    after_pipeline, after_stage = split_stage(after_key)
                    if after_pipeline == pipeline and ranks.rank.get(after_stage, -1) >= step[0]:
                        part = at, step[1]
                        out[part] = out.get(part, 0) + 1
                        break
            if stage == ranks.first and pipeline in won_later:
                part = at, ranks.flow_e2e_num
                out[part] = out.get(part, 0) + 1
        for key in group:
            pipeline, stage = split_stage(key)
            ranks = ranks_by_name[pipeline]
            if ranks is not None and stage in ranks.wons:
                won_later.add(pipeline)
        later_keys = group
        if has_first:
            later_first = at
        end = start


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


def _funnel(out: Parts, state: DealState, ranks_by_name: _RanksByName, dims: Dims) -> None:
    """Cohort steps, end to end and warm conversion, from the first entries."""
    reached: dict[str, int] = {}  # pipeline → highest rank reached
    by_pipeline: dict[str, dict[str, int]] = {}
    for key, us in state.entries.items():
        pipeline, stage = split_stage(key)
        stages = by_pipeline.get(pipeline)
        if stages is None:
            stages = by_pipeline[pipeline] = {}
        stages[stage] = us
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
        step_of = ranks.step_of
        for stage, entered in stages.items():
            step = step_of.get(stage)
            if step is not None:
                part = entered, step[1]
                out[part] = out.get(part, 0) + 1
                if top >= step[0]:
                    part = entered, step[2]
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
