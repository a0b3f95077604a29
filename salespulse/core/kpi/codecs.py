"""One codec per value of the KPI store that one module writes and another reads.

salespulse/core/kpi/redis_layout.py lists the keys, and which codec each value goes
through. Writer and readers both call the codec here, so the format has one definition;
each reads what the store already holds, byte for byte (a KPI field written shorter
since reads the longer form too; tests/unit/test_codecs.py).
Struct codecs are array-like: a stored value carries no field names.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

import msgspec

from salespulse.core.events import CrmEvent
from salespulse.core.kpi.catalogue import NO_VALUE
from salespulse.core.kpi.redis_layout import SEP

# KPI bucket fields ({p}kpi:*): a component and its four dimensions, as a JSON array so
# that no id can break the encoding, without the dimensions at the end that hold none:
# ["calls:in:answered","m-7"] is ["calls:in:answered","m-7","none","none","none"]. Each
# field's name is copied and hashed by Redis's Lua every time a script is handed it
# (its first call or journal part, apply_batch.lua), and most fields name a manager
# only: the shorter names took Redis 4 % fewer instructions per event at 400 managers
# and 6 % at 4,000 (callgrind on redis-server). A store written before holds the full
# arrays; both read back alike, and readers add up fields that read alike.
KpiField = tuple[str, ...]
FIELD_WIDTH: Final = 5  # a component and manager, team, pipeline, source
_field_encoder = msgspec.json.Encoder()
_field_decoder = msgspec.json.Decoder(list[str])


def encode_field(field: KpiField) -> bytes:
    end = len(field)
    while end > 1 and field[end - 1] == NO_VALUE:
        end -= 1
    return _field_encoder.encode(field[:end] if end < len(field) else field)


def decode_field(raw: bytes | str) -> list[str]:
    """The component and its dimensions, FIELD_WIDTH in all (the ones left out: NO_VALUE)."""
    parts = _field_decoder.decode(raw)
    if len(parts) < FIELD_WIDTH:
        parts += [NO_VALUE] * (FIELD_WIDTH - len(parts))
    return parts


# Entity states ({p}ent:*): "{version}:{state JSON}".
State = TypeVar("State", bound=msgspec.Struct)


class StateCodec(Generic[State]):
    """The stored form of one kind of entity state.

    The fold encodes the state (:meth:`encode`); the sink frames it with the version the
    write makes (:func:`frame_state`) and apply_batch.lua stores it as is, once it found
    the version the fold started from; the next batch loads it back (:meth:`load`).
    """

    def __init__(self, state_type: type[State]) -> None:
        # Bound methods as attributes: encode runs for every entity a batch touches.
        self.encode = msgspec.json.Encoder().encode
        self.decode = msgspec.json.Decoder(state_type).decode

    def load(self, held: bytes) -> tuple[int, State]:
        """(version, state) of a stored value."""
        version, blob = split_state(held)
        return version, self.decode(blob)


def frame_state(version: int, state_json: bytes) -> str:
    """The stored value of a state at a version; text, as the batch carries it (Redis's
    cmsgpack reads no binary type)."""
    return f"{version}:{state_json.decode()}"


def split_state(held: bytes) -> tuple[int, bytes]:
    """(version, state JSON) of a stored value. apply_batch.lua and switch_store.lua read
    the version with the pattern ``^(%d+):``."""
    version, _, blob = held.partition(b":")
    return int(version), blob


# Conversation refs: the id of a conversation within its tenant, in {p}ent:{t}:conv:{ref}
# and in waiting members. Prefixed so that the two id spaces never collide.
CONVERSATION: Final = "c"
CLIENT: Final = "k"


def conversation_ref(event: CrmEvent) -> str | None:
    """``c␟<conversation_id>``, else ``k␟<client_id>``; None for an event with neither."""
    if event.conversation_id is not None:
        return f"{CONVERSATION}{SEP}{event.conversation_id}"
    if event.client_id is not None:
        return f"{CLIENT}{SEP}{event.client_id}"
    return None


def public_conversation_id(ref: str) -> str:
    """What the API shows: the conversation id, or ``client:<id>`` for client-keyed ones."""
    kind, _, ident = ref.partition(SEP)
    return ident if kind == CONVERSATION else f"client:{ident}"


# Open-deal stages: the member of {p}openkeys:* and the tail of a {p}open:* key.
def stage_member(pipeline: str, stage: str) -> str:
    return f"{pipeline}{SEP}{stage}"


def split_stage_member(member: str) -> tuple[str, str]:
    pipeline, _, stage = member.partition(SEP)
    return pipeline, stage


class WonDeal(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A won deal's record in {p}won:{tenant} (field: the deal id): what client KPIs need."""

    won_us: int
    units: int | None  # amount in MONEY_SCALE units; None when no rate converts it
    client: str | None
    lead: str | None
    manager: str
    team: str
    pipeline: str
    source: str

    @property
    def dims(self) -> tuple[str, str, str, str]:
        return self.manager, self.team, self.pipeline, self.source


_won_encoder = msgspec.json.Encoder()
_won_decoder = msgspec.json.Decoder(WonDeal)


def encode_won(record: WonDeal) -> bytes:
    return _won_encoder.encode(record)


def decode_won(raw: bytes | str) -> WonDeal:
    return _won_decoder.decode(raw)


class WaitingMember(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An open wait in {p}waiting:{tenant} (score: when it opened, µs). Ids as the events
    gave them, "" for none; nothing from the tenants file, so that a member stays
    removable after the file changes (the team and the policy are resolved per read)."""

    ref: str  # conversation_ref
    kind: str  # "first" | "next"
    channel: str
    manager: str
    team: str
    pipeline: str


_member_encoder = msgspec.json.Encoder()
_member_decoder = msgspec.json.Decoder(WaitingMember)


def encode_waiting_member(member: WaitingMember) -> str:
    return _member_encoder.encode(member).decode()


def decode_waiting_member(raw: bytes | str) -> WaitingMember:
    return _member_decoder.decode(raw)


# {p}lastseen: tenant → when its newest event was received, in whole milliseconds.
def encode_received_ms(ms: int) -> str:
    return str(ms)


def decode_received_s(raw: bytes | str) -> float:
    """Unix time in seconds."""
    return int(raw) / 1000
