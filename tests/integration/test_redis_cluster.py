"""The test harness's Redis Cluster is real: three masters that share the slots."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster as SyncRedisCluster

from tests.redis_cluster import MASTERS, RedisCluster

pytestmark = pytest.mark.integration


def test_three_masters_cover_every_slot(redis_cluster: RedisCluster) -> None:
    with redis.Redis(port=redis_cluster.nodes[0].port) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    masters = {int(master[1]) for _, _, master, *_ in slots}
    assert masters == {node.port for node in redis_cluster.nodes}
    assert len(masters) == MASTERS
    assert sum(int(end) - int(start) + 1 for start, end, *_ in slots) == 16_384


def test_a_cluster_client_writes_keys_on_every_master(redis_cluster: RedisCluster) -> None:
    client = SyncRedisCluster.from_url(redis_cluster.url)
    try:
        keys = [f"smoke:{n}" for n in range(30)]
        for key in keys:
            client.set(key, "1")
        assert {redis_cluster.node_of_key(key) for key in keys} == {
            node.port for node in redis_cluster.nodes
        }
        assert all(client.get(key) == b"1" for key in keys)
    finally:
        client.delete(*keys)
        client.close()
