"""The wall over HTTP against the real pipeline: access answers, the page, the SSE stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec
import pytest

from salespulse.core.kpi.redis_layout import KpiKeys
from tests.integration.wall_app import NORTH_TOKEN, TENANT, call, event, post, running_wall

pytestmark = pytest.mark.integration


class Stream:
    """Reads Server-Sent Events off an open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.raw = b""

    async def next_event(self, timeout_s: float) -> tuple[str, bytes]:
        name, data = "message", b""
        async with asyncio.timeout(timeout_s):
            while True:
                line = await self._response.content.readline()
                self.raw += line
                if not line:
                    raise AssertionError("the stream ended")
                line = line.rstrip(b"\n")
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data += line[6:]
                elif line == b"" and data:
                    return name, data

    async def next_frame(self, timeout_s: float) -> dict[str, Any]:
        while True:
            name, data = await self.next_event(timeout_s)
            if name == "frame":
                frame: dict[str, Any] = msgspec.json.decode(data)
                return frame


async def test_the_page_and_stream_let_in_only_a_screen_token_of_the_tenant(settings, tmp_path):
    with running_wall(settings, tmp_path) as wall:
        async with aiohttp.ClientSession() as session:
            for path in ("/wall", "/wall/stream"):
                for query in ({"tenant": TENANT}, {"tenant": TENANT, "token": "nope"},
                              {"tenant": "other", "token": wall.token}):  # fmt: skip
                    async with session.get(f"{wall.base}{path}", params=query) as response:
                        assert response.status == 401
                        assert await response.json() == {"error": "unauthorized"}
                forbidden = {"tenant": TENANT, "token": NORTH_TOKEN, "team": "south"}
                async with session.get(f"{wall.base}{path}", params=forbidden) as response:
                    assert response.status == 403
                    assert (await response.json())["error"] == "forbidden"
            async with session.get(wall.url()) as response:
                assert response.status == 200
                html = await response.text()
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            assert '"title":"Wall test office"' in html
            assert "://" not in html  # no CDN: nothing is loaded from outside
            async with session.get(f"{wall.base}/wall/static/wall.js") as response:
                assert response.status == 200
                assert response.content_type == "text/javascript"
                assert "http" not in (await response.text()).replace("http://", "")
            async with session.get(f"{wall.base}/wall/static/secrets.txt") as response:
                assert response.status == 404
            # A quiet stream still carries a ping every ten seconds (proxies, the watchdog).
            stream_url = wall.url().replace("/wall?", "/wall/stream?")
            async with session.get(stream_url) as response:
                stream = Stream(response)
                await stream.next_frame(10)
                assert b"retry: 1000" in stream.raw
                name = "frame"
                while name != "ping":
                    name, _ = await stream.next_event(15)


async def test_the_stream_pushes_changes_coalesced_and_never_a_client_id(settings, tmp_path):
    with running_wall(settings, tmp_path) as wall:
        async with aiohttp.ClientSession() as session:
            stream_url = wall.url().replace("/wall?", "/wall/stream?")
            async with session.get(stream_url) as response:
                assert response.status == 200
                assert response.content_type == "text/event-stream"
                stream = Stream(response)
                first = await stream.next_frame(10)
                assert first["key"] == "*"
                assert first["kpis"]["calls"] == 0
                assert [row["name"] for row in first["leaders"]] == ["Anna", "Boris", "5"]

                await post(session, wall.base, call(client_id="client-secret-77"))
                frame = first
                deadline = time.monotonic() + 30  # the worker's first group join included
                while frame["kpis"]["calls"] == 0:
                    frame = await stream.next_frame(deadline - time.monotonic())
                leader = {key: frame["leaders"][0][key] for key in ("manager", "name", "calls")}
                assert leader == {"manager": "17", "name": "Anna", "calls": 1}
                # Anna's month against her monthly target (30,000): nothing sold yet.
                assert frame["leaders"][0]["progress"] == 0.0
                assert frame["leaders"][0]["text"]["calls"] == "1"

                # A burst: 40 events over ~2 s. Frames follow, at most ~4 a second.
                started = time.monotonic()
                for index in range(40):
                    await post(session, wall.base, [
                        call(manager_id="42"),
                        event("message", direction="in", channel="chat",
                              conversation_id=f"conv-secret-{index}", client_id="client-secret-77"),
                    ])  # fmt: skip
                    await asyncio.sleep(0.05)
                frames = 0
                while frame["kpis"]["calls"] < 41:
                    frame = await stream.next_frame(10)
                    frames += 1
                elapsed = time.monotonic() - started
                assert frames <= 4 * elapsed + 1, (frames, elapsed)
                assert b"secret" not in stream.raw


async def test_names_synced_from_the_crm_reach_the_wall_without_any_event(
    settings, tmp_path, redis_client
):
    with running_wall(settings, tmp_path) as wall:
        async with aiohttp.ClientSession() as session:
            stream_url = wall.url().replace("/wall?", "/wall/stream?")
            async with session.get(stream_url) as response:
                stream = Stream(response)
                first = await stream.next_frame(10)
                assert [row["name"] for row in first["leaders"]] == ["Anna", "Boris", "5"]
                # As the worker's user sync writes them: the CRM's names win over the
                # wall's own `names`, and name the manager the file does not.
                key = KpiKeys(settings.redis_key_prefix).staff(TENANT)
                await redis_client.hset(key, mapping={"5": "Богдан Мельник", "17": "Анна К."})
                frame = first
                deadline = time.monotonic() + 30  # names are re-read at least every 5 s
                expected = ["Анна К.", "Boris", "Богдан Мельник"]
                while [row["name"] for row in frame["leaders"]] != expected:
                    frame = await stream.next_frame(deadline - time.monotonic())
