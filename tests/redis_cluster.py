"""A real Redis Cluster of three masters on free loopback ports, for the cluster tests.

Each master is a `redis-server --cluster-enabled yes` process (memory only, like the
single test Redis); `redis-cli --cluster create` hands out the 16,384 slots, and the
cluster is ready when every node reports `cluster_state:ok`. A harness that cannot start
it raises: the cluster tests fail loudly, they are never skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES, LocalProcess, free_port, redis_binary

MASTERS = 3
# Generous: on a busy 2-core machine the nodes' gossip can take seconds to agree.
_READY_TIMEOUT_S = 60.0


class ClusterStartError(RuntimeError):
    """The harness could not bring up a healthy cluster."""


@dataclass(frozen=True)
class RedisCluster:
    nodes: tuple[LocalProcess, ...]

    @property
    def url(self) -> str:
        """What `SALESPULSE_REDIS_URL` names: any one node (the client learns the rest)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def node_of_key(self, key: str) -> int:
        """The port of the master that holds the key's slot (asked of the cluster itself)."""
        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise ClusterStartError(f"no master holds slot {slot}")


def _redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise ClusterStartError("no redis-cli on PATH: apt-get install redis-tools")
    return found


def _node(workdir: Path, index: int) -> LocalProcess:
    port = free_port()
    directory = workdir / f"node-{index}"
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        # The bus port on its own free port: the default (port + 10,000) may be taken, or
        # past 65,535 for a high free port.
        "--cluster-port",
        str(free_port()),
        "--cluster-config-file",
        str(directory / "nodes.conf"),
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
        "--hash-max-ziplist-entries",  # the name Redis 6.2 knows too (redis_binary)
        str(HASH_LISTPACK_ENTRIES),
        "--daemonize",
        "no",
    ]
    process = LocalProcess(f"redis-cluster-{index}", argv, port, directory)
    process.wait_ready()
    return process


def state_ok(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=2) as client:
            info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


@contextlib.contextmanager
def cluster_nodes(workdir: Path, count: int = MASTERS) -> Iterator[list[LocalProcess]]:
    """Redis servers in cluster mode that know no cluster yet; stopped afterwards."""
    nodes: list[LocalProcess] = []
    try:
        # extend appends each node as it starts: `finally` stops those up if one fails
        nodes.extend(_node(workdir, index) for index in range(count))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def wait_state_ok(nodes: list[LocalProcess]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not all(state_ok(node.port) for node in nodes):
        if time.monotonic() > deadline:
            raise ClusterStartError(
                "cluster_state never became ok: " + " | ".join(node.log_tail(500) for node in nodes)
            )
        time.sleep(0.1)


@contextlib.contextmanager
def start_redis_cluster(workdir: Path) -> Iterator[RedisCluster]:
    with cluster_nodes(workdir) as nodes:
        create = subprocess.run(
            [
                _redis_cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=_READY_TIMEOUT_S,
            check=False,
        )
        if create.returncode != 0:
            raise ClusterStartError(
                f"redis-cli --cluster create failed: {create.stdout!r} {create.stderr!r}"
            )
        wait_state_ok(nodes)
        yield RedisCluster(tuple(nodes))
