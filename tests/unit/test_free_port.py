"""free_port picks listening ports where no outgoing connection can take them first.

`salespulse run` listens on its port only once its stage processes are up, seconds after
the port was picked; meanwhile its own Kafka and Redis connections take ephemeral ports,
and one took the picked port once in CI ("address already in use")."""

from __future__ import annotations

import socket
from pathlib import Path

from salespulse.app.embedded import free_port


def test_the_port_is_free_and_below_the_kernels_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1  # spread, so that parallel picks rarely meet
    for port in ports:
        assert port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()
