"""Pure SLA arithmetic of a batch: conversation events + stored conversation states →
response-time increments, the waiting index's changes and the new states. No I/O.

Same shape as streams/fold.py, for the same reason: a conversation's state is a join of
its events (streams/conversation_clock.py), and the batch writes
``contributions(new) - contributions(old)``, so the stored totals always equal the
contributions of the final states whatever the arrival order (docs/sla.md).

A closed wait contributes, at the instant of the reply, under (replying manager, team,
pipeline) and the contact's channel:

    resp_n:{kind}:{channel}                 1
    resp_ms:{kind}:{channel}                calendar milliseconds waited
    resp_bms:{kind}:{channel}               business milliseconds waited
    resp_hist:{kind}:{channel}:{c|b}{i}     1 in histogram bucket i (calendar | business)
    resp_qb:{kind}:{key}                    1 in DDSketch bin key of the calendar ms
    sla_breach:{kind}:{channel}             1 when later than its policy's target
    sla_met:{kind}:{channel}                1 when on time (a policy applies)

A missed inbound call that no reply followed contributes ``calls_abandoned`` 1 at its
instant, under (assigned manager, team, pipeline); a later reply takes it back.

An open wait is a member of the tenant's waiting index, scored by when it opened, so
that its age and SLA state are computed at read time, exact at any instant. A wait whose
contacts were all sent as a backfill never enters the index (``OpenWait.live``), nor does
a wait older than its maximum (``max_wait_s``) when the batch is folded: history and a
very late contact are not a client waiting now (docs/sla.md).

Every event the fold joins into a conversation gets a permanent mark (``SlaFold.marked``,
streams/event_marks.py), as the KPI stage's per-event counts do: a conversation's state
is forgotten after its retention, and a history replayed later would then count its
responses again. A marked event (``skip``) joins only a state that still holds it, where
the join is a repeat (it can still tell that a backfilled contact also came live).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from weakref import WeakKeyDictionary

from salespulse.core.business_hours import BusinessCalendar
from salespulse.core.events import CrmEvent
from salespulse.core.kpi.buckets import NO_DAY_HORIZON, from_us, to_us
from salespulse.core.kpi.catalogue import NO_VALUE, RESPONSE_BUCKETS_S
from salespulse.core.kpi.codecs import WaitingMember, conversation_ref, encode_waiting_member
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.kpi.sketch import bin_key
from salespulse.core.tenants import TenantConfig, TenantDirectory
from streams.bucket_folder import BucketFolder, Increments
from streams.conversation_clock import (
    CONVERSATION_STATE,
    ClosedWait,
    ConversationState,
    OpenWait,
    abandoned_calls,
    join_conversation,
    role_of,
    waits,
)
from streams.entities import Dims, dims_of

# conversation entity key → (version, state); version 0 = not stored yet
ConversationStates = dict[str, tuple[int, ConversationState]]
# (instant µs, component, dims) → amount
Contributions = dict[tuple[int, str, Dims], int]

_BUSINESS_MEMO_LIMIT = 100_000
_US_PER_DAY = 86_400_000_000
# Keyed by the calendar object itself, held weakly: an id() key answered for a freed
# calendar once its address was reused; a freed calendar's answers go with it.
_business_memo: WeakKeyDictionary[BusinessCalendar, dict[tuple[int, int], int]] = (
    WeakKeyDictionary()
)


def decode_conversation(blob: bytes) -> ConversationState:
    """A stored state's JSON (without its version)."""
    return CONVERSATION_STATE.decode(blob)


@dataclass
class SlaFold:
    increments: Increments = field(default_factory=dict)
    # entity key → (expected stored version, new state JSON)
    entity_writes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # entity key → the state written (what the next batch is folded on, streams/sla_store.py)
    new_states: dict[str, ConversationState] = field(default_factory=dict)
    # (tenant, member to remove or None, member to add or None, its score µs)
    waiting_moves: list[tuple[str, str | None, str | None, int]] = field(default_factory=list)
    # tenant → newest received_at among the batch's events (ms)
    last_received: dict[str, int] = field(default_factory=dict)
    # (tenant, UTC day of the event) → ids of the events joined that the SLA stage has
    # not marked yet (``smark:``; streams/sla_store.py)
    marked: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    events: int = 0
    # open waits kept off the waiting index: older than their maximum when folded
    waits_expired: int = 0
    duplicates: int = 0  # marked events that joined nothing (counted before)
    received_at: list[float] = field(default_factory=list)


def response_bucket(seconds: float) -> int:
    """Index of the first inclusive upper bound ≥ seconds; len(bounds) for +Inf."""
    return bisect_left(RESPONSE_BUCKETS_S, seconds)


