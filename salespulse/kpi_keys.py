"""Redis key layout of the KPI store, shared by its writer (streams) and reader (metrics).

    {p}tenants                    SET   tenants that have any KPI
    {p}kpi:{tenant}:all           HASH  field → all-time integer counter
    {p}kpi:{tenant}:day:{date}    HASH  field → counter for one calendar day (tenant's zone)
    {p}seen:{tenant}:{date}       SET   event ids already counted, by event day
    {p}offsets:{group}            HASH  "topic:partition" → last offset applied to Redis

A field is a KPI name plus its dimensions, stored as a JSON array so that no id can
break the encoding: ``["calls","m-7","in","answered"]``. Counters are integers so that
increments are exact: money in 1/10,000 of the currency unit, durations in milliseconds.
"""

from __future__ import annotations

import msgspec

KpiField = tuple[str, ...]

MONEY_SCALE = 10_000
DURATION_SCALE = 1_000

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

    def all_time(self, tenant: str) -> str:
        return f"{self.prefix}kpi:{tenant}:all"

    def day(self, tenant: str, day: str) -> str:
        return f"{self.prefix}kpi:{tenant}:day:{day}"

    def seen(self, tenant: str, day: str) -> str:
        return f"{self.prefix}seen:{tenant}:{day}"

    def offsets(self, group: str) -> str:
        return f"{self.prefix}offsets:{group}"
