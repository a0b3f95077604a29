"""Pure KPI arithmetic of a batch: events + prior entity states → increments and writes.

No I/O. The applier loads the states of the batch's entities, calls :func:`fold_batch`,
and writes the result in one atomic Redis call (streams/redis_sink.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import msgspec

from salespulse.events import CrmEvent
from salespulse.kpi_keys import KpiKeys, encode_field
from salespulse.tenants import TenantConfig, TenantDirectory
from streams.buckets import (
    GRANULARITIES,
    US_PER_HOUR,
    US_PER_MINUTE,
    BucketNamer,
    Names,
    namer_for,
    to_us,
)
from streams.entities import (
    DealState,
    Dims,
    LeadState,
    deal_contributions,
    dims_of,
    join_deal,
    join_lead,
    lead_contributions,
    money_units,
    open_membership,
    won_record,
)

DEAL_TYPES = frozenset({"deal_created", "deal_stage_changed"})
LEAD_TYPES = frozenset({"lead_created", "lead_stage_changed"})
# (tenant, granularity, bucket) → encoded field → increment: grouped as it is written
Increments = dict[tuple[str, str, str], dict[str, int]]
# entity key → (version, state); version 0 = not stored yet
States = dict[str, tuple[int, DealState | LeadState]]

# JSON text (it travels inside the MessagePack batch as a string: Redis's cmsgpack
# cannot read binary), array-like structs so that a stored state carries no field names.
_deal_decoder = msgspec.json.Decoder(DealState)
_lead_decoder = msgspec.json.Decoder(LeadState)
_state_encoder = msgspec.json.Encoder()


def decode_state(kind: str, blob: bytes) -> DealState | LeadState:
    return _lead_decoder.decode(blob) if kind == "lead" else _deal_decoder.decode(blob)


@dataclass
class BatchFold:
    """Everything one batch changes, ready for one Redis call."""

    increments: Increments = field(default_factory=dict)
    # entity key → (expected stored version, new state blob)
    entity_writes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # entity key → the new state and what it contributes (the applier caches both)
    new_states: dict[str, DealState | LeadState] = field(default_factory=dict)
    new_derived: dict[str, Derived] = field(default_factory=dict)
    # (tenant, deal id, old open (pipeline, stage, since) or None, new one or None)
    open_moves: list[tuple[str, str, tuple[str, str, int] | None, tuple[str, str, int] | None]] = (
        field(default_factory=list)
    )
    # (tenant, deal id, won record JSON or None when no longer won)
    won_changes: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    # (tenant, event day) → event ids, for the cross-batch dedupe set
    event_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    events: int = 0
    # Dropped because seen earlier in the batch or already counted by the store.
    duplicates: int = 0
    received_at: list[float] = field(default_factory=list)


def entity_ref(keys: KpiKeys, event: CrmEvent) -> tuple[str, str] | None:
    """(Redis key, kind) of the entity whose state the event joins, if any."""
    if event.entity_id is None:
        return None
    if event.type in DEAL_TYPES:
        return keys.entity(event.tenant, "deal", event.entity_id), "deal"
    if event.type in LEAD_TYPES:
        return keys.entity(event.tenant, "lead", event.entity_id), "lead"
    return None


def event_components(event: CrmEvent, config: TenantConfig) -> Iterator[tuple[str, int]]:
    """The event-additive components of one event (docs/kpi-semantics.md)."""
    kind = event.type
    if kind == "call" and event.direction is not None:
        outcome = "answered" if event.answered else "missed"
        yield f"calls:{event.direction}:{outcome}", 1
        if event.answered and event.duration_s:
            yield "talk_time_ms", round(event.duration_s * 1000)
    elif kind == "message" and event.direction is not None and not event.automated:
        yield f"messages_{event.direction}", 1
    elif kind == "meeting":
        yield "meetings", 1
    elif kind == "lead_created":
        yield "leads_created", 1
    elif kind == "deal_created":
        yield "deals_created", 1
    elif kind == "deal_stage_changed" and event.pipeline and event.stage_to:
        yield f"stage_entries:{event.pipeline}:{event.stage_to}", 1
    elif kind == "rating" and event.rating is not None:
        yield "rating_sum", event.rating
        yield "rating_count", 1
    elif kind in ("invoice", "payment", "marketing_cost") and event.amount is not None:
        units = money_units(event.amount, event.currency, config)
        if units is not None:
            name = {"invoice": "invoiced", "payment": "paid"}.get(kind)
            yield name or f"marketing_cost:{event.source_channel or 'none'}", units


def effective(names: Names, us: int, received: int | None) -> tuple[str | None, ...]:
    """The bucket names to write, with short buckets skipped when no read can see them."""
    if received is not None:
        if us // US_PER_HOUR < received // US_PER_HOUR - 23:
            return (None, None, *names[2:])
        if us // US_PER_MINUTE < received // US_PER_MINUTE - 59:
            return (None, *names[1:])
    return names


# Process-wide memos of pure mappings, bounded: encoded Redis fields, and an event's
# dimensions (they depend on the tenants file, read once per process; keyed by it).
_CACHE_LIMIT = 200_000
_ENCODED_FIELDS: dict[tuple[str, Dims], str] = {}
_DIMS_BY_TENANTS: WeakKeyDictionary[
    TenantDirectory, dict[tuple[str, str | None, str | None, str | None, str | None], Dims]
] = WeakKeyDictionary()


class BucketFolder:
    def __init__(self, tenants: TenantDirectory, keys: KpiKeys) -> None:
        self._tenants = tenants
        self._keys = keys
        self._namers: dict[str, BucketNamer] = {}
        self._fields = _ENCODED_FIELDS
        # (tenant, bucket names with skipped ones as None, field) → amount; expanded into
        # one increment per granularity once, at the end (most instants share buckets).
        self._pending: dict[tuple[str, tuple[str | None, ...], str], int] = {}
        self.fold = BatchFold()

    def namer(self, tenant: str) -> BucketNamer:
        namer = self._namers.get(tenant)
        if namer is None:
            namer = self._namers[tenant] = namer_for(self._tenants.zone_for(tenant))
        return namer

    def add(
        self, tenant: str, us: int, component: str, dims: Dims, amount: int, received: int | None
    ) -> None:
        """Add to the instant's bucket of every granularity.

        Minute and hour buckets serve only the 15m/1h/24h windows, read after the
        events' receipt: an instant more than 59 minutes (23 hours) older than the
        receipt of what moved it can never be inside such a window again, so its
        minute (hour) bucket is not written. Old history then costs no short buckets.
        """
        if amount:
            names = effective(self.namer(tenant).names(us), us, received)
            self.add_at(tenant, names, component, dims, amount)

    def add_at(
        self, tenant: str, names: tuple[str | None, ...], component: str, dims: Dims, amount: int
    ) -> None:
        """Add to buckets already named (and skipped) by :func:`effective`."""
        encoded = self._fields.get((component, dims))
        if encoded is None:
            if len(self._fields) > _CACHE_LIMIT:
                self._fields.clear()
            encoded = self._fields[(component, dims)] = encode_field((component, *dims)).decode()
        key = (tenant, names, encoded)
        pending = self._pending
        pending[key] = pending.get(key, 0) + amount

    def expand(self) -> None:
        increments = self.fold.increments
        for (tenant, names, encoded), amount in self._pending.items():
            if amount == 0:
                continue
            for granularity, bucket in zip(GRANULARITIES, names, strict=True):
                if bucket is not None:
                    fields = increments.get((tenant, granularity, bucket))
                    if fields is None:
                        fields = increments[(tenant, granularity, bucket)] = {}
                    fields[encoded] = fields.get(encoded, 0) + amount
        self._pending.clear()


def fold_batch(
    events: Iterable[CrmEvent],
    tenants: TenantDirectory,
    keys: KpiKeys,
    states: States,
    skip_ids: frozenset[tuple[str, str]] = frozenset(),
    derived: dict[str, Derived] | None = None,
) -> BatchFold:
    """Fold a batch. ``states`` holds the stored state of every entity the batch touches;
    ``skip_ids`` are (tenant, event_id) pairs the store has already counted; ``derived``
    may hold what some of those states contribute (else it is computed)."""
    folder = BucketFolder(tenants, keys)
    fold = folder.fold
    seen: set[tuple[str, str]] = set(skip_ids)
    # entity key → (tenant, id, state being joined, latest receipt among its events)
    touched: dict[str, tuple[str, str, DealState | LeadState, int | None]] = {}
    # Per-batch caches: most events share a tenant, a handful of dimensions and minutes.
    configs: dict[str, TenantConfig] = {}
    all_dims = _DIMS_BY_TENANTS.setdefault(tenants, {})
    if len(all_dims) > _CACHE_LIMIT:
        all_dims.clear()
    add_at = folder.add_at
    for event in events:
        tenant = event.tenant
        identity = (tenant, event.event_id)
        if identity in seen:
            fold.duplicates += 1
            continue
        seen.add(identity)
        config = configs.get(tenant)
        if config is None:
            config = configs[tenant] = tenants.get(tenant)
        us = to_us(event.occurred_at)
        names = folder.namer(tenant).names(us)
        fold.event_ids.setdefault((tenant, names[2]), []).append(event.event_id)
        fold.events += 1
        received = None
        if event.received_at is not None:
            received = to_us(event.received_at)
            fold.received_at.append(received / 1_000_000)
        dims_key = (tenant, event.manager_id, event.team, event.pipeline, event.source_channel)
        dims = all_dims.get(dims_key)
        if dims is None:
            dims = all_dims[dims_key] = dims_of(config, *dims_key[1:])
        written = effective(names, us, received)
        for component, amount in event_components(event, config):
            add_at(tenant, written, component, dims, amount)
        ref = entity_ref(keys, event)
        if ref is None:
            continue
        key = ref[0]
        entry = touched.get(key)
        if entry is None:
            stored = states.get(key)
            fresh: DealState | LeadState
            if stored is not None:
                fresh = _copy(stored[1])
            else:
                fresh = DealState() if event.type in DEAL_TYPES else LeadState()
            entry = touched[key] = (tenant, event.entity_id or "", fresh, received)
        elif received is not None and (entry[3] is None or received > entry[3]):
            entry = touched[key] = (*entry[:3], received)
        state = entry[2]
        if isinstance(state, DealState):
            join_deal(state, event, us)
        else:
            join_lead(state, event, us)
    for key, (tenant, entity_id, new, received) in touched.items():
        _diff_entity(
            folder, key, tenant, entity_id, states.get(key), new, tenants.get(tenant), received,
            (derived or {}).get(key),
        )  # fmt: skip
    folder.expand()
    return fold


def _copy(state: DealState | LeadState) -> DealState | LeadState:
    """A copy whose dicts can change while the loaded state stays the 'before' of the diff
    (their values are immutable tuples and ints, so copying the dicts is enough)."""
    if isinstance(state, DealState):
        return DealState(
            created=state.created,
            entries=dict(state.entries),
            current=state.current,
            latest=dict(state.latest),
        )
    return LeadState(
        first=state.first, stage_first=dict(state.stage_first), latest=dict(state.latest)
    )


@dataclass(frozen=True)
class Derived:
    """What a state contributes: KPI amounts by (instant, component, dims), and its
    membership of the open-deal and won-deal indexes. A pure function of the state (and
    the tenant config), so the applier keeps it beside a cached state."""

    contributions: dict[tuple[int, str, Dims], int]
    open: tuple[str, str, int] | None = None
    won: list[object] | None = None


def derive(state: DealState | LeadState, config: TenantConfig) -> Derived:
    contributions: dict[tuple[int, str, Dims], int] = {}
    produced = (
        deal_contributions(state, config)
        if isinstance(state, DealState)
        else lead_contributions(state, config)
    )
    for us, component, dims, amount in produced:
        key = (us, component, dims)
        contributions[key] = contributions.get(key, 0) + amount
    if isinstance(state, DealState):
        return Derived(contributions, open_membership(state, config), won_record(state, config))
    return Derived(contributions)


def _diff_entity(
    folder: BucketFolder,
    key: str,
    tenant: str,
    entity_id: str,
    stored: tuple[int, DealState | LeadState] | None,
    new: DealState | LeadState,
    config: TenantConfig,
    received: int | None,
    before: Derived | None,
) -> None:
    version, old = stored if stored is not None else (0, None)
    fold = folder.fold
    fold.entity_writes[key] = (version, _state_encoder.encode(new))
    fold.new_states[key] = new
    if before is None and old is not None:
        before = derive(old, config)
    after = fold.new_derived[key] = derive(new, config)
    delta = dict(after.contributions)
    if before is not None:
        for contribution, amount in before.contributions.items():
            delta[contribution] = delta.get(contribution, 0) - amount
    if isinstance(new, DealState):
        old_open = before.open if before else None
        if old_open != after.open:
            fold.open_moves.append((tenant, entity_id, old_open, after.open))
        old_won = before.won if before else None
        if old_won != after.won:
            record = msgspec.json.encode(after.won) if after.won is not None else None
            fold.won_changes.append((tenant, entity_id, record))
    for (us, component, dims), amount in delta.items():
        if amount:
            folder.add(tenant, us, component, dims, amount, received)