def business_ms(config: TenantConfig, team: str | None, opened: datetime, closed: datetime) -> int:
    """Open business time between the instants, in ms (whole seconds: calendar precision);
    with no calendar the office is always open and this is the calendar time."""
    calendar = config.calendar_for(team)
    if calendar is None:
        return (to_us(closed) - to_us(opened)) // 1000
    memo = _business_memo.get(calendar)
    if memo is None:
        memo = _business_memo[calendar] = {}
    span = (to_us(opened), to_us(closed))
    held = memo.get(span)
    if held is None:
        if len(memo) > _BUSINESS_MEMO_LIMIT:
            memo.clear()
        held = memo[span] = calendar.business_seconds(opened, closed) * 1000
    return held


def closed_contributions(wait: ClosedWait, config: TenantConfig) -> Contributions:
    dims = dims_of(config, wait.manager, wait.team, wait.pipeline, None)
    channel = wait.channel or NO_VALUE
    tag = f"{wait.kind}:{channel}"
    at = to_us(wait.closed_at)
    calendar_ms = (at - to_us(wait.opened_at)) // 1000
    open_ms = business_ms(config, dims[1], wait.opened_at, wait.closed_at)
    produced: Contributions = {
        (at, f"resp_n:{tag}", dims): 1,
        (at, f"resp_ms:{tag}", dims): calendar_ms,
        (at, f"resp_bms:{tag}", dims): open_ms,
    }
    calendar_bucket = response_bucket(calendar_ms / 1000)
    business_bucket = response_bucket(open_ms / 1000)
    produced[(at, f"resp_hist:{tag}:c{calendar_bucket}", dims)] = 1
    produced[(at, f"resp_hist:{tag}:b{business_bucket}", dims)] = 1
    # The API's median and p90 (within 1 %, metrics/read/quantiles.py); the histograms
    # above stay for Prometheus. Over every channel, as the API shows them: fewer fields.
    produced[(at, f"resp_qb:{wait.kind}:{bin_key(calendar_ms)}", dims)] = 1
    target = config.sla_target(wait.channel, wait.pipeline, wait.kind)
    if target is not None:
        measured_ms = open_ms if target.basis == "business" else calendar_ms
        verdict = "sla_breach" if measured_ms > target.target_s * 1000 else "sla_met"
        produced[(at, f"{verdict}:{tag}", dims)] = 1
    return produced


def waiting_member(ref: str, wait: OpenWait) -> tuple[str, int]:
    """(member, score) of an open wait in the waiting index (codecs.WaitingMember: ids
    only, as the events gave them; read back by metrics/read/waiting.py)."""
    member = WaitingMember(
        ref,
        wait.kind,
        wait.channel or NO_VALUE,
        wait.manager or "",
        wait.team or "",
        wait.pipeline or "",
    )
    return encode_waiting_member(member), to_us(wait.opened_at)


def max_wait_s(
    config: TenantConfig, channel: str | None, pipeline: str | None, default_s: float
) -> float:
    """How long a wait stays on the live list: its SLA policy's `max_wait`, else the
    tenant's `sla.max_wait`, else ``default_s`` (SALESPULSE_WAIT_MAX_AGE_DAYS)."""
    own = config.sla.max_wait_for(channel, pipeline)
    return own if own is not None else default_s


def expired(opened_us: int, now_us: int, max_wait: float) -> bool:
    return opened_us < now_us - round(max_wait * 1_000_000)


@dataclass(frozen=True)
class WaitLimit:
    """When the batch is folded and the deployment's default maximum wait (seconds)."""

    now_us: int
    default_max_wait_s: float


@dataclass(frozen=True)
class ConversationDerived:
    contributions: Contributions
    waiting: tuple[str, int] | None
    open: OpenWait | None = None


def derive_conversation(
    ref: str, state: ConversationState, config: TenantConfig
) -> ConversationDerived:
    found = waits(state)
    contributions: Contributions = {}
    for wait in found.closed:
        for key, amount in closed_contributions(wait, config).items():
            contributions[key] = contributions.get(key, 0) + amount
    for us, _, _, manager, team, pipeline in abandoned_calls(state):
        key = us, "calls_abandoned", dims_of(config, manager, team, pipeline, None)
        contributions[key] = contributions.get(key, 0) + 1
    # a wait of backfilled contacts only is history: timed, never listed
    listed = found.open if found.open is not None and found.open.live else None
    waiting = waiting_member(ref, listed) if listed is not None else None
    return ConversationDerived(contributions, waiting, found.open)


