"""Wall screens in the tenants file, and who their tokens let in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metrics.wall.access import Denied, Grant, WallAccess
from salespulse.core.tenants import TenantDirectory, TenantsFileError, load_tenants

WALLS = """
tenants:
  acme:
    teams: {north: {managers: ["17", "42"]}, south: {managers: ["5"]}}
    wall:
      names: {"17": Anna}
      screens:
        office:
          token: {file: TOKEN_FILE}
          title: Acme office
          rotate: [north]
        north:
          token_sha256: NORTH_SHA
          team: north
          tiles: [revenue, calls]
          panels: [leaderboard]
  other:
    wall:
      screens:
        lobby: {token_sha256: LOBBY_SHA}
  kyiv:
    locale: uk
    teams: {sales: {name: "Відділ продажів", managers: ["1"]}}
    wall:
      screens:
        hall: {token_sha256: HALL_SHA}
        russian: {token_sha256: RUSSIAN_SHA, locale: ru, team: sales, celebration_sound: true}
"""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def access(tmp_path: Path) -> WallAccess:
    token_file = tmp_path / "office-token"
    token_file.write_text("office-secret\n")
    text = (
        WALLS.replace("TOKEN_FILE", str(token_file))
        .replace("NORTH_SHA", sha("north-secret"))
        .replace("LOBBY_SHA", sha("lobby-secret"))
        .replace("HALL_SHA", sha("hall-secret"))
        .replace("RUSSIAN_SHA", sha("russian-secret"))
    )
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    return WallAccess(TenantDirectory(load_tenants(path)))


def granted(answer: Grant | Denied) -> Grant:
    assert isinstance(answer, Grant), answer
    return answer


def test_a_screen_token_opens_its_screen_and_the_screens_it_rotates_through(access):
    grant = granted(access.grant({"tenant": "acme", "token": "office-secret"}))
    assert [view.name for view in grant.views] == ["office", "north"]
    office, north = grant.views
    assert office.key.team is None
    assert office.title == "Acme office"
    assert office.tiles == ("revenue", "won", "calls", "conversion", "first_response")
    assert north.key.team == "north"
    assert north.tiles == ("revenue", "calls")
    assert north.panels == ("leaderboard",)
    assert [key.name for key in grant.keys] == ["*", "north"]


@pytest.mark.parametrize(
    "query",
    [
        {"tenant": "acme"},
        {"tenant": "acme", "token": ""},
        {"tenant": "acme", "token": "wrong"},
        {"tenant": "acme", "token": "lobby-secret"},  # another tenant's token
        {"tenant": "nobody", "token": "office-secret"},
        {"token": "office-secret"},
    ],
)
def test_a_wrong_missing_or_foreign_token_is_unauthorized_and_says_nothing_more(access, query):
    answer = access.grant(query)
    assert answer == Denied(401, {"error": "unauthorized"})


def test_a_team_screen_cannot_be_widened_or_moved_to_another_team(access):
    north = {"tenant": "acme", "token": "north-secret"}
    assert granted(access.grant({**north, "team": "north"})).views[0].key.team == "north"
    answer = access.grant({**north, "team": "south"})
    assert isinstance(answer, Denied)
    assert answer.status == 403
    assert answer.body["error"] == "forbidden"


def test_an_office_screen_may_be_narrowed_to_a_team_and_relaid_by_the_url(access):
    query = {"tenant": "acme", "token": "office-secret", "team": "south", "tiles": "won,calls"}
    first = granted(access.grant({**query, "panels": ""})).views[0]
    assert first.key.team == "south"
    assert first.title == "Acme office · south"
    assert first.tiles == ("won", "calls")
    assert first.panels == ()


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"tiles": "revenue,weather"}, "tiles"), ({"tiles": ""}, "tiles"),
     ({"panels": "chat"}, "panels"), ({"team": "no spaces please"}, "team"),
     ({"locale": "de"}, "locale")],
)  # fmt: skip
def test_a_bad_layout_in_the_url_is_a_400_naming_it(access, extra, field):
    answer = access.grant({"tenant": "acme", "token": "office-secret", **extra})
    assert isinstance(answer, Denied)
    assert answer.status == 400
    problems = answer.body["problems"]
    assert isinstance(problems, list)
    assert [problem["field"] for problem in problems] == [field]


def load_text(tmp_path: Path, text: str) -> TenantDirectory:
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    return TenantDirectory(load_tenants(path))


@pytest.mark.parametrize(
    ("screen", "problem"),
    [
        ("{title: no token}", "exactly one of `token` or `token_sha256`"),
        ("{token_sha256: abc}", "tenants.acme.wall.screens.s.token_sha256"),
        (
            "{token_sha256: " + "a" * 64 + ", tiles: [weather]}",
            "tenants.acme.wall.screens.s.tiles.0",
        ),
        ("{token_sha256: " + "a" * 64 + ", rotate: [ghost]}", "no screen 'ghost'"),
        ("{token_sha256: " + "a" * 64 + ", locale: de}", "tenants.acme.wall.screens.s.locale"),
        (
            "{token_sha256: " + "a" * 64 + ", celebration_sound: loud}",
            "tenants.acme.wall.screens.s.celebration_sound",
        ),
    ],
)
def test_a_bad_screen_fails_the_start_naming_the_key(tmp_path, screen, problem):
    text = f"tenants:\n  acme:\n    wall:\n      screens:\n        s: {screen}\n"
    with pytest.raises(TenantsFileError, match=problem.replace("`", ".").replace("(", r"\(")):
        load_text(tmp_path, text)


def test_two_screens_with_one_token_or_a_missing_secret_fail_at_start(tmp_path):
    same = "a" * 64
    text = (
        "tenants:\n  acme:\n    wall:\n      screens:\n"
        f"        one: {{token_sha256: {same}}}\n        two: {{token_sha256: {same}}}\n"
    )
    with pytest.raises(TenantsFileError, match="two: token used by another screen"):
        WallAccess(load_text(tmp_path, text))
    missing = (
        "tenants:\n  acme:\n    wall:\n      screens:\n        s: {token: {env: NO_SUCH_VAR_X}}\n"
    )
    with pytest.raises(TenantsFileError, match="NO_SUCH_VAR_X is not set"):
        WallAccess(load_text(tmp_path, missing))


def test_the_demo_wall_token_matches_the_demo_tenants_file():
    from salespulse.app.demo import WALL_TOKEN
    from salespulse.app.launcher import DEMO_TENANTS

    access = WallAccess(TenantDirectory(load_tenants(DEMO_TENANTS)))
    grant = granted(access.grant({"tenant": "demo", "token": WALL_TOKEN}))
    assert grant.views[0].name == "office"


@pytest.mark.parametrize(
    ("opened_by", "query", "locale", "title"),
    [
        ("lobby-secret", {}, "en", "Whole office"),  # the default: en
        ("hall-secret", {}, "uk", "Увесь офіс"),  # the tenant's
        ("hall-secret", {"team": "sales"}, "uk", "Команда Відділ продажів"),  # team name
        ("russian-secret", {}, "ru", "Команда Відділ продажів"),  # the screen's
        ("russian-secret", {"locale": "en"}, "en", "Team Відділ продажів"),  # the URL's
        ("hall-secret", {"locale": "ru"}, "ru", "Весь офис"),
    ],
)
def test_the_locale_is_the_urls_else_the_screens_else_the_tenants(
    access, opened_by, query, locale, title
):
    tenant = "other" if opened_by.startswith("lobby") else "kyiv"
    grant = granted(access.grant({"tenant": tenant, "token": opened_by, **query}))
    assert grant.locale == locale
    assert grant.views[0].key.locale == locale
    assert grant.views[0].title == title
    assert grant.celebration_sound is opened_by.startswith("russian")


@pytest.mark.parametrize(
    ("tenant", "problem"),
    [
        ("{locale: de}", "tenants.acme.locale"),
        ("{teams: {north: {name: ''}}}", "tenants.acme.teams.north.name"),
    ],
)
def test_a_bad_locale_or_team_name_fails_the_start_naming_the_key(tmp_path, tenant, problem):
    with pytest.raises(TenantsFileError, match=problem):
        load_text(tmp_path, f"tenants:\n  acme: {tenant}\n")
