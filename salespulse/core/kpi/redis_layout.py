"""Every key SalesPulse keeps in Redis, under the deployment's prefix `{p}`
(`SALESPULSE_REDIS_KEY_PREFIX`, default `sp:`), with its value format, its expiry, the
module that writes it and the modules that read it. `KpiKeys`
(`salespulse/core/kpi/redis_layout.py`) builds every name but `crmstate:`'s; the values
that one module writes and another reads go through the codecs of
`salespulse/core/kpi/codecs.py`. `␟` is the unit separator `\\x1f` (`SEP`): no id can hold
it (`events.Ident` forbids control characters). µs: microseconds since the epoch, as
integers.

Every batch of the KPI and the SLA stage lands in one call of `streams/apply_batch.lua`,
atomically, but for the hash fields past the first few thousand, which that call leaves
in `{p}journal` for the next calls (streams/journal.py); a key that the script writes is
written "through the script" below. The
script touches only the keys its caller declares in KEYS (as Redis Cluster requires): it
builds no key name itself.

## The KPI store (derived from `crm.events`, replaced by `salespulse rebuild`)

- `{p}tenants`: SET of tenant names that have KPIs.
  - TTL: none.
  - writers: `streams/redis_sink.py` (tenants of the events a batch counts),
    `streams/sla_store.py` (tenants of a batch's events that carry a receipt time),
    through the script.
  - readers: `metrics/read/kpi_reader.py` (`tenants()`: the collectors and the API list).
- `{p}kpi:{tenant}:{gran}:{bucket}`: HASH, the KPI sums of one time bucket.
  - value: field `codecs.encode_field`, a JSON array `[component, manager, team,
    pipeline, source]` (so no id can break it) without its trailing `none`s
    (`["calls:in:answered","m-7"]`; a store written before holds the full arrays, read
    alike), → integer sum (HINCRBY, exact: money in
    `MONEY_SCALE` units, durations in milliseconds). `gran` is `m` (UTC minute), `h`
    (UTC hour), `d` (local day), `w` (local ISO week: no longer written, the `week`
    window sums its seven `d` buckets; those an older version wrote expire), `mo` (local
    month) or `all`; `salespulse/core/kpi/buckets.py` names the buckets.
  - TTL, from the last write: `m` 2 hours, `h` 2 days (they serve the 15m, 1h and 24h
    windows only, so an instant more than an hour (a day) older than its event's receipt,
    or than the apply of a backfilled event, writes none: `buckets.skip_level`); `d`,
    `w` `SALESPULSE_DAY_BUCKET_RETENTION_DAYS` (an instant more than the retention + 2
    days older than the receipt, or the apply of a backfill, writes no `d` bucket either:
    no period reads its day any more, `buckets.day_horizon_us`);
    `mo` `SALESPULSE_MONTH_BUCKET_RETENTION_DAYS`; `all` none.
  - writers: `streams/redis_sink.py` (KPI stage), `streams/sla_store.py` (response times),
    through the script.
  - readers: `metrics/read/kpi_reader.py` (`metrics/read/sum_buckets.lua` sums a
    many-bucket window inside Redis), hence the collectors, the API and the wall.
- `{p}ent:{tenant}:{kind}:{id}`: STRING, the joined state of one entity, `kind` `deal`,
  `lead` or `conv` (a conversation: `id` is `c␟{conversation_id}` or `k␟{client_id}`,
  `codecs.conversation_ref`).
  - value: `{version}:{state JSON}` (`codecs.StateCodec`): the version counts the key's
    writes, the state is an array-like struct (`streams/entity_state.py` `DealState`,
    `LeadState`; `streams/conversation_clock.py` `ConversationState`).
  - TTL, from the last write: an open deal (in an open stage, or in none yet) none; a won
    or lost deal and a lead `SALESPULSE_ENTITY_RETENTION_DAYS`; a conversation
    `SALESPULSE_CONVERSATION_RETENTION_DAYS`.
  - writers: `streams/redis_sink.py` (deal, lead), `streams/sla_store.py` (conv), through
    the script, which refuses a batch folded on another version; `streams/switch_store.lua`
    lifts the versions of a rebuilt set.
  - readers: `streams/redis_sink.py`, `streams/sla_store.py` (the next batch's fold).
- `{p}open:{tenant}:{pipeline}␟{stage}`: ZSET of the deals open in that stage.
  - value: member deal id → score the µs the deal entered the stage.
  - TTL: none; a deal leaves the set when it leaves the stage.
  - writer: `streams/redis_sink.py`, through the script.
  - readers: `metrics/read/kpi_reader.py` (open, ready and stuck deals).
- `{p}openkeys:{tenant}`: SET of the open-stage keys in use.
  - value: members `{pipeline}␟{stage}` (`codecs.stage_member`); never removed (an empty
    stage reads as no open deals).
  - TTL: none.
  - writer: `streams/redis_sink.py`, through the script.
  - readers: `metrics/read/kpi_reader.py`.
- `{p}won:{tenant}`: HASH, one record per won deal (client KPIs).
  - value: field deal id → `codecs.WonDeal` as a JSON array `[won µs, amount in
    MONEY_SCALE units or null, client id or null, lead id or null, manager, team,
    pipeline, source]`; the field is deleted when the deal is no longer won.
  - TTL: none (the `all` window reads every record).
  - writer: `streams/redis_sink.py` (records made by `streams/entities.py`), through the
    script.
  - readers: `metrics/read/kpi_reader.py`, `metrics/read/won_deals.py`.
- `{p}seen:{tenant}:{day}`: SET of the ids of the events folded that carry no mark (those
  that neither count anything nor join a deal or a lead), by the local day of the event:
  it spares the refold of a repeat. A version
  before `mark:` put every id here: the script looks up the ids of marked events here
  too, so what such a version counted is not counted again after an upgrade.
  - TTL: `SALESPULSE_DEDUPE_RETENTION_DAYS` from the last write.
  - writer and reader: `streams/redis_sink.py`, through the script (checked before any
    write).
- `{p}mark:{tenant}:{day}`: HASH, the permanent marks of the events counted that count
  something or join a deal or a lead, by the local day of the event: what keeps the
  counts exact however late a repeat comes (also after the entity's state expired).
  - value: field `00`…`ff`, the first byte of the event id's 64-bit BLAKE2b fingerprint
    in hex, → the other 7 bytes of each fingerprint with that first byte, packed back to
    back (binary, appended; `streams/event_marks.py`). ~10 B per event measured with
    `MEMORY USAGE` (docs/kpi-semantics.md, "Retention").
  - TTL: none, like the `all` bucket that counted the events.
  - writer and reader: `streams/redis_sink.py`, through the script (checked before any
    write, appended in the same call as the counts).
- `{p}smark:{tenant}:{day}`: HASH, the SLA stage's permanent marks of the events it joined
  into a conversation (contacts and replies), by the UTC day of the event: a
  conversation's state is forgotten after its retention, and these keep a history
  replayed at any later time from counting a response, an SLA verdict or an abandoned
  call twice (docs/sla.md). Apart from `mark:`, which marks the same event ids for the
  KPI stage: neither stage takes the other's marks for its own.
  - value: as `mark:`'s (`streams/event_marks.py`), ~10 B per event.
  - TTL: none, like the `all` bucket that counted the responses.
  - writer and reader: `streams/sla_store.py`, through the script (checked before any
    write, appended in the same call as the counts).
- `{p}late:{tenant}:{day}`: SET of the ids of too-late events the KPI stage dead-lettered,
  by the UTC day the event happened, so a redelivered or resent one is counted once in
  `salespulse_worker_events_too_late_total`.
  - TTL: `SALESPULSE_DEDUPE_RETENTION_DAYS` from the last write.
  - writer and reader: `streams/redis_sink.py` (`mark_late`, SADD outside the script:
    it only counts, it writes no KPI).
- `{p}offsets:{group}`: HASH, a consumer group's watermarks: the last offset applied per
  partition.
  - value: field `{topic}:{partition}` (`streams/store_guard.py` `tp_name`) → offset
    (decimal integer); only ever raised by a batch.
  - TTL: none.
  - writers: `streams/redis_sink.py`, `streams/sla_store.py` (through the script);
    `streams/store_guard.py` (drops the watermark of a lost log).
  - readers: `streams/redis_sink.py`, `streams/sla_store.py` (seek past what is applied),
    `streams/store_guard.py`, `streams/switch_store.lua` (a rebuild never switches behind
    a live worker), `metrics/wall/source.py` (has anything been applied since?).
- `{p}waiting:{tenant}`: ZSET of the open waits (clients waiting for a reply).
  - value: member `codecs.WaitingMember`, a JSON array `[conversation ref, kind, channel,
    manager, team, pipeline]` of ids only (`""`: none) → score the µs the wait opened.
  - TTL: none; a member leaves when answered, or after its maximum wait (its SLA
    policy's `max_wait`, else `SALESPULSE_WAIT_MAX_AGE_DAYS`; `streams/sla_store.py`
    `expire_waits`); a wait already past it is never added (`streams/sla_fold.py`).
  - writer: `streams/sla_store.py` (members made by `streams/sla_fold.py`), through the
    script.
  - readers: `metrics/read/waiting.py` (the API's list, the SLA collector, the wall).
- `{p}lastseen`: HASH, when each tenant's newest event was received.
  - value: field tenant → milliseconds since the epoch (`codecs.encode_received_ms`);
    only ever raised.
  - TTL: none.
  - writer: `streams/sla_store.py`, through the script.
  - readers: `metrics/read/waiting.py` (`last_received`, for the KPI collector).
- `{p}journal`: HASH, hash increments of applied batches still to write: a batch's first
  script call writes its checks, ids, states, watermarks and first hash fields, and
  commits the rest, staged here by the worker just before, in parts of
  `streams/journal.py` `PART_FIELDS` writes, so that no call holds Redis long.
  - value: field `part:{id}` → the staged part, a MessagePack map `{keys, hashes}`
    (apply_batch.lua); field `{id}` → `1`, its commit mark, written by the first call
    (a part id is `{unix seconds}.{random hex}:{n}`). A version before kept the whole
    part under `{id}` (`{random hex}:{n}`), which is still drained.
  - TTL: none: a part is deleted by the call that applies it; a staged part with no mark
    (its first call was refused) by the worker, or by `recover` once an hour old.
  - writers: `streams/redis_sink.py`, `streams/sla_store.py` (HSET of the staged parts;
    the marks through the script).
  - readers: `streams/journal.py` (the worker drains its own parts right after the
    first call, and every part it finds when it is assigned partitions).
- `{p}journal:{tenant}`: the same, one per tenant's slot on a Redis Cluster.
- `{p}store_reset`: STRING, why a worker found the store wiped (text, no client data).
  - TTL: none: kept until `salespulse rebuild` switches (it is a store family).
  - writer and reader: `streams/store_guard.py` (SET NX; EXISTS for
    `salespulse_kpi_store_reset_pending`); deleted by `streams/switch_store.lua`.

## Beside the KPI store

- `{p}daysnap:{tenant}:{day}`: HASH, the snapshot KPIs at the end of one local day
  (`day` `YYYY-MM-DD`), what a past period answers for open, ready and stuck deals and
  waiting clients (docs/kpi-semantics.md, "Periods").
  - value: field `open:{pipeline}:{stage}`, `ready:…`, `stuck:…` or `waiting` → count
    (decimal integer); taken when the KPI worker first applies a batch of the tenant on
    a later day, so it holds the state the day ended with (plus that batch).
  - TTL: `SALESPULSE_DAY_BUCKET_RETENTION_DAYS`, like the day buckets.
  - writer: `streams/daily_snapshot.py` (once per tenant and day, HSET then EXPIRE; a
    second writer writes the same counts).
  - reader: `metrics/read/kpi_reader.py` (`day_snapshot`, for `GET /v1/kpis` periods).

- `{p}store_epoch`: STRING, a random id (hex) of this Redis's store, created once by the
  first worker: a wipe removes or changes it. Not a store family, so a rebuild keeps it.
  - TTL: none.
  - writer and reader: `streams/store_guard.py`.
- `{p}rebuild:…`: the staging copy of every store family above (`KpiKeys.staging`),
  unseen by readers.
  - TTL: as the live keys'.
  - writer: `streams/rebuild.py` (through the same sinks); `streams/switch_store.lua`
    renames it onto the live names, and a rebuild first deletes what an earlier,
    unfinished one left.
- `{p}crmstate:{tenant}:{crm}:{entity}:{id}`: STRING, the last known stage of a CRM deal
  or lead, for `stage_from` and change detection (not derived from `crm.events`: a
  rebuild leaves it alone).
  - value: JSON `EntityState` (`handlers/crm/common.py`).
  - TTL: `SALESPULSE_CRM_STATE_RETENTION_DAYS` from the last write.
  - writer and reader: `handlers/enrichment/crm_state.py`.
- `{p}staff:{tenant}`: HASH, the tenant's CRM users: who a manager id is (staff names
  only, never a client's).
  - value: field manager id (the CRM user id the events carry) → display name (UTF-8).
    Replaced whole by each sync, so a user deleted in the CRM goes too; the tenants
    file's `managers:` wins over it (`salespulse/core/staff.py`). Not derived from
    `crm.events`: a rebuild leaves it alone.
  - TTL: none (a CRM that stops answering leaves the last names known).
  - writer: `handlers/enrichment/users.py` (every `SALESPULSE_USER_SYNC_INTERVAL_S`).
  - readers: `metrics/read/staff.py` (the KPI collector's `salespulse_manager_info`,
    `GET /v1/kpis?by=manager`, the wall).

Retention and its floors: docs/kpi-semantics.md, "Retention".

## On a Redis Cluster (`SALESPULSE_REDIS_MODE=cluster`)

Every key above that names a tenant carries it as a hash tag, `{tenant}` (for example
`{p}kpi:{acme}:d:2026-03-02`, `{p}rebuild:won:{acme}`), so that all keys of one tenant,
live and staging, hash to one slot and one script call or pipeline can touch them; the
keys without a tenant (`{p}tenants`, `{p}offsets:{group}`, `{p}lastseen`,
`{p}store_epoch`, `{p}store_reset`) each sit in a slot of their own. A single Redis
(`single`, the default) keeps the names above byte for byte. In cluster mode the workers
apply each batch as one script call per tenant (its slot), then write `{p}tenants`,
`{p}lastseen` and the watermarks in `{p}offsets:{group}` after every tenant's part is in
(docs/redis-cluster.md).
"""

