"""The wall page's own files: every module it imports is served, every word it asks for
is in every catalogue (a missing key would throw on the TV, in one language only)."""

from __future__ import annotations

import re
from typing import get_args

from metrics.wall.access import PANELS, TILES
from metrics.wall.i18n import LOCALES, catalogue
from metrics.wall.routes import _ASSETS, STATIC
from salespulse.core.events import Channel
from salespulse.core.tenants.screens_and_tokens import WallScreen

PAGE = [STATIC / "wall.html", *sorted(STATIC.glob("*.js"))]


def test_every_module_the_page_imports_is_served():
    imported = set()
    for path in PAGE:
        imported |= set(re.findall(r'from "\./([\w.-]+\.js)"', path.read_text()))
        imported |= set(re.findall(r'src="/wall/static/([\w.-]+)"', path.read_text()))
        imported |= set(re.findall(r'href="/wall/static/([\w.-]+)"', path.read_text()))
    assert imported
    assert imported <= set(_ASSETS)
    assert {path.name for path in STATIC.iterdir()} == set(_ASSETS) | {"wall.html"}


def test_every_word_the_page_asks_for_is_in_every_catalogue():
    asked = set()
    for path in PAGE:
        text = path.read_text()
        asked |= set(re.findall(r'\bw\.(?:t|tn|template)\("([\w.]+)"', text))
        asked |= set(re.findall(r'\bwords\.(?:t|tn|template)\("([\w.]+)"', text))
        asked |= set(re.findall(r'data-t="([\w.]+)"', text))
        asked |= set(re.findall(r'\b(?:t|sub|subN|line)\("((?:sub|tile|waiting)\.[\w.]+)"', text))
        asked |= set(re.findall(r'\["(sub\.[\w.]+)"', text))
    # Keys the page builds from a name: every tile, sort order and channel.
    asked |= {f"tile.{tile}" for tile in TILES}
    by = WallScreen.model_fields["leaderboard_by"].annotation
    asked |= {f"leaders.by.{order}" for order in get_args(by)}
    asked |= {f"panel.{'leaderboard' if p == 'leaderboard' else p}" for p in PANELS}
    asked |= {f"channel.{channel}" for channel in get_args(Channel)}
    assert len(asked) > 50
    for locale in LOCALES:
        missing = asked - set(catalogue(locale).entries)
        assert not missing, (locale, missing)
