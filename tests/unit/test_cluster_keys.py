"""Cluster mode tags every key of a tenant by the tenant, so they share one slot; a single
Redis keeps today's names byte for byte."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from salespulse.core.kpi.redis_layout import KpiKeys
from salespulse.core.settings import Settings


def tenant_keys(keys: KpiKeys, tenant: str) -> list[str]:
    return [
        keys.bucket(tenant, "d", "2026-03-02"),
        keys.entity(tenant, "deal", "d-1"),
        keys.open_stage(tenant, "p", "s"),
        keys.open_keys(tenant),
        keys.won(tenant),
        keys.seen(tenant, "2026-03-02"),
        keys.late(tenant, "2026-03-02"),
        keys.day_snapshot(tenant, "2026-03-02"),
        keys.waiting(tenant),
        keys.staff(tenant),
    ]


def test_single_redis_keys_keep_their_names() -> None:
    keys = Settings(redis_key_prefix="sp:").kpi_keys()
    assert not keys.tenant_slots
    assert keys.bucket("acme", "d", "2026-03-02") == "sp:kpi:acme:d:2026-03-02"
    assert keys.waiting("acme") == "sp:waiting:acme"
    assert keys.staging().won("acme") == "sp:rebuild:won:acme"


def test_cluster_keys_of_a_tenant_share_its_slot_live_and_staging() -> None:
    keys = Settings(redis_key_prefix="sp:", redis_mode="cluster").kpi_keys()
    assert keys.bucket("acme", "d", "2026-03-02") == "sp:kpi:{acme}:d:2026-03-02"
    for tenant in ("acme", "beta-2", "c_3"):
        named = tenant_keys(keys, tenant) + tenant_keys(keys.staging(), tenant)
        assert {key_slot(key.encode()) for key in named} == {key_slot(tenant.encode())}


def test_cluster_mode_refuses_a_prefix_with_a_hash_tag() -> None:
    with pytest.raises(ValidationError, match="REDIS_KEY_PREFIX"):
        Settings(redis_key_prefix="sp{x}:", redis_mode="cluster")
    assert Settings(redis_key_prefix="sp{x}:").kpi_keys().prefix == "sp{x}:"
