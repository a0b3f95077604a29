"""The permanent marks of counted events: what keeps a call, a message, a payment, a deal's
stage change ... counted once however late it is delivered again.

An event-additive count (calls, messages, meetings, ratings, money events, a lead without
an id) has no state: only remembering the event keeps it exact. Counts of deals and leads
follow from the entity's state, but a closed deal's or a lead's state is forgotten after
`SALESPULSE_ENTITY_RETENTION_DAYS`, after which a replay would make it a new entity: so
their events are marked too. The event-id sets (`seen:`) remember, for
`SALESPULSE_DEDUPE_RETENTION_DAYS`, only the events that neither count nor join an
entity; these marks remember a fingerprint of each other event for as long as the `all`
bucket that counted it, i.e. always, so they must be small:

* an event id becomes a 64-bit fingerprint (BLAKE2b, 8 bytes): its first byte names one of
  256 fields of the (tenant, event day) hash `mark:`, the other 7 bytes are appended to
  that field's value. A field thus holds the 7-byte remainders of the day's events that
  share a first byte, packed back to back (no separator: found at offsets that are
  multiples of 7, streams/apply_batch.lua).
* a day of 5,000 such events takes ~10 B per event in Redis, one of 50,000 ~8 B (an id set
  takes ~70 B per id; docs/kpi-semantics.md, "Retention").

A fingerprint can collide: a new event whose fingerprint equals one of the n already
marked on its tenant's day is taken for a repeat and not counted. For n events a day the
chance of any collision in that day is at most n²/2^65: 6.8e-13 for 5,000 events, 6.8e-11
for 50,000; over five years of such days 1.2e-9 and 1.2e-7. The ids are namespaced
strings, so no CRM's numbering makes them cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

import msgspec

FINGERPRINT_BYTES = 8
REMAINDER_BYTES = FINGERPRINT_BYTES - 1  # what a mark stores: the first byte is its field
_FIELDS = tuple(f"{byte:02x}" for byte in range(256))


def fingerprint(event_id: str) -> bytes:
    """The 64-bit fingerprint of an event id (stable across processes and versions)."""
    return blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()


def mark_of(event_id: str) -> tuple[str, bytes]:
    """(hash field, 7-byte remainder) of an event id's mark."""
    digest = fingerprint(event_id)
    return _FIELDS[digest[0]], digest[1:]


# field → (packed remainders, the event ids in the same order)
Shards = dict[str, tuple[list[bytes], list[str]]]


def by_field(event_ids: Iterable[str]) -> Shards:
    """The marks of a day's events grouped by hash field, each with its event ids (the
    script names an id it found marked)."""
    shards: Shards = {}
    fields = _FIELDS
    # mark_of inlined: this runs for nearly every event of every batch (two calls an id
    # were ~40 % of this function's time)
    for event_id in event_ids:
        digest = blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()
        name = fields[digest[0]]
        shard = shards.get(name)
        if shard is None:
            shard = shards[name] = ([], [])
        shard[0].append(digest[1:])
        shard[1].append(event_id)
    return shards


def msgpack_str(data: bytes) -> msgspec.Raw:
    """Bytes packed as a MessagePack str: Redis's cmsgpack reads no bin type, and a Lua
    string is bytes whatever the header says."""
    size = len(data)
    if size < 32:
        header = bytes((0xA0 | size,))
    elif size < 1 << 8:
        header = bytes((0xD9, size))
    elif size < 1 << 16:
        header = b"\xda" + size.to_bytes(2, "big")
    else:
        header = b"\xdb" + size.to_bytes(4, "big")
    return msgspec.Raw(header + data)


def is_marked(held: bytes, remainder: bytes) -> bool:
    """Whether a field's value holds the remainder at a mark's offset (a match straddling
    two marks is none). What apply_batch.lua does; here for tests and tools."""
    at = held.find(remainder)
    while at >= 0 and at % REMAINDER_BYTES:
        at = held.find(remainder, at + 1)
    return at >= 0


def remainders(held: bytes) -> list[bytes]:
    """The marks a field's value holds."""
    return [held[at : at + REMAINDER_BYTES] for at in range(0, len(held), REMAINDER_BYTES)]
