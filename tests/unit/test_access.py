"""Tenant and operator tokens (salespulse/core/access.py): who opens which tenant, and when a
process refuses to start with an open door beyond loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from salespulse.cli import main
from salespulse.core.access import (
    ANY_TENANT,
    TokenTable,
    UnsafeExposureError,
    bearer_token,
    check_scope,
    is_loopback,
    refuse_open_exposure,
)
from salespulse.core.errors import InvalidEventError
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantDirectory, TenantsFileError, load_tenants

OPERATOR = "operator-token-0123456789"
ACME_READ = "acme-grafana-read-token"
ACME_WIDGET = "acme-crm-widget-token-1"
GLOBEX_READ = "globex-read-token-012345"
ACME_INGEST = "acme-etl-ingest-token-01"

TENANTS = """
tenants:
  acme:
    tokens:
      read:
        grafana: {token_sha256: ACME_READ_SHA}
        crm-widget: {token: {env: ACME_WIDGET_TOKEN}}
      ingest:
        etl: {token: {file: ACME_INGEST_FILE}}
  globex:
    tokens:
      read:
        reports: {token_sha256: GLOBEX_READ_SHA}
  initech: {}
"""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def directory(tmp_path: Path, text: str = TENANTS) -> TenantDirectory:
    ingest_file = tmp_path / "acme-ingest"
    ingest_file.write_text(ACME_INGEST + "\n")
    path = tmp_path / "tenants.yaml"
    path.write_text(
        text.replace("ACME_READ_SHA", sha(ACME_READ))
        .replace("GLOBEX_READ_SHA", sha(GLOBEX_READ))
        .replace("ACME_INGEST_FILE", str(ingest_file))
    )
    return TenantDirectory(load_tenants(path))


@pytest.fixture
def tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TenantDirectory:
    monkeypatch.setenv("ACME_WIDGET_TOKEN", ACME_WIDGET)
    return directory(tmp_path)


def test_a_tenants_read_tokens_open_that_tenant_only(tenants: TenantDirectory) -> None:
    reads = TokenTable.of("read", tenants, None)
    assert reads.enforced
    assert reads.opens("acme", ACME_READ)
    assert reads.opens("acme", ACME_WIDGET)  # several tokens, one per consumer
    assert reads.opens("globex", GLOBEX_READ)
    assert not reads.opens("globex", ACME_READ)
    assert not reads.opens("acme", GLOBEX_READ)
    # No token opens a tenant without read tokens, or one the file does not list.
    for token in (ACME_READ, GLOBEX_READ, "", None, ACME_READ + "x", ACME_INGEST):
        assert not reads.opens("initech", token)
        assert not reads.opens("nosuch", token)


def test_the_operators_token_opens_every_tenant(tenants: TenantDirectory) -> None:
    reads = TokenTable.of("read", tenants, OPERATOR)
    assert reads.scope(OPERATOR) == ANY_TENANT
    assert all(reads.opens(tenant, OPERATOR) for tenant in ("acme", "initech", "nosuch"))
    assert reads.scope(ACME_READ) == "acme"
    assert reads.scope("wrong") is None
    assert reads.scope(None) is None


def test_ingest_tokens_are_bound_to_their_tenant(tenants: TenantDirectory) -> None:
    ingest = TokenTable.of("ingest", tenants, None)
    assert ingest.scope(ACME_INGEST) == "acme"
    assert ingest.scope(ACME_READ) is None  # a read token never writes
    check_scope(["acme", "acme"], "acme")
    check_scope(["acme", "globex"], ANY_TENANT)
    with pytest.raises(InvalidEventError) as refused:
        check_scope(["acme", "globex", "acme"], "acme")
    assert refused.value.reason == "tenant_forbidden"
    assert [p["index"] for p in refused.value.problems] == [1]
    assert refused.value.problems[0]["field"] == "tenant"


def test_without_any_token_nothing_is_enforced(tmp_path: Path) -> None:
    plain = directory(tmp_path, "tenants: {acme: {}}")
    assert not TokenTable.of("read", plain, None).enforced
    assert not TokenTable.of("ingest", plain, None).enforced
    assert TokenTable.of("ingest", plain, OPERATOR).enforced


def test_one_token_one_tenant(tmp_path: Path) -> None:
    shared = (
        "tenants:\n"
        f"  acme: {{tokens: {{read: {{a: {{token_sha256: {sha(ACME_READ)}}}}}}}}}\n"
        f"  globex: {{tokens: {{read: {{b: {{token_sha256: {sha(ACME_READ)}}}}}}}}}\n"
    )
    with pytest.raises(TenantsFileError, match=r"tenants\.globex\.tokens\.read\.b: token used"):
        TokenTable.of("read", directory(tmp_path, shared), None)
    own = f"tenants:\n  acme: {{tokens: {{ingest: {{a: {{token_sha256: {sha(OPERATOR)}}}}}}}}}\n"
    with pytest.raises(TenantsFileError, match="token used by another tenant or the operator"):
        TokenTable.of("ingest", directory(tmp_path, own), OPERATOR)


def test_a_short_token_secret_is_refused_naming_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHORT", "hunter2")
    text = "tenants:\n  acme: {tokens: {read: {grafana: {token: {env: SHORT}}}}}\n"
    with pytest.raises(TenantsFileError, match=r"tenants\.acme\.tokens\.read\.grafana: at least"):
        TokenTable.of("read", directory(tmp_path, text), None)


def test_a_token_is_a_secret_or_its_digest_never_both(tmp_path: Path) -> None:
    both = (
        "tenants:\n  acme: {tokens: {read: {a: "
        f"{{token: {{env: X}}, token_sha256: {sha(ACME_READ)}}}}}}}}}\n"
    )
    with pytest.raises(TenantsFileError, match="exactly one of `token` or `token_sha256`"):
        directory(tmp_path, both)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("abc", None),
        ("", None),
    ],
)
def test_bearer_token_parsing(header: str, token: str | None) -> None:
    assert bearer_token(header) == token


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "", "::", "10.0.0.5", "example.com"))  # noqa: S104


def test_an_open_door_beyond_loopback_refuses_to_start_unless_a_proxy_guards_it() -> None:
    closed = {"ingest_behind_proxy": False, "reads_behind_proxy": False}
    refuse_open_exposure("127.0.0.1", open_ingest=True, open_reads=True, **closed)
    refuse_open_exposure("0.0.0.0", open_ingest=False, open_reads=False, **closed)  # noqa: S104
    with pytest.raises(UnsafeExposureError, match="SALESPULSE_INGEST_TOKEN"):
        refuse_open_exposure("0.0.0.0", open_ingest=True, open_reads=False, **closed)  # noqa: S104
    with pytest.raises(UnsafeExposureError, match="SALESPULSE_READ_TOKEN"):
        refuse_open_exposure("10.0.0.5", open_ingest=False, open_reads=True, **closed)
    refuse_open_exposure(
        "0.0.0.0",  # noqa: S104
        open_ingest=True,
        open_reads=True,
        ingest_behind_proxy=True,
        reads_behind_proxy=True,
    )


def test_the_cli_refuses_an_open_ingest_beyond_loopback_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SALESPULSE_HTTP_HOST", "0.0.0.0")  # noqa: S104
    # Both set: nothing embedded is started before the refusal.
    monkeypatch.setenv("SALESPULSE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("SALESPULSE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SALESPULSE_DATA_DIR", str(tmp_path))
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("salespulse: refusing to start: POST /v1/events would be open")
    assert "SALESPULSE_INGEST_TOKEN" in err
    assert "SALESPULSE_INGEST_BEHIND_AUTH_PROXY=true" in err
    assert len(err.splitlines()) == 1
    monkeypatch.setenv("SALESPULSE_INGEST_TOKEN", OPERATOR)
    assert main(["exporter"]) == 2  # the exporter's reads, likewise
    assert "SALESPULSE_READ_TOKEN" in capsys.readouterr().err


def test_metrics_basic_auth_needs_both_halves_and_long_secrets() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(metrics_username="prometheus")
    with pytest.raises(ValidationError, match="SALESPULSE_READ_TOKEN must be at least 16"):
        Settings(read_token="short")  # noqa: S106 - the refused value
    settings = Settings(metrics_username="prometheus", metrics_password=OPERATOR)
    assert settings.metrics_basic_auth() == ("prometheus", OPERATOR)
