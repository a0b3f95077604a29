"""Pure KPI arithmetic of a batch: events + prior entity states → increments and writes.

No I/O. The applier loads the states of the batch's entities, calls :func:`fold_batch`,
and writes the result in one atomic Redis call (streams/redis_sink.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import (
    NO_DAY_HORIZON,
    US_PER_HOUR,
    US_PER_MINUTE,
    Written,
    skip_level,
    to_us,
)
from salespulse.core.kpi.codecs import encode_won
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantConfig, TenantDirectory
from streams.bucket_folder import CACHE_LIMIT, BucketFolder, encode, encoded_fields
from streams.bucket_folder import Increments as Increments
from streams.contributions import Derived as Derived
from streams.contributions import derive
from streams.contributions import event_components as event_components
from streams.entities import Dims, Parts, dims_of
from streams.entity_state import DEAL_STATE, LEAD_STATE, DealState, LeadState, join_deal, join_lead

DEAL_TYPES = frozenset({"deal_created", "deal_stage_changed"})
LEAD_TYPES = frozenset({"lead_created", "lead_stage_changed"})
# entity key → (version, state); version 0 = not stored yet
States = dict[str, tuple[int, DealState | LeadState]]


def decode_state(kind: str, blob: bytes) -> DealState | LeadState:
    """A stored state's JSON (without its version) of an entity kind, "deal" or "lead"."""
    return LEAD_STATE.decode(blob) if kind == "lead" else DEAL_STATE.decode(blob)


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
    # (tenant, deal id, won record (codecs.encode_won) or None when no longer won)
    won_changes: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    # (tenant, event day) → ids of the events that join an entity or count nothing, for
    # the short-lived dedupe set (it saves a refold; the entity state keeps counts exact)
    event_ids: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (tenant, event day) → ids of the event-additive events, for their permanent marks
    # (streams/event_marks.py: nothing else keeps their counts exact)
    marked: dict[tuple[str, str], list[str]] = field(default_factory=dict)
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


# Process-wide memo of a pure mapping, bounded: an event's dimensions (they depend on the
# tenants file, read once per process; keyed by it).
DimsKey = tuple[str | None, str | None, str | None, str | None]
# event dimensions → (Dims, encoded_fields(Dims))
DimsMemo = dict[DimsKey, tuple[Dims, dict[str, str]]]
_DIMS_BY_TENANTS: WeakKeyDictionary[TenantDirectory, dict[str, DimsMemo]] = WeakKeyDictionary()


