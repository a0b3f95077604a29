"""The wall in a real browser (Debian's headless Chromium) against the running pipeline.

Each state is saved as a screenshot in test-artifacts/ (see tests/browser.py).
"""

from __future__ import annotations

import statistics
import time

import aiohttp
import pytest
from playwright.async_api import Page, ViewportSize, expect

from tests.browser import CuttableProxy, artifact, chromium
from tests.helpers import eventually
from tests.integration.wall_app import TENANT, call, chat, post, running_wall, won

pytestmark = pytest.mark.integration

FULL_HD: ViewportSize = {"width": 1920, "height": 1080}


async def calls_shown(page: Page, count: int, timeout_s: float) -> float:
    """Seconds until the calls tile shows ``count``.

    Locator assertions, not wait_for_function: the page's CSP forbids eval, and the test
    keeps the CSP on.
    """
    started = time.monotonic()
    tile = page.locator("[data-tile=calls] .value")
    await expect(tile).to_have_text(str(count), timeout=timeout_s * 1000)
    return time.monotonic() - started


async def calls_counted(session: aiohttp.ClientSession, base: str) -> object:
    """The tenant's all-time calls as the KPI API reads them from the store."""
    params = {"tenant": TENANT, "window": "all"}
    async with session.get(f"{base}/v1/kpis", params=params) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    return body["total"]["calls"]


async def test_a_webhook_shows_on_the_wall_within_a_second_and_a_cut_stream_recovers(
    settings, tmp_path
):
    with running_wall(settings, tmp_path) as wall:
        async with (
            aiohttp.ClientSession() as session,
            CuttableProxy(wall.port) as proxy,
            chromium() as browser,
        ):
            page = await browser.new_page(viewport=FULL_HD)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(wall.url(f"http://127.0.0.1:{proxy.port}"))
            await page.wait_for_selector('body[data-connection="live"]', timeout=10_000)
            await calls_shown(page, 0, 10)
            assert await page.text_content("#title") == "Wall test office"
            await page.screenshot(path=artifact("wall-live.png"))

            # The first event also waits for the worker to join its group: not timed.
            await post(session, wall.base, call())
            await calls_shown(page, 1, 30)
            delays = []
            for count in (2, 3, 4):
                await post(session, wall.base, call())
                delays.append(await calls_shown(page, count, 10))
            # The promise: a KPI change is on the wall within a second.
            assert statistics.median(delays) < 1.0, delays
            await page.screenshot(path=artifact("wall-after-webhook.png"))
            assert await page.text_content("#leader-rows li:first-child .name") == "Anna"

            # Cut the stream and keep the server unreachable: the wall says so.
            await page.evaluate("window.notReloaded = true")
            proxy.refusing = True
            proxy.cut()
            await page.wait_for_selector('body[data-connection="lost"]', timeout=10_000)
            banner = await page.text_content("#banner")
            assert banner is not None
            assert banner.startswith("Connection lost")
            await page.screenshot(path=artifact("wall-connection-lost.png"))
            await post(session, wall.base, call())  # happens while the wall is cut off

            async def counted_while_cut_off() -> bool:
                return await calls_counted(session, wall.base) == 5

            await eventually(counted_while_cut_off, 30, "the fifth call in the KPIs")

            # The way back: reconnect with back-off, catch up, no reload.
            proxy.refusing = False
            await page.wait_for_selector('body[data-connection="live"]', timeout=40_000)
            await calls_shown(page, 5, 10)
            assert await page.is_hidden("#banner")
            assert await page.evaluate("window.notReloaded") is True
            await page.screenshot(path=artifact("wall-recovered.png"))
            assert errors == []


async def test_a_waiting_client_turns_the_row_amber_then_flashing_red_and_a_reply_clears_it(
    settings, tmp_path
):
    # The test tenant's chat SLA: warning at 2 s, breached after 3 s, calendar time.
    with running_wall(settings, tmp_path) as wall:
        async with aiohttp.ClientSession() as session, chromium() as browser:
            page = await browser.new_page(viewport=FULL_HD)
            await page.goto(wall.url())
            await page.wait_for_selector('body[data-connection="live"]', timeout=10_000)
            # Warm up both consumers (their first group join is slow): one answered chat.
            await post(session, wall.base, chat("warm-up", "in"))
            await post(session, wall.base, chat("warm-up", "out"))
            replies = page.locator("[data-tile=first_response] .sub").first
            await expect(replies).to_have_text("median of 1 reply", timeout=30_000)

            await post(session, wall.base, chat("conv-waiting", "in"))
            row = page.locator("#wait-rows li.row")
            await expect(row).to_have_count(1, timeout=3_000)
            await expect(row.locator(".who")).to_have_text("Boris")
            before = await row.locator(".age").text_content()
            await expect(row).to_have_attribute("data-state", "at_risk", timeout=3_000)
            assert await row.locator(".age").text_content() != before  # it ticks
            await page.screenshot(path=artifact("wall-waiting-amber.png"))
            await expect(row).to_have_attribute("data-state", "breached", timeout=3_000)
            assert await row.evaluate("node => getComputedStyle(node).animationName") == "alarm"
            await expect(page.locator("#wait-counts .bad")).to_have_text("1 breached")
            await page.screenshot(path=artifact("wall-waiting-red.png"))
            assert "conv-waiting" not in await page.content()

            await post(session, wall.base, chat("conv-waiting", "out"))
            await expect(row).to_have_count(0, timeout=5_000)
            await expect(page.locator("#wait-empty")).to_have_text("Nobody is waiting")


async def test_a_won_deal_shows_a_banner_within_a_second_beside_the_red_rows_then_it_goes(
    settings, tmp_path
):
    with running_wall(settings, tmp_path) as wall:
        async with aiohttp.ClientSession() as session, chromium() as browser:
            page = await browser.new_page(viewport=FULL_HD)
            await page.goto(wall.url())
            await page.wait_for_selector('body[data-connection="live"]', timeout=10_000)
            # The first event waits for the worker to join its group: not timed.
            await post(session, wall.base, call())
            await calls_shown(page, 1, 30)
            # A client waiting past the SLA: a flashing red row the banner must not cover.
            await post(session, wall.base, chat("conv-late", "in"))
            red = page.locator('#wait-rows li.row[data-state="breached"]')
            await expect(red).to_have_count(1, timeout=10_000)

            banner = page.locator("#celebrate")
            delays = []
            for number in range(3):
                await expect(banner).to_be_hidden()
                started = time.monotonic()
                await post(session, wall.base, won(f"deal-{number}", "125000", "USD"))
                await expect(banner).to_be_visible(timeout=10_000)
                delays.append(time.monotonic() - started)
                await expect(banner.locator(".who")).to_have_text("Anna won a deal")
                await expect(banner.locator(".amount")).to_have_text("$125,000")
                shown, row = await banner.bounding_box(), await red.bounding_box()
                assert shown is not None
                assert row is not None
                apart = (
                    shown["y"] + shown["height"] <= row["y"]
                    or row["y"] + row["height"] <= shown["y"]
                    or shown["x"] + shown["width"] <= row["x"]
                    or row["x"] + row["width"] <= shown["x"]
                )
                assert apart, (shown, row)
                if number == 0:
                    await page.screenshot(path=artifact("wall-celebration.png"))
                # A short banner: gone again after a few seconds.
                await expect(banner).to_be_hidden(timeout=10_000)
            assert statistics.median(delays) < 1.0, delays
