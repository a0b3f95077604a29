"""/healthz and /readyz against the real broker and Redis, and against dead addresses."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from handlers.spool import ROOM_BYTES, DiskSpool
from salespulse.app.embedded import free_port, start_broker
from salespulse.app.health import Readiness
from tests.helpers import eventually

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving(readiness: Readiness) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(readiness.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await readiness.close()


async def get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json()
        assert isinstance(body, dict)
        return response.status, body


async def test_ready_when_broker_and_redis_answer(bootstrap: str, redis_url: str) -> None:
    async with serving(Readiness(bootstrap, redis_url)) as base:
        assert await get(f"{base}/readyz") == (
            200,
            {"status": "ready", "checks": {"broker": "ok", "redis": "ok"}},
        )
        assert await get(f"{base}/healthz") == (200, {"status": "ok"})


async def test_a_frozen_broker_is_not_ready_until_it_answers_again(tmp_path) -> None:
    """A stopped broker still accepts TCP connections: only a protocol round trip tells."""
    with start_broker(tmp_path / "broker") as broker:  # its own: the session's stays up
        # a generous timeout: a busy machine must not make the live broker look frozen
        readiness = Readiness(f"127.0.0.1:{broker.port}", None, timeout_s=3.0)
        async with serving(readiness) as base:
            assert (await get(f"{base}/readyz"))[0] == 200
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                status, body = await get(f"{base}/readyz")
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            assert (status, body["checks"]) == (503, {"broker": "not answering (TimeoutError)"})

            async def ready_again() -> bool:
                return await get(f"{base}/readyz") == (
                    200,
                    {"status": "ready", "checks": {"broker": "ok"}},
                )

            await eventually(ready_again, 30, "the continued broker to read ready")


async def test_not_ready_names_each_unreachable_server_but_stays_alive() -> None:
    dead_broker, dead_redis = free_port(), free_port()
    secret_url = f"redis://:hunter2@127.0.0.1:{dead_redis}/0"
    async with serving(Readiness(f"127.0.0.1:{dead_broker}", secret_url)) as base:
        status, body = await get(f"{base}/readyz")
        assert status == 503
        assert body["status"] == "not_ready"
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["broker"].startswith("unreachable")
        assert checks["redis"].startswith("unreachable")
        assert "hunter2" not in str(body)
        assert str(dead_redis) not in str(body)
        assert await get(f"{base}/healthz") == (200, {"status": "ok"})


async def test_an_ingest_checks_only_the_broker_and_any_bootstrap_server_will_do(
    bootstrap: str,
) -> None:
    servers = f"127.0.0.1:{free_port()},{bootstrap}"  # the first one is down
    async with serving(Readiness(servers, None)) as base:
        assert await get(f"{base}/readyz") == (200, {"status": "ready", "checks": {"broker": "ok"}})


async def test_a_spooling_ingest_stays_ready_until_its_spool_is_full(tmp_path) -> None:
    """The load balancer must keep sending webhooks to an ingest that can spool them."""
    spool = DiskSpool(tmp_path, max_bytes=ROOM_BYTES + 4096)
    async with serving(Readiness(f"127.0.0.1:{free_port()}", None, spool=spool)) as base:
        status, body = await get(f"{base}/readyz")
        assert status == 200
        assert body["checks"] == {"broker": "unreachable (ConnectionRefusedError), spooling",
                                  "spool": "ok"}  # fmt: skip
        await spool.append([("crm.events", None, b"x" * 8192, None)])  # past the room
        status, body = await get(f"{base}/readyz")
        assert status == 503
        assert body["checks"] == {"broker": "unreachable (ConnectionRefusedError)", "spool": "full"}
    spool.close()


async def test_with_the_broker_up_a_spooling_ingest_reads_plainly_ready(
    bootstrap: str, tmp_path
) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 30)
    async with serving(Readiness(bootstrap, None, spool=spool)) as base:
        assert await get(f"{base}/readyz") == (
            200,
            {"status": "ready", "checks": {"broker": "ok", "spool": "ok"}},
        )
    spool.close()