def fold_conversations(
    events: Iterable[CrmEvent],
    tenants: TenantDirectory,
    keys: KpiKeys,
    states: ConversationStates,
    limit: WaitLimit | None = None,
    skip: frozenset[tuple[str, str]] = frozenset(),
    day_horizon: int = NO_DAY_HORIZON,
) -> SlaFold:
    """Fold a batch; ``states`` holds the stored state of every conversation it touches.
    With a ``limit``, a wait already past its maximum is not added to the index.
    ``skip``: (tenant, event id) pairs the store holds marks of (counted before).
    ``day_horizon``: an instant older than its receipt by this writes no day bucket
    (buckets.day_horizon_us)."""
    folder = BucketFolder(tenants, keys, day_horizon)
    fold = SlaFold()
    marking: set[tuple[str, str]] = set()  # a repeat within the batch is marked once
    # entity key → (tenant, ref, state being joined, newest receipt µs)
    touched: dict[str, tuple[str, str, ConversationState, int | None]] = {}
    days: dict[int, str] = {}  # days since the epoch → ISO date: few distinct in a batch
    for event in events:
        fold.events += 1
        received = to_us(event.received_at) if event.received_at is not None else None
        if received is not None:
            fold.received_at.append(received / 1_000_000)
            newest = fold.last_received.get(event.tenant, 0)
            fold.last_received[event.tenant] = max(newest, received // 1000)
        ref = conversation_ref(event)
        if ref is None:
            continue
        role = role_of(event)
        if role is None:
            continue
        occurred_us = to_us(event.occurred_at)
        key = keys.entity(event.tenant, "conv", ref)
        entry = touched.get(key)
        named = (event.tenant, event.event_id)
        if named in skip:
            held = entry[2] if entry is not None else states.get(key, (0, None))[1]
            if held is None or event.event_id not in held.marks:
                # counted before, in a state since forgotten (or begun afresh)
                fold.duplicates += 1
                continue
        elif named not in marking:
            marking.add(named)
            day_number = occurred_us // _US_PER_DAY
            day = days.get(day_number)
            if day is None:
                day = days[day_number] = from_us(day_number * _US_PER_DAY).date().isoformat()
            fold.marked.setdefault((event.tenant, day), []).append(event.event_id)
        if event.backfill and received is not None and limit is not None:
            # history applied now: no window read from now on sees its minute or hour
            received = max(received, limit.now_us)
        if entry is None:
            stored = states.get(key)
            fresh = (
                ConversationState(
                    marks=dict(stored[1].marks),
                    missed_calls=list(stored[1].missed_calls),
                    backfilled=list(stored[1].backfilled),
                )
                if stored
                else ConversationState()
            )
            entry = touched[key] = (event.tenant, ref, fresh, received)
        elif received is not None and (entry[3] is None or received > entry[3]):
            entry = touched[key] = (*entry[:3], received)
        join_conversation(entry[2], event, occurred_us, role)
    for key, (tenant, ref, new, received) in touched.items():
        version, old = states.get(key, (0, None))
        if old is not None and old.marks == new.marks and old.backfilled == new.backfilled:
            continue  # repeats only: nothing changes, nothing to write
        config = tenants.get(tenant)
        fold.entity_writes[key] = (version, CONVERSATION_STATE.encode(new))
        fold.new_states[key] = new
        after = derive_conversation(ref, new, config)
        delta = dict(after.contributions)
        before_waiting = None
        if old is not None:
            before = derive_conversation(ref, old, config)
            before_waiting = before.waiting
            for contribution, amount in before.contributions.items():
                delta[contribution] = delta.get(contribution, 0) - amount
        for (us, component, dims), amount in delta.items():
            folder.add(tenant, us, component, dims, amount, received)
        if before_waiting != after.waiting:
            added = after.waiting
            if added is not None and _too_old(after.open, added[1], config, limit):
                fold.waits_expired += 1
                added = None
            if before_waiting is not None or added is not None:
                fold.waiting_moves.append(
                    (
                        tenant,
                        before_waiting[0] if before_waiting else None,
                        added[0] if added else None,
                        added[1] if added else 0,
                    )
                )
    folder.expand()
    fold.increments = folder.increments
    return fold


def _too_old(
    wait: OpenWait | None, opened_us: int, config: TenantConfig, limit: WaitLimit | None
) -> bool:
    if limit is None or wait is None:
        return False
    # the channel and pipeline as the member keeps them, as the waiting list reads them
    channel = wait.channel or NO_VALUE
    longest = max_wait_s(config, channel, wait.pipeline or None, limit.default_max_wait_s)
    return expired(opened_us, limit.now_us, longest)