def fold_batch(
    events: Iterable[CrmEvent],
    tenants: TenantDirectory,
    keys: KpiKeys,
    states: States,
    skip_ids: frozenset[tuple[str, str]] = frozenset(),
    derived: dict[str, Derived] | None = None,
    applied_at_us: int | None = None,
    day_horizon: int = NO_DAY_HORIZON,
) -> BatchFold:
    """Fold a batch. ``states`` holds the stored state of every entity the batch touches;
    ``skip_ids`` are (tenant, event_id) pairs the store has already counted; ``derived``
    may hold what some of those states contribute (else it is computed).

    ``applied_at_us``: when the batch is applied (µs). A backfilled event keeps its own,
    historical receipt, but no sliding window read from now on can see an instant an hour
    older than now: with this, history writes no minute and hour buckets (a two-year
    replay wrote two of them per event, ~130,000 hashes nothing ever read).
    ``day_horizon``: nor day buckets for instants older than this before their receipt
    (buckets.day_horizon_us: past the day-bucket retention, no period reads them).

    The loop runs once per event, ~12 µs each in ``bench --fold-only``'s mix (a stage
    change ~35 µs, half of it the entity diff; the worker's target is 10 µs): hence the
    local names and per-tenant memos (most events share a tenant, dimensions, minutes).
    """
    folder = BucketFolder(tenants, keys, day_horizon)
    fold = BatchFold(increments=folder.increments)  # the folder's sums expand into it
    # tenant → event ids counted (by the store, or earlier in this batch)
    seen: dict[str, set[str]] = {}
    for tenant, event_id in skip_ids:
        seen.setdefault(tenant, set()).add(event_id)
    # entity key → (tenant, id, state being joined, latest receipt among its events)
    touched: dict[str, tuple[str, str, DealState | LeadState, int | None]] = {}
    by_tenant: dict[str, _TenantBatch] = {}
    all_dims = _DIMS_BY_TENANTS.setdefault(tenants, {})
    if sum(len(memo) for memo in all_dims.values()) > CACHE_LIMIT:
        all_dims.clear()
    received_at = fold.received_at
    for event in events:
        tenant = event.tenant
        batch = by_tenant.get(tenant)
        if batch is None:
            batch = by_tenant[tenant] = _TenantBatch(
                folder, fold, tenant, tenants.get(tenant), all_dims.setdefault(tenant, {})
            )
            batch.seen = seen.setdefault(tenant, set())
        ids = batch.seen
        size = len(ids)
        ids.add(event.event_id)
        if len(ids) == size:  # a repeat, or counted by the store: one hash, no tuple
            fold.duplicates += 1
            continue
        us = to_us(event.occurred_at)
        minute = us // US_PER_MINUTE
        received_dt = event.received_at
        if received_dt is None:
            received = None
            level = 0
        else:
            received = to_us(received_dt)
            received_at.append(received / 1_000_000)
            if event.backfill and applied_at_us is not None and applied_at_us > received:
                received = applied_at_us
            level = skip_level(us, received, day_horizon)
        levels = batch.by_minute.get(minute)
        written: Written = levels[level] if levels else batch.namer.written_at(minute, level)
        slot = batch.slots.get(written)
        if slot is None:
            slot = batch.slot(written)
        components = event_components(event, batch.config)
        if not components and event.entity_id is None:
            slot[0].append(event.event_id)
        else:
            # Marked for good: a deal's or lead's state is forgotten after the entity
            # retention, and a replay after that would count its creation again.
            slot[2].append(event.event_id)
        if components:
            dims_key = (event.manager_id, event.team, event.pipeline, event.source_channel)
            dims_memo = batch.dims.get(dims_key)
            if dims_memo is None:
                dims_memo = batch.dims[dims_key] = batch.dims_of(dims_key)
            dims, memo = dims_memo
            fields = slot[1]
            for component, amount in components:
                encoded = memo.get(component) or encode(memo, component, dims)
                fields[encoded] = fields.get(encoded, 0) + amount
        if event.entity_id is None:
            continue
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
            entry = touched[key] = (tenant, event.entity_id, fresh, received)
        elif received is not None and (entry[3] is None or received > entry[3]):
            entry = touched[key] = (*entry[:3], received)
        state = entry[2]
        if isinstance(state, DealState):
            join_deal(state, event, us, batch.config)
        else:
            join_lead(state, event, us, batch.config)
    derived = derived or {}
    fold.events = sum(len(ids) for ids in seen.values()) - len(skip_ids)
    for key, (tenant, entity_id, new, received) in touched.items():
        _diff_entity(
            by_tenant[tenant], key, entity_id, states.get(key), new, received, derived.get(key)
        )
    folder.expand()
    return fold


