"""The tenants file: valid files load; bad ones fail naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from salespulse.core.tenants import TenantDirectory, TenantsFileError, load_tenants

GOOD = """
tenants:
  acme:
    timezone: Europe/Moscow
    currency: RUB
    currency_rates: {USD: "92.5"}
    pipelines:
      sales:
        stages:
          - {id: new}
          - {id: qualified, warm: true, limit_hours: 48}
          - {id: proposal}
          - {id: won, kind: won}
          - {id: lost, kind: lost}
    teams:
      north: {managers: ["17", "42"]}
    targets:
      managers: {"17": {revenue: "1000000", deals_won: 20}}
    marketing_costs: {website: {"2026-11": "50000"}}
    crm:
      bitrix24:
        application_token: {env: ACME_BITRIX_TOKEN}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    return path


def test_a_full_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenants = load_tenants(write(tmp_path, GOOD))
    acme = tenants.tenants["acme"]
    assert [stage.id for stage in acme.pipelines["sales"].stages][-2:] == ["won", "lost"]
    assert acme.team_of("42") == "north"
    assert acme.team_of("99") is None
    monkeypatch.setenv("ACME_BITRIX_TOKEN", "s3cret")
    assert acme.crm.bitrix24 is not None
    token = acme.crm.bitrix24.application_token.reveal()
    assert token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(token)


def test_unknown_tenants_get_defaults(tmp_path: Path) -> None:
    directory = TenantDirectory(load_tenants(write(tmp_path, GOOD)), default_timezone="Asia/Tokyo")
    assert str(directory.zone_for("acme")) == "Europe/Moscow"
    assert str(directory.zone_for("someone-else")) == "Asia/Tokyo"
    assert directory.get("someone-else").pipelines == {}


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("tenants:\n  acme:\n    timezone: Mars/Base\n", "tenants.acme", "unknown time zone"),
        ("tenants:\n  Acme Inc: {}\n", "tenants.Acme Inc.[key]", "should match pattern"),
        ("tenants:\n  acme:\n    currency: rub\n", "tenants.acme.currency", "pattern"),
        ("tenants:\n  acme:\n    colour: red\n", "tenants.acme.colour", "Extra inputs"),
        (
            "tenants:\n  acme:\n    pipelines:\n      p:\n        stages: []\n",
            "tenants.acme.pipelines.p.stages",
            "at least 1",
        ),
        (
            "tenants:\n  acme:\n    pipelines:\n      p:\n        stages: [{id: a}, {id: a}]\n",
            "tenants.acme.pipelines.p",
            "stage ids repeat",
        ),
        (
            "tenants:\n  acme:\n    teams: {a: {managers: ['1']}, b: {managers: ['1']}}\n",
            "tenants.acme",
            "manager '1' is in both",
        ),
        (
            "tenants:\n  acme:\n    marketing_costs: {web: {'2026-13': 5}}\n",
            "tenants.acme.marketing_costs.web.2026-13.[key]",
            "pattern",
        ),
        (
            "tenants:\n  acme:\n    crm:\n      bitrix24: {application_token: {}}\n",
            "tenants.acme.crm.bitrix24.application_token",
            "exactly one of `env` or `file`",
        ),
    ],
)
def test_a_bad_file_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TenantsFileError) as info:
        load_tenants(path)
    message = str(info.value)
    assert f"{path}: {key}: " in message
    assert problem in message


def test_yaml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "tenants: [unclosed\n")
    with pytest.raises(TenantsFileError, match=f"{path}: not valid YAML"):
        load_tenants(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TenantsFileError, match="cannot read"):
        load_tenants(tmp_path / "nope.yaml")


def test_a_secret_written_into_the_file_is_refused_saying_where_it_goes(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, GOOD.replace("{env: ACME_BITRIX_TOKEN}", "plain-token-value"))
    assert path.read_text() != GOOD
    with pytest.raises(
        TenantsFileError, match=r"application_token: .*\{env: VARIABLE\}"
    ) as refused:
        load_tenants(path)
    assert "plain-token-value" not in str(refused.value)


def test_an_unset_secret_names_its_variable(tmp_path: Path) -> None:
    tenants = load_tenants(write(tmp_path, GOOD))
    bitrix = tenants.tenants["acme"].crm.bitrix24
    assert bitrix is not None
    with pytest.raises(TenantsFileError, match="ACME_BITRIX_TOKEN is not set"):
        bitrix.application_token.reveal()
