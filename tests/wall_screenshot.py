"""Render the demo wall to PNGs for the README and docs/: ``make wall-screenshot``.

Starts ``salespulse run --demo`` (its own broker and Redis), posts a morning of the demo
office's events (so the wall is not empty at 9 a.m.), opens the demo wall in Debian's
headless Chromium at 1920×1080 and saves what it shows.

``--locale uk|ru|en`` renders the demo's Ukrainian (UAH), Russian (RUB) or English (USD)
office (``salespulse run --demo --demo-locale …``), its wall in that office's language.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from playwright.async_api import Page, expect

from salespulse.app.demo import TENANT, WALL_TOKEN, DemoOffice
from salespulse.app.demo_offices import LOCALES, DemoLocale
from salespulse.app.embedded import free_port
from tests.browser import chromium

BACKFILL_EVENTS = 400


async def backfill(session: aiohttp.ClientSession, base: str, locale: DemoLocale) -> None:
    """The demo office's last few hours, oldest first, in batches (its replies included)."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(midnight + timedelta(seconds=1), now - timedelta(hours=6))
    office = DemoOffice(seed=2026, locale=locale)
    step = (now - start) / BACKFILL_EVENTS
    events = [e for i in range(BACKFILL_EVENTS) for e in office.next_events(start + step * i)]
    for first in range(0, len(events), 200):
        async with session.post(f"{base}/v1/events", json=events[first : first + 200]) as reply:
            if reply.status != 202:
                raise RuntimeError(f"backfill answered {reply.status}: {await reply.text()}")


async def wait_healthy(
    session: aiohttp.ClientSession, base: str, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"salespulse exited with {process.returncode}")
        try:
            async with session.get(f"{base}/healthz") as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("salespulse did not become healthy in 60 s")


async def settled(page: Page, quiet_s: float = 5.0, limit_s: float = 120.0) -> None:
    """Until the demo's history is in: the leaderboard unchanged for ``quiet_s``, no won
    deal's banner over the tiles, and the last row and tile animations done."""
    deadline = time.monotonic() + limit_s
    banner = page.locator("#celebrate")
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        shown = await page.text_content("#leader-rows")
        if shown != last:
            last, since = shown, time.monotonic()
        elif time.monotonic() - since >= quiet_s and await banner.is_hidden():
            break
        await asyncio.sleep(0.5)
    await expect(banner).to_be_hidden(timeout=30_000)
    await asyncio.sleep(2)  # a row's slide (0.9 s) and a tile's highlight (1.6 s)


async def render(out: Path, locale: DemoLocale = "en") -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    env["SALESPULSE_HTTP_PORT"] = str(port)
    with tempfile.TemporaryDirectory(prefix="wall-shot-") as workdir:
        env["SALESPULSE_DATA_DIR"] = workdir
        # A plain Popen: the tool owns this one process for its whole life, and stops it.
        process = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "salespulse.cli", "run", "--demo", "--demo-locale", locale],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as session:
                await wait_healthy(session, base, process)
                await backfill(session, base, locale)
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1920, "height": 1080})
                await page.goto(f"{base}/wall?tenant={TENANT}&token={WALL_TOKEN}")
                await page.wait_for_selector('body[data-connection="live"]', timeout=30_000)
                won = page.locator("[data-tile=won] .value")
                await expect(won).not_to_have_text(["—", "0"], timeout=60_000)
                await settled(page)
                out.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(out))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    args = sys.argv[1:]
    locale: DemoLocale = "en"
    if args[:1] == ["--locale"]:
        chosen = [known for known in LOCALES if args[1:2] == [known]]
        if not chosen:
            raise SystemExit(f"--locale: one of {', '.join(LOCALES)}")
        locale, args = chosen[0], args[2:]
    out = Path(args[0] if args else f"docs/wall-{locale}.png")
    asyncio.run(render(out, locale))
    print(f"wrote {out}")  # noqa: T201 - the make target's one line of output


if __name__ == "__main__":
    main()
