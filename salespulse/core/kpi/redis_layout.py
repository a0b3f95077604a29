"""Redis key layout of the KPI store, shared by its writer (streams) and reader (metrics).

    {p}tenants                          SET   tenants that have any KPI
    {p}kpi:{tenant}:{gran}:{bucket}     HASH  field → integer; gran m|h|d|w|mo|all
                                              (salespulse/core/kpi/buckets.py names the buckets)
    {p}ent:{tenant}:{kind}:{id}         STRING "version:state JSON" (deal, lead)
    {p}open:{tenant}:{pipeline}\\x1f{stage}  ZSET deal id → since (µs): open deals by stage
    {p}openkeys:{tenant}                SET   the open:* keys in use
    {p}won:{tenant}                     HASH  deal id → won record JSON (client KPIs)
    {p}seen:{tenant}:{date}             SET   event ids already counted, by event day
    {p}offsets:{group}                  HASH  "topic:partition" → last offset applied
    {p}waiting:{tenant}                 ZSET  open wait (JSON, ids only) → opened at (µs)
    {p}lastseen                         HASH  tenant → newest received_at (ms)
    {p}store_reset                      STRING why a worker found the store reset; kept
                                              until `salespulse rebuild` (streams/rebuild.py)
    {p}rebuild:…                        the key set a rebuild fills before it switches
    {p}store_epoch                      STRING random id of this store, made once: a wipe
                                              changes it (streams/store_guard.py)

Retention (docs/kpi-semantics.md, "Retention"): ent:* of a won or lost deal, of a lead
and of a conversation expire after their settings' days from the last write; an open
deal's is kept; waiting:* members leave when answered or past the maximum wait age.

A field is a component plus the four dimensions, stored as a JSON array so that no id
can break the encoding: ``["calls:in:answered","m-7","north","none","website"]``.
Counters are integers so that increments are exact: money in 1/10,000 of the tenant
currency, durations in milliseconds.
"""

from __future__ import annotations

import msgspec

from salespulse.core.kpi.catalogue import NO_VALUE
from salespulse.core.tenants import TenantConfig

KpiField = tuple[str, ...]

MONEY_SCALE = 10_000
DURATION_SCALE = 1_000
SEP = "\x1f"

# Every key family above (a trailing ":" names a family of keys, else one key): what
# `salespulse rebuild` replaces. Other users of the prefix (the enrichment's crmstate:)
# are not derived from crm.events and are left alone.
STORE_FAMILIES = (
    "tenants",
    "kpi:",
    "ent:",
    "open:",
    "openkeys:",
    "won:",
    "seen:",
    "offsets:",
    "waiting:",
    "lastseen",
    "store_reset",
)

_field_encoder = msgspec.json.Encoder()
_field_decoder = msgspec.json.Decoder(list[str])


def encode_field(field: KpiField) -> bytes:
    return _field_encoder.encode(field)


def decode_field(raw: bytes | str) -> list[str]:
    return _field_decoder.decode(raw)


class KpiKeys:
    """Builds every Redis key from one prefix, so tests and deployments can share a Redis."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def tenants(self) -> str:
        return f"{self.prefix}tenants"

    def bucket(self, tenant: str, granularity: str, bucket: str) -> str:
        return f"{self.prefix}kpi:{tenant}:{granularity}:{bucket}"

    def entity(self, tenant: str, kind: str, entity_id: str) -> str:
        return f"{self.prefix}ent:{tenant}:{kind}:{entity_id}"

    def open_stage(self, tenant: str, pipeline: str, stage: str) -> str:
        return f"{self.prefix}open:{tenant}:{pipeline}{SEP}{stage}"

    def open_keys(self, tenant: str) -> str:
        return f"{self.prefix}openkeys:{tenant}"

    def won(self, tenant: str) -> str:
        return f"{self.prefix}won:{tenant}"

    def seen(self, tenant: str, day: str) -> str:
        return f"{self.prefix}seen:{tenant}:{day}"

    def offsets(self, group: str) -> str:
        return f"{self.prefix}offsets:{group}"

    def waiting(self, tenant: str) -> str:
        return f"{self.prefix}waiting:{tenant}"

    @property
    def last_received(self) -> str:
        return f"{self.prefix}lastseen"

    @property
    def store_epoch(self) -> str:
        return f"{self.prefix}store_epoch"

    @property
    def store_reset(self) -> str:
        return f"{self.prefix}store_reset"

    def staging(self) -> KpiKeys:
        """Where `salespulse rebuild` builds a new key set, unseen by readers until it
        switches (no key family of the live set is named "rebuild")."""
        return KpiKeys(f"{self.prefix}rebuild:")


# The waiting index: written by the SLA stage (streams/sla_fold.py), read by
# metrics/read/waiting.py.
def public_conversation_id(ref: str) -> str:
    """What the API shows: the conversation id, or ``client:<id>`` for client-keyed ones."""
    kind, _, ident = ref.partition(SEP)
    return ident if kind == "c" else f"client:{ident}"


def wait_team(config: TenantConfig, manager: str | None, team: str | None) -> str:
    return config.team_of(manager) or team or NO_VALUE
