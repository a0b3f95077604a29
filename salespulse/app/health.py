"""Liveness and readiness for orchestrators (Docker HEALTHCHECK, Kubernetes probes).

``GET /healthz`` answers while the process serves HTTP: a failure means "restart me".
``GET /readyz`` answers 200 only while the servers this process's roles use are reachable
now, 503 otherwise: an orchestrator then stops routing to it (or counting it available)
without restarting it, since a restart would not bring the broker or Redis back.

The checks are cheap, bounded by a short timeout and hold no lock: a Kafka ApiVersions
request to a bootstrap broker (a protocol round trip, so a frozen broker fails it) and a
Redis PING. Answers name the check, never an address or URL (a
Redis URL may carry a password).

An ingest with a disk spool stays ready while the broker is down and the spool has room:
taking it out of the load balancer would fail the very webhooks the spool is there to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from handlers.spool import DiskSpool

OK = "ok"
DEFAULT_KAFKA_PORT = 9092


class Readiness:
    """The dependency checks of one process: the broker always, Redis when a role uses it."""

    def __init__(
        self,
        bootstrap: str,
        redis_url: str | None,
        *,
        timeout_s: float = 1.0,
        spool: DiskSpool | None = None,
    ) -> None:
        self._spool = spool
        self._servers = [_host_port(server) for server in bootstrap.split(",") if server.strip()]
        self._timeout_s = timeout_s
        self._redis = (
            aioredis.Redis.from_url(
                redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
            if redis_url is not None
            else None
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", _alive), web.get("/readyz", self._ready)]

    async def checks(self) -> dict[str, str]:
        """Each dependency → ``"ok"`` or why it is not ready."""
        results = {"broker": await self._broker()}
        if self._spool is not None:
            results["spool"] = OK if self._spool.has_room else "full"
            if results["broker"] != OK and results["spool"] == OK:
                results["broker"] += ", spooling"
        if self._redis is not None:
            results["redis"] = await self._redis_ping(self._redis)
        return results

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def _ready(self, _: web.Request) -> web.Response:
        checks = await self.checks()
        # A broker that is down does not count while the spool takes what it would.
        spooling = checks.get("spool") == OK
        ready = all(
            result == OK for name, result in checks.items() if not (name == "broker" and spooling)
        )
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def _broker(self) -> str:
        """Ready if any bootstrap server answers a Kafka request within the timeout.

        A connect alone is not enough: a frozen broker's kernel still accepts connections.
        """
        failure = "no bootstrap server configured"
        for host, port in self._servers:
            try:
                async with asyncio.timeout(self._timeout_s):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                failure = f"unreachable ({type(exc).__name__})"
                continue
            try:
                async with asyncio.timeout(self._timeout_s):
                    if await _api_versions_round_trip(reader, writer):
                        return OK
                failure = "not answering (unexpected reply)"
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                failure = f"not answering ({type(exc).__name__})"
            finally:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(self._timeout_s):
                        await writer.wait_closed()
        return failure

    async def _redis_ping(self, client: aioredis.Redis) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            return f"unreachable ({type(exc).__name__})"
        return OK


async def _alive(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# ApiVersions v0 (API key 18): every Kafka broker answers it, before any authentication.
_CORRELATION_ID = 0x5A1E5
_CLIENT_ID = b"salespulse-readyz"
_API_VERSIONS = struct.pack(">hhih", 18, 0, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID


async def _api_versions_round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    """One request, one reply: True when the reply is to our request."""
    writer.write(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
    await writer.drain()
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if size < 4:
        return False
    (correlation,) = struct.unpack(">i", await reader.readexactly(4))
    return bool(correlation == _CORRELATION_ID)


def _host_port(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (Kafka's default port, as the client)."""
    host, colon, port = server.strip().rpartition(":")
    if not colon or not port.isdigit() or host.endswith(":"):
        return server.strip().strip("[]"), DEFAULT_KAFKA_PORT
    return host.strip("[]"), int(port)
