"""Who may open which wall: read-only screen tokens of the tenants file, and the views they show.

A token opens one named screen of one tenant (and the screens it rotates through). Tokens
are compared as SHA-256 digests in constant time; a wrong, missing or unknown token and an
unknown tenant all get the same answer, so the answer tells nothing.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import get_args

from metrics.wall.frame import WallKey
from metrics.wall.i18n import LOCALES, catalogue
from salespulse.core.tenants import (
    TenantDirectory,
    TenantsFileError,
    WallPanel,
    WallScreen,
    WallTile,
    token_digest,
)

_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
TILES: tuple[str, ...] = get_args(WallTile)
PANELS: tuple[str, ...] = get_args(WallPanel)


@dataclass(frozen=True)
class View:
    """One layout the page shows: a screen of the tenants file, maybe narrowed by the URL."""

    name: str
    title: str
    key: WallKey
    tiles: tuple[str, ...]
    panels: tuple[str, ...]
    leaderboard_by: str
    rows: int

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "title": self.title,
            "key": self.key.name,
            "team": self.key.team,
            "tiles": list(self.tiles),
            "panels": list(self.panels),
            "leaderboard_by": self.leaderboard_by,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class Grant:
    tenant: str
    views: tuple[View, ...]
    rotate_seconds: float
    locale: str = "en"
    celebration_sound: bool = False

    @property
    def keys(self) -> list[WallKey]:
        return list(dict.fromkeys(view.key for view in self.views))


@dataclass(frozen=True)
class Denied:
    status: int
    body: dict[str, object]


class WallAccess:
    """Screens by tenant with their token digests; built at start (a missing secret stops it)."""

    def __init__(self, tenants: TenantDirectory) -> None:
        self._tenants = tenants
        self._screens: dict[str, list[tuple[bytes, str, WallScreen]]] = {}
        for tenant in tenants.names():
            for name, screen in tenants.get(tenant).wall.screens.items():
                digest = screen.digest()
                screens = self._screens.setdefault(tenant, [])
                if any(hmac.compare_digest(digest, known) for known, _, _ in screens):
                    # One token, one screen: otherwise which screen it opens is a guess.
                    raise TenantsFileError(
                        f"tenants.{tenant}.wall.screens.{name}: token used by another screen"
                    )
                screens.append((digest, name, screen))

    def has_screens(self) -> bool:
        return bool(self._screens)

    def grant(self, query: Mapping[str, str]) -> Grant | Denied:
        tenant = query.get("tenant", "")
        offered = token_digest(query.get("token", ""))
        found: tuple[str, WallScreen] | None = None
        for digest, name, screen in self._screens.get(tenant, []):
            if hmac.compare_digest(digest, offered):
                found = (name, screen)
        if found is None or not query.get("token"):
            return Denied(401, {"error": "unauthorized"})
        name, screen = found
        problems = []
        team = query.get("team") or None
        if team is not None and not _TEAM.match(team):
            problems.append({"field": "team", "problem": "not a team id"})
        tiles = _listed(query.get("tiles"), TILES, "tiles", problems)
        panels = _listed(query.get("panels"), PANELS, "panels", problems, allow_empty=True)
        locale = query.get("locale") or None
        if locale is not None and locale not in LOCALES:
            problems.append({"field": "locale", "problem": f"one of {', '.join(LOCALES)}"})
        if problems:
            return Denied(400, {"error": "invalid_query", "problems": problems})
        if screen.team is not None and team not in (None, screen.team):
            return Denied(403, {"error": "forbidden", "problem": "this token shows another team"})
        # The URL's locale, else the screen's, else the tenant's.
        config = self._tenants.get(tenant)
        locale = locale or screen.locale or config.locale
        first = self._view(tenant, locale, name, screen, team or screen.team, tiles, panels)
        others = [
            self._view(tenant, locale, other, config.wall.screens[other])
            for other in screen.rotate
            if other != name
        ]
        return Grant(
            tenant, (first, *others), screen.rotate_seconds, locale, screen.celebration_sound
        )

    def _view(
        self,
        tenant: str,
        locale: str,
        name: str,
        screen: WallScreen,
        team: str | None = None,
        tiles: tuple[str, ...] | None = None,
        panels: tuple[str, ...] | None = None,
    ) -> View:
        if team is None:
            team = screen.team
        words = catalogue(locale)
        shown = self._tenants.get(tenant).team_name(team) if team else None
        title = screen.title or (
            words.text("title.team", team=shown) if shown else words.text("title.office")
        )
        if screen.title and shown and team != screen.team:
            title = words.text("title.screen_team", title=screen.title, team=shown)
        return View(
            name=name,
            title=title,
            key=WallKey(tenant, team, locale),
            tiles=tiles if tiles is not None else tuple(screen.tiles),
            panels=panels if panels is not None else tuple(screen.panels),
            leaderboard_by=screen.leaderboard_by,
            rows=screen.rows,
        )


def _listed(
    raw: str | None,
    known: tuple[str, ...],
    field: str,
    problems: list[dict[str, str]],
    *,
    allow_empty: bool = False,
) -> tuple[str, ...] | None:
    """A comma-separated layout override from the URL, or None when not given."""
    if raw is None:
        return None
    items = tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))
    unknown = [item for item in items if item not in known]
    if unknown or (not items and not allow_empty) or len(items) > 8:
        problems.append({"field": field, "problem": f"comma-separated, of {', '.join(known)}"})
        return None
    return items
