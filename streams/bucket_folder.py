"""Which buckets an increment lands in, summed over a batch before they are written.

Both folds (streams/fold.py for the KPIs, streams/sla_fold.py for response times) add
their contributions here: each names its instant's buckets once (buckets.BucketNamer,
minute, hour and day buckets skipped where no read can see them), the sums of a batch
are kept per set of bucket names, and ``expand`` turns them into one increment per
bucket and field, as the Redis script writes them.
"""

from __future__ import annotations

from salespulse.core.kpi.buckets import (
    GRANULARITIES,
    NO_DAY_HORIZON,
    BucketNamer,
    SkippedDay,
    Written,
    namer_for,
)
from salespulse.core.kpi.codecs import encode_field
from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.tenants import TenantDirectory
from streams.entities import Dims

# (tenant, granularity, bucket) → encoded field → increment: grouped as it is written
Increments = dict[tuple[str, str, str], dict[str, int]]
# Process-wide memo of a pure mapping, bounded: the encoded Redis field of each component
# under an event's dimensions.
CACHE_LIMIT = 200_000
_ENCODED_FIELDS: dict[Dims, dict[str, str]] = {}


def encoded_fields(dims: Dims) -> dict[str, str]:
    """component → its encoded Redis field under ``dims`` (a memo to fill, see encode)."""
    fields = _ENCODED_FIELDS.get(dims)
    if fields is None:
        if len(_ENCODED_FIELDS) > CACHE_LIMIT:
            _ENCODED_FIELDS.clear()
        fields = _ENCODED_FIELDS[dims] = {}
    return fields


def encode(memo: dict[str, str], component: str, dims: Dims) -> str:
    encoded = memo.get(component)
    if encoded is None:
        encoded = memo[component] = encode_field((component, *dims)).decode()
    return encoded


class BucketFolder:
    def __init__(
        self, tenants: TenantDirectory, keys: KpiKeys, day_horizon: int = NO_DAY_HORIZON
    ) -> None:
        self.tenants = tenants
        self._keys = keys
        # an instant older than its receipt by this writes no day bucket (day_horizon_us)
        self.day_horizon = day_horizon
        self._namers: dict[str, BucketNamer] = {}
        # (tenant, bucket names with skipped ones as None) → encoded field → amount;
        # expanded into one increment per granularity once, at the end (most instants
        # share buckets).
        self._pending: dict[tuple[str, Written], dict[str, int]] = {}
        self.increments: Increments = {}

    def namer(self, tenant: str) -> BucketNamer:
        namer = self._namers.get(tenant)
        if namer is None:
            namer = self._namers[tenant] = namer_for(self.tenants.zone_for(tenant))
        return namer

    def add(
        self, tenant: str, us: int, component: str, dims: Dims, amount: int, received: int | None
    ) -> None:
        """Add to the instant's bucket of every granularity it writes (buckets.skip_level)."""
        if amount:
            written = self.namer(tenant).written(us, received, self.day_horizon)
            self.add_at(tenant, written, component, dims, amount)

    def add_at(self, tenant: str, names: Written, component: str, dims: Dims, amount: int) -> None:
        """Add to buckets already named (and skipped)."""
        fields = self.fields_at(tenant, names)
        encoded = encode(encoded_fields(dims), component, dims)
        fields[encoded] = fields.get(encoded, 0) + amount

    def fields_at(self, tenant: str, names: Written) -> dict[str, int]:
        """The pending sums (encoded field → amount) of a set of buckets, to add to."""
        fields = self._pending.get((tenant, names))
        if fields is None:
            fields = self._pending[(tenant, names)] = {}
        return fields

    def expand(self) -> None:
        increments = self.increments
        for (tenant, names), fields in self._pending.items():
            nonzero = [(encoded, amount) for encoded, amount in fields.items() if amount]
            if not nonzero:
                continue
            for granularity, bucket in zip(GRANULARITIES, names, strict=True):
                if bucket is None or type(bucket) is SkippedDay:
                    continue
                target = increments.get((tenant, granularity, bucket))
                if target is None:
                    increments[(tenant, granularity, bucket)] = dict(nonzero)
                    continue
                for encoded, amount in nonzero:
                    target[encoded] = target.get(encoded, 0) + amount
        self._pending.clear()
