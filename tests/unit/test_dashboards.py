"""The committed Grafana files: generated, well-formed for schemaVersion 39, provisioned.

What the queries return is checked against a real Prometheus in
tests/integration/test_dashboards_live.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from salespulse.dev.dashboards.__main__ import main
from salespulse.dev.dashboards.board import SCHEMA_VERSION
from salespulse.dev.dashboards.panels import Panel
from salespulse.dev.dashboards.render import BOARDS, rendered

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
# Grafana's own interval macros; every other $name must be a variable of the board.
MACROS = {"__rate_interval", "__interval", "__range"}
PANEL_TYPES = {"stat", "gauge", "bargauge", "timeseries", "table", "heatmap"}
VARIABLE = re.compile(r"\$(\w+)")


def committed() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def test_committed_dashboards_are_exactly_the_generators_output() -> None:
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in DASHBOARDS.glob("*.json")}
    generated = rendered()
    assert sorted(on_disk) == sorted(generated), "run `make dashboards` and commit the result"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} differs from the generator: run `make dashboards`"


def test_the_command_writes_every_board_and_rewrites_nothing_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BOARDS)
    assert f"{len(BOARDS)} dashboard(s) changed" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 0
    assert "0 dashboard(s) changed" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_a_dashboard_has_what_grafana_needs(name: str) -> None:
    board = committed()[name]
    assert board["schemaVersion"] == SCHEMA_VERSION == 39
    assert board["id"] is None, "provisioned boards get their id from Grafana"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), board["uid"]
    assert board["title"].startswith("SalesPulse · ")
    assert "salespulse" in board["tags"]
    assert board["time"] == {"from": "now-6h", "to": "now"}
    assert re.fullmatch(r"\d+[smh]", board["refresh"])
    variables = board["templating"]["list"]
    names = [variable["name"] for variable in variables]
    assert len(set(names)) == len(names), names
    assert names[0] == "tenant", "every board is per tenant, chosen first"

    defined: set[str] = set()
    for variable in variables:
        assert variable["type"] in {"query", "custom"}
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
            assert variable["query"] == variable["definition"]
            assert re.fullmatch(r"label_values\(salespulse_\w+(\{.*\})?, \w+\)", variable["query"])
            # A variable may use the ones before it (Grafana resolves them in order).
            assert set(VARIABLE.findall(variable["query"])) <= defined, variable["name"]
            if variable["includeAll"]:
                assert variable["allValue"] == ".*"
        else:
            values = [option["value"] for option in variable["options"]]
            assert variable["query"] == ",".join(values)
            assert variable["current"]["value"] in values
        defined.add(variable["name"])

    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    used: set[str] = set()
    for panel in panels:
        where = f"{name} · {panel['title']}"
        assert panel["type"] in PANEL_TYPES, where
        assert panel["title"], where
        assert panel["datasource"] == DATASOURCE, where
        targets = panel["targets"]
        assert targets, f"{where}: no query"
        assert len({target["refId"] for target in targets}) == len(targets), where
        for target in targets:
            assert target["datasource"] == DATASOURCE, where
            assert isinstance(target["expr"], str), where
            assert "salespulse_" in target["expr"], where
            assert target["expr"].count("(") == target["expr"].count(")"), where
            names_used = set(VARIABLE.findall(target["expr"]))
            assert names_used <= defined | MACROS, f"{where}: {names_used - defined - MACROS}"
            used |= names_used
        if panel["type"] == "table":
            assert all(target["format"] == "table" and target["instant"] for target in targets)
        if panel["type"] == "heatmap":
            assert all(target["format"] == "heatmap" for target in targets)
        assert set(panel["fieldConfig"]) == {"defaults", "overrides"}, where
    for variable in variables:  # a variable nothing uses is a selector that does nothing
        others = " ".join(v["query"] for v in variables if v is not variable)
        assert variable["name"] in used or f"${variable['name']}" in others, variable["name"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_tile_the_24_column_grid_without_overlap(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in committed()[name]["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert all(isinstance(grid[key], int) for key in grid)
        assert min(grid["w"], grid["h"]) > 0, panel["title"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_wall_screen_opens_with_big_numbers() -> None:
    """Kiosk mode shows the top of the overview on a TV: stats, readable from afar."""
    board = committed()["sales-overview.json"]
    top = [panel for panel in board["panels"] if panel["gridPos"]["y"] == 0]
    assert sum(panel["gridPos"]["w"] for panel in top) == 24
    assert all(panel["type"] == "stat" and panel["gridPos"]["h"] >= 5 for panel in top)
    assert board["refresh"] == "10s"


def test_uids_are_unique_across_boards_and_linked_by_tag() -> None:
    boards = committed().values()
    uids = [board["uid"] for board in boards]
    assert len(set(uids)) == len(uids)
    for board in boards:
        (link,) = board["links"]
        assert link["type"] == "dashboards"
        assert link["tags"] == ["salespulse"]
        assert link["includeVars"]
        assert link["keepTime"]


def test_layout_wraps_a_panel_that_does_not_fit_and_refuses_one_wider_than_the_grid() -> None:
    from salespulse.dev.dashboards.board import dashboard

    def panel(width: int) -> Panel:
        return Panel(width, 3, {"type": "stat", "title": f"w{width}"})

    board = dashboard("x", "x", "x", [], [panel(20), panel(5), panel(4)])
    assert [p["gridPos"] for p in board["panels"]] == [
        {"h": 3, "w": 20, "x": 0, "y": 0},
        {"h": 3, "w": 5, "x": 0, "y": 3},
        {"h": 3, "w": 4, "x": 5, "y": 3},
    ]
    with pytest.raises(ValueError, match="off the grid"):
        dashboard("x", "x", "x", [], [panel(25)])


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard_files() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert {"type": source["type"], "uid": source["uid"]} == DATASOURCE
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]

    providers = yaml.safe_load((PROVISIONING / "dashboards" / "salespulse.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["allowUiUpdates"] is False, "generated files: UI edits would be lost"


def _panels_by_title(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in board["panels"]}


def test_money_panels_carry_the_currency_the_boards_are_made_for(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--currency", "UAH"]) == 0
    overview = _panels_by_title(json.loads((tmp_path / "sales-overview.json").read_text()))
    managers = _panels_by_title(json.loads((tmp_path / "managers.json").read_text()))
    for panel in (overview["Revenue today"], overview["Average check today"],
                  managers["Revenue"], managers["Average check"]):  # fmt: skip
        assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUAH"  # Grafana shows ₴
    assert managers["Calls"]["fieldConfig"]["defaults"]["unit"] == "short"
    # A currency Grafana has no unit for is written as a suffix; a non-code is refused.
    kzt = json.loads(rendered("KZT")["managers.json"])
    assert _panels_by_title(kzt)["Revenue"]["fieldConfig"]["defaults"]["unit"] == "suffix: KZT"
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--currency", "hryvnia"])


def test_the_managers_board_shows_names_joined_from_the_info_metric() -> None:
    board = _panels_by_title(committed()["managers.json"])
    table = board["Revenue"]
    expr = table["targets"][0]["expr"]
    join = 'on(tenant, manager) group_left(name) salespulse_manager_info{tenant="$tenant"}'
    assert join in expr
    shown = table["transformations"][0]["options"]["include"]["names"]
    assert "name" in shown
    assert "manager" not in shown  # the name, not the CRM's user id
    for title in ("Win rate", "Calls by manager"):
        assert board[title]["targets"][0]["legendFormat"] == "{{name}}"
        assert "group_left(name)" in board[title]["targets"][0]["expr"]