class _TenantBatch:
    """One tenant's memos within a batch."""

    __slots__ = (
        "_folder", "_ids", "_marked", "by_minute", "config", "dims", "fold", "namer", "seen",
        "slots", "tenant",
    )  # fmt: skip

    def __init__(
        self,
        folder: BucketFolder,
        fold: BatchFold,
        tenant: str,
        config: TenantConfig,
        dims: DimsMemo,
    ) -> None:
        self._folder = folder
        self.tenant = tenant
        self.fold = fold
        self._ids = fold.event_ids
        self._marked = fold.marked
        self.namer = folder.namer(tenant)
        self.by_minute = self.namer.by_minute  # read directly: one lookup per event
        self.config = config
        self.dims = dims  # process-wide
        # written bucket names → (ids of its day's events to dedupe, pending sums of its
        # buckets, ids of its day's events to mark); the namer hands out the same tuple
        # objects, so a lookup costs one hash.
        self.slots: dict[Written, tuple[list[str], dict[str, int], list[str]]] = {}
        self.seen: set[str] = set()  # event ids counted: by the store or in this batch

    def slot(self, written: Written) -> tuple[list[str], dict[str, int], list[str]]:
        day = (self.tenant, written[2] or "")
        ids, marked = self._ids.setdefault(day, []), self._marked.setdefault(day, [])
        slot = self.slots[written] = ids, self._folder.fields_at(self.tenant, written), marked
        return slot

    def dims_of(self, key: DimsKey) -> tuple[Dims, dict[str, str]]:
        dims = dims_of(self.config, *key)
        return dims, encoded_fields(dims)

    def add_delta(self, dims: Dims, delta: Parts, received: int | None, sign: int = 1) -> None:
        """BucketFolder.add of an entity's changes (times ``sign``) through this batch's
        memos; one call per entity, whose contributions share its dimensions."""
        by_minute, slots = self.by_minute, self.slots
        memo = encoded_fields(dims)
        # skip_level with the receipt's thresholds worked out once, not once per part
        if received is None:
            recent_minute = recent_hour = oldest_day_us = -(1 << 62)
        else:
            recent_minute = received // US_PER_MINUTE - 59
            recent_hour = received // US_PER_HOUR - 23
            oldest_day_us = received - self._folder.day_horizon
        # an instant's buckets, once per run of its parts (a won deal has several)
        last_us: int | None = None
        fields: dict[str, int] = {}
        for (us, component), amount in delta.items():
            if not amount:
                continue
            if us != last_us:
                last_us = us
                minute = us // US_PER_MINUTE
                level = (
                    0 if minute >= recent_minute
                    else 1 if us // US_PER_HOUR >= recent_hour
                    else 2 if us >= oldest_day_us
                    else 3
                )  # fmt: skip
                levels = by_minute.get(minute)
                written = levels[level] if levels else self.namer.written_at(minute, level)
                fields = (slots.get(written) or self.slot(written))[1]
            encoded = memo.get(component) or encode(memo, component, dims)
            fields[encoded] = fields.get(encoded, 0) + sign * amount


def _copy(state: DealState | LeadState) -> DealState | LeadState:
    """A copy whose dicts can change while the loaded state stays the 'before' of the diff
    (their values are immutable tuples and ints, so copying the dicts is enough)."""
    if isinstance(state, DealState):
        return DealState(
            created=state.created,
            entries=dict(state.entries),
            current=state.current,
            latest=dict(state.latest),
            again={key: list(later) for key, later in state.again.items()},
        )
    return LeadState(
        first=state.first,
        stage_first=dict(state.stage_first),
        latest=dict(state.latest),
        created=state.created,
    )


def _diff_entity(
    batch: _TenantBatch,
    key: str,
    entity_id: str,
    stored: tuple[int, DealState | LeadState] | None,
    new: DealState | LeadState,
    received: int | None,
    before: Derived | None,
) -> None:
    version, old = stored if stored is not None else (0, None)
    fold = batch.fold
    config = batch.config
    blob = DEAL_STATE.encode(new) if isinstance(new, DealState) else LEAD_STATE.encode(new)
    fold.entity_writes[key] = (version, blob)
    fold.new_states[key] = new
    if before is None and old is not None:
        before = derive(old, config)
    after = fold.new_derived[key] = derive(new, config)
    old_parts = before.contributions if before is not None else None
    if not old_parts or before is None or before.dims == after.dims:
        # the usual case: same dimensions, so only the changed amounts are written
        delta = _delta(after.contributions, old_parts) if old_parts else after.contributions
        if delta and after.dims is not None:
            batch.add_delta(after.dims, delta, received)
    else:
        # the entity moved (another manager, team, ...): all out of the old, all into the new
        if after.dims is not None:
            batch.add_delta(after.dims, after.contributions, received)
        if before.dims is not None:
            batch.add_delta(before.dims, old_parts, received, sign=-1)
    if isinstance(new, DealState):
        old_open = before.open if before else None
        if old_open != after.open:
            fold.open_moves.append((batch.tenant, entity_id, old_open, after.open))
        old_won = before.won if before else None
        if old_won != after.won:
            record = encode_won(after.won) if after.won is not None else None
            fold.won_changes.append((batch.tenant, entity_id, record))


def _delta(after: Parts, before: Parts) -> Parts:
    """after - before. Parts both hold come out as zeros, which add_delta skips: a copy
    and one pass over ``before`` cost less than sieving them out here."""
    delta = after.copy()
    get = delta.get
    for part, amount in before.items():
        delta[part] = get(part, 0) - amount
    return delta
