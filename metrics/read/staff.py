"""The names of a tenant's staff, as the user sync keeps them (`staff:{tenant}`), merged
with the tenants file's overrides (salespulse/core/staff.py)."""

from __future__ import annotations

import redis

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.staff import staff_names
from salespulse.core.tenants import TenantDirectory


class StaffReader:
    def __init__(self, client: redis.Redis, keys: KpiKeys, tenants: TenantDirectory) -> None:
        self._client = client
        self._keys = keys
        self._tenants = tenants

    def synced(self, tenant: str) -> dict[str, str]:
        """Manager id → name as last synced from the tenant's CRMs ({} before any sync)."""
        raw = self._client.hgetall(self._keys.staff(tenant))
        return {_text(field): _text(value) for field, value in raw.items()}

    def names(self, tenant: str) -> dict[str, str]:
        """Manager id → display name from every source, the tenants file winning."""
        return staff_names(self._tenants.get(tenant), self.synced(tenant))


def _text(value: bytes | str) -> str:
    # A name that is not UTF-8 (never written by the sync) still shows rather than fails.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
