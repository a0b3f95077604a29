"""The wall in the office's language, in Debian's headless Chromium, against the pipeline.

Two offices: Kyiv (UAH, Ukrainian) and Moscow (RUB, Russian), 30-character Cyrillic names,
7-digit amounts. For uk, ru and en at 1280×720, 1920×1080 and 3840×2160 no text on the
wall is cut off; each manager's progress bar is the plan attainment /v1/kpis reports.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.browser import artifact, chromium
from tests.helpers import eventually
from tests.integration.wall_app import (
    LONG_NAMES,
    OFFICES,
    Wall,
    call,
    chat,
    post,
    running_wall,
    won,
)

pytestmark = pytest.mark.integration

SIZES: list[ViewportSize] = [
    {"width": 1280, "height": 720},
    {"width": 1920, "height": 1080},
    {"width": 3840, "height": 2160},
]
CURRENCY = {"kyiv": "UAH", "moskva": "RUB"}
# Each manager's deals today: two 7-digit amounts apiece (the leaderboard's revenue column
# and the revenue tile, 8 digits in all).
AMOUNTS = {
    manager: (1_234_567 + 1_111_111 * index, 987_654) for index, manager in enumerate(LONG_NAMES)
}

# Every shown element with text whose content is wider than its box (or, for an element
# with text of its own, taller: a name on a third line). Inline elements are measured by
# the block around them.
OVERFLOWING = """() => {
  const bad = [];
  for (const node of document.querySelectorAll("body *")) {
    if (!node.getClientRects().length || !node.textContent.trim()) continue;
    const style = getComputedStyle(node);
    if (style.display === "inline" || style.visibility === "hidden") continue;
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    const wide = node.scrollWidth > node.clientWidth;
    const tall = own && node.scrollHeight > node.clientHeight + 1;
    if (wide || tall) {
      bad.push(`${node.tagName}.${node.className} "${node.textContent.trim().slice(0, 40)}"`
        + ` ${node.scrollWidth}x${node.scrollHeight} in ${node.clientWidth}x${node.clientHeight}`);
    }
  }
  return bad;
}"""


ROWS_BELOW = """(panel) => {
  const bottom = document.querySelector(panel).getBoundingClientRect().bottom;
  return [...document.querySelectorAll(`${panel} li.row`)]
    .filter((row) => row.getBoundingClientRect().bottom > bottom + 0.5)
    .map((row) => row.textContent);
}"""


def office_event(body: dict[str, Any], tenant: str, manager: str) -> dict[str, Any]:
    return {**body, "tenant": tenant, "manager_id": manager}


async def fill_offices(session: aiohttp.ClientSession, wall: Wall) -> None:
    events = []
    for tenant, currency in CURRENCY.items():
        for manager, amounts in AMOUNTS.items():
            for number, amount in enumerate(amounts):
                deal = f"{tenant}-{manager}-{number}"
                events.append(office_event(won(deal, str(amount), currency), tenant, manager))
            events.append(office_event(call(), tenant, manager))
        # A client waits for a manager with a long name (the waiting list shows it).
        events.append(office_event(chat(f"{tenant}-waiting", "in"), tenant, "5"))
    await post(session, wall.base, events)


async def kpis(session: aiohttp.ClientSession, base: str, tenant: str, **query: str) -> Any:
    params = {"tenant": tenant, "window": "today", **query}
    async with session.get(f"{base}/v1/kpis", params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def open_wall(browser: Browser, wall: Wall, size: ViewportSize, **query: str) -> Page:
    page = await browser.new_page(viewport=size)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(wall.url(**query))
    await page.wait_for_selector('body[data-connection="live"]', timeout=15_000)
    await expect(page.locator("#leader-rows li.row")).to_have_count(8, timeout=15_000)
    await expect(page.locator("#wait-rows li.row")).to_have_count(1, timeout=15_000)
    assert errors == []
    return page


async def test_nothing_is_cut_off_in_uk_ru_and_en_at_720p_1080p_and_4k(settings, tmp_path):
    assert all(len(name) == 30 for name in LONG_NAMES.values())
    with running_wall(settings, tmp_path, OFFICES) as office:
        async with aiohttp.ClientSession() as session, chromium() as browser:
            await fill_offices(session, office)
            total = 100 * sum(sum(amounts) for amounts in AMOUNTS.values()) // 100

            async def all_counted() -> bool:
                counted = [await kpis(session, office.base, t) for t in CURRENCY]
                return all(body["total"].get("revenue") == total for body in counted)

            await eventually(all_counted, 60, "both offices' won deals in the KPIs")
            cases = [("kyiv", "uk", "₴"), ("moskva", "ru", "₽"), ("kyiv", "en", "UAH")]
            for tenant, locale, symbol in cases:
                wall = Wall(office.base, office.token, office.port, tenant)
                query = {"locale": locale} if locale == "en" else {}
                for size in SIZES:
                    page = await open_wall(browser, wall, size, **query)
                    assert await page.get_attribute("html", "lang") == locale
                    revenue = page.locator("[data-tile=revenue] .value")
                    await expect(revenue).to_contain_text(symbol)
                    names = await page.locator("#leader-rows .name").all_text_contents()
                    assert sorted(names) == sorted(LONG_NAMES.values())
                    shot = f"wall-{tenant}-{locale}-{size['width']}x{size['height']}.png"
                    await page.screenshot(path=artifact(shot))
                    assert await page.evaluate(OVERFLOWING) == [], (tenant, locale, size)
                    # All eight rows of the screen are within the leaderboard, none below it.
                    assert await page.evaluate(ROWS_BELOW, "#leaders") == [], (tenant, size)
                    await page.close()


async def test_progress_bars_are_the_plan_attainment_of_v1_kpis(settings, tmp_path):
    with running_wall(settings, tmp_path, OFFICES) as office:
        async with aiohttp.ClientSession() as session, chromium() as browser:
            await fill_offices(session, office)
            month: dict[str, Any] = {}

            async def attainment_known() -> bool:
                body = await kpis(session, office.base, "kyiv", window="month", by="manager")
                month.update(body["groups"])
                return len(month) == 8

            await eventually(attainment_known, 60, "the month's KPIs by manager")
            wall = Wall(office.base, office.token, office.port, "kyiv")
            page = await open_wall(browser, wall, SIZES[1])
            expected = {}
            for manager, group in month.items():
                goals = group.get("plan_attainment", [])
                by_target = {goal["target"]: goal["value"] for goal in goals}
                expected[manager] = by_target.get("revenue", by_target.get("deals_won"))
            assert expected["1"] is not None
            assert expected["3"] is not None  # a deals-won target: 2 of 4
            assert expected["8"] is None  # no target, no bar
            for manager, attainment in expected.items():
                plan = page.locator(f'#leader-rows li[data-manager="{manager}"] .plan')
                if attainment is None:
                    await expect(plan).to_be_hidden()
                    continue
                shown = float(await plan.get_attribute("data-progress") or "nan")
                assert math.isclose(shown, attainment, abs_tol=1e-4), (manager, shown)
                width = await plan.locator(".plan-fill").evaluate("node => node.style.width")
                assert math.isclose(
                    float(width.rstrip("%")), min(100.0, attainment * 100), abs_tol=0.01
                )
                percent = f"{round(attainment * 100)}%"
                await expect(plan.locator(".plan-pct")).to_have_text(percent)
            await page.screenshot(path=artifact("wall-progress.png"))