from __future__ import annotations

from typing import Final

# Counters are integers so that increments are exact: money in 1/10,000 of the tenant
# currency, durations in milliseconds.
MONEY_SCALE: Final = 10_000
DURATION_SCALE: Final = 1_000
SEP: Final = "\x1f"  # cannot occur in ids (events.Ident forbids control characters)

# The key families of the KPI store (a trailing ":" names a family of keys, else one
# key): what `salespulse rebuild` replaces (streams/switch_store.lua). store_epoch and
# crmstate: are not derived from crm.events and are left alone.
STORE_FAMILIES: Final = (
    "tenants",
    "kpi:",
    "ent:",
    "open:",
    "openkeys:",
    "won:",
    "seen:",
    "mark:",
    "smark:",
    "offsets:",
    "waiting:",
    "lastseen",
    "store_reset",
    "journal",
    "journal:",
)


class KpiKeys:
    """Builds every Redis key from one prefix, so tests and deployments can share a Redis."""

    def __init__(self, prefix: str, *, tenant_slots: bool = False) -> None:
        self.prefix = prefix
        # Redis Cluster: the tenant as a hash tag, so a tenant's keys share one slot.
        self.tenant_slots = tenant_slots

    def _t(self, tenant: str) -> str:
        return f"{{{tenant}}}" if self.tenant_slots else tenant

    @property
    def tenants(self) -> str:
        return f"{self.prefix}tenants"

    def bucket(self, tenant: str, granularity: str, bucket: str) -> str:
        return f"{self.prefix}kpi:{self._t(tenant)}:{granularity}:{bucket}"

    def entity(self, tenant: str, kind: str, entity_id: str) -> str:
        return f"{self.prefix}ent:{self._t(tenant)}:{kind}:{entity_id}"

    def open_stage(self, tenant: str, pipeline: str, stage: str) -> str:
        return f"{self.prefix}open:{self._t(tenant)}:{pipeline}{SEP}{stage}"

    def open_keys(self, tenant: str) -> str:
        return f"{self.prefix}openkeys:{self._t(tenant)}"

    def won(self, tenant: str) -> str:
        return f"{self.prefix}won:{self._t(tenant)}"

    def seen(self, tenant: str, day: str) -> str:
        return f"{self.prefix}seen:{self._t(tenant)}:{day}"

    def mark(self, tenant: str, day: str) -> str:
        return f"{self.prefix}mark:{self._t(tenant)}:{day}"

    def sla_mark(self, tenant: str, day: str) -> str:
        """The SLA stage's marks: the KPI stage marks the same event ids in `mark:`, and
        neither stage may take the other's for its own."""
        return f"{self.prefix}smark:{self._t(tenant)}:{day}"

    def late(self, tenant: str, day: str) -> str:
        return f"{self.prefix}late:{self._t(tenant)}:{day}"

    def offsets(self, group: str) -> str:
        return f"{self.prefix}offsets:{group}"

    def day_snapshot(self, tenant: str, day: str) -> str:
        return f"{self.prefix}daysnap:{self._t(tenant)}:{day}"

    def waiting(self, tenant: str) -> str:
        return f"{self.prefix}waiting:{self._t(tenant)}"

    @property
    def last_received(self) -> str:
        return f"{self.prefix}lastseen"

    def staff(self, tenant: str) -> str:
        return f"{self.prefix}staff:{self._t(tenant)}"

    def journal(self, tenant: str) -> str:
        """The hash increments a batch's first script call left to the next ones
        (streams/journal.py); one per tenant's slot on a cluster, else one."""
        if self.tenant_slots:
            return f"{self.prefix}journal:{self._t(tenant)}"
        return f"{self.prefix}journal"

    @property
    def store_epoch(self) -> str:
        return f"{self.prefix}store_epoch"

    @property
    def store_reset(self) -> str:
        return f"{self.prefix}store_reset"

    def tagged_tenant(self, key: str) -> str:
        """The tenant of a key built with `tenant_slots` (its first hash tag: cluster mode
        refuses a prefix holding one)."""
        start = key.index("{") + 1
        return key[start : key.index("}", start)]

    def staging(self) -> KpiKeys:
        """Where `salespulse rebuild` builds a new key set, unseen by readers until it
        switches (no key family of the live set is named "rebuild")."""
        return KpiKeys(f"{self.prefix}rebuild:", tenant_slots=self.tenant_slots)
