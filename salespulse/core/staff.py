"""Who a manager id is: the display name shown on the wall, in the API and in Grafana.

Three sources, the first that knows an id wins: the tenants file's `managers:` (the
office's own spelling), the names synced from the CRM (`staff:{tenant}` in Redis), then
the wall's older `wall.names`. Staff only: clients never have a name here.
"""

from __future__ import annotations

from collections.abc import Mapping

from salespulse.core.tenants import TenantConfig


def staff_names(config: TenantConfig, synced: Mapping[str, str]) -> dict[str, str]:
    """Manager id → display name, from every source, the tenants file first."""
    return {**config.wall.names, **synced, **config.managers}


def display_name(names: Mapping[str, str], manager: str) -> str:
    """The manager's name, or the id itself when no source knows it (still a valid label)."""
    return names.get(manager) or manager
