"""The Redis Cluster variants of deploy/: the script that makes the cluster (run here
against real redis-server nodes), the compose override and the Kubernetes overlay."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from tests.integration.deploy_support import DEPLOY
from tests.redis_cluster import cluster_nodes, state_ok

pytestmark = pytest.mark.integration

CREATE = DEPLOY / "redis-cluster" / "create-cluster.sh"


def run_create(*nodes: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(CREATE), *nodes], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_script_makes_the_cluster_once(tmp_path: Path) -> None:
    with cluster_nodes(tmp_path) as nodes:
        addresses = [f"localhost:{node.port}" for node in nodes]  # names, as in compose
        made = run_create(*addresses)
        assert made.returncode == 0, made.stdout + made.stderr
        assert all(state_ok(node.port) for node in nodes)
        with redis.Redis(port=nodes[0].port) as client:
            slots = client.execute_command("CLUSTER", "SLOTS")
        assert {int(master[1]) for _, _, master, *_ in slots} == {n.port for n in nodes}

        again = run_create(*addresses)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already made" in again.stdout


def test_the_script_refuses_fewer_than_three_masters() -> None:
    refused = run_create("localhost:1", "localhost:2")
    assert refused.returncode == 2
    assert "usage" in refused.stderr
