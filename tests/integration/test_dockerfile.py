"""The Dockerfile and .dockerignore, read as Docker reads them (no Docker engine here).

Stages, the non-root user, the CLI the entry point names, what the build context holds,
and the HEALTHCHECK command itself, run against a real /healthz.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from salespulse.app.embedded import free_port
from salespulse.app.health import Readiness
from salespulse.cli import build_parser
from tests.integration.deploy_support import (
    ROOT,
    Stage,
    dockerfile_stages,
    dockerignore_included,
    exec_form,
    settings_field_names,
    settings_from,
)

pytestmark = pytest.mark.integration

BASE_IMAGE = "python:3.11-slim"
IGNORE_RULES = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_a_builder_stage_makes_the_venv_and_the_runtime_stage_only_copies_it(stages):
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert {stage.image for stage in stages} == {BASE_IMAGE}
    assert any("pip wheel" in run for run in builder.all("RUN")), "the builder makes a wheel"
    copies = final.all("COPY")
    assert copies
    assert all(copy.startswith("--from=builder ") for copy in copies)
    assert not any("build-essential" in run for run in final.all("RUN")), "no compiler at runtime"


def test_the_runtime_runs_as_a_fixed_non_root_user(runtime):
    user = runtime.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    [adduser] = [run for run in runtime.all("RUN") if "useradd" in run]
    assert f"--uid {uid}" in adduser
    assert f"--gid {gid}" in adduser
    # Nothing after USER switches back.
    names = [name for name, _ in runtime.instructions]
    assert "RUN" not in names[names.index("USER") :]


def test_entrypoint_is_the_salespulse_script_and_every_role_is_a_cli_command(runtime):
    assert exec_form(runtime.last("ENTRYPOINT") or "") == ["salespulse"]
    assert PYPROJECT["project"]["scripts"]["salespulse"] == "salespulse.cli:main"
    [default] = exec_form(runtime.last("CMD") or "")
    parser = build_parser()
    for command in (default, "ingest", "worker", "exporter"):
        assert parser.parse_args([command]).command == command
    with pytest.raises(SystemExit):
        parser.parse_args(["no-such-role"])


def test_the_image_environment_is_valid_settings_listening_beyond_loopback(runtime, monkeypatch):
    env = runtime.env()
    ours = {k: v for k, v in env.items() if k.startswith("SALESPULSE_")}
    assert set(ours) <= settings_field_names(), set(ours) - settings_field_names()
    settings = settings_from(ours, monkeypatch)
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - other containers must reach it
    assert f"EXPOSE {settings.http_port}" in {f"EXPOSE {a}" for a in runtime.all("EXPOSE")}
    assert str(settings.data_dir) == runtime.last("WORKDIR")


def test_the_build_context_holds_the_sources_and_nothing_else(stages):
    builder = stages[0]
    sources = [
        source
        for copy in builder.all("COPY")
        if not copy.startswith("--from=")
        for source in copy.split()[:-1]
    ]
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= set(sources), "every package is copied"
    assert PYPROJECT["project"]["readme"] in sources
    assert "pyproject.toml" in sources
    assert "constraints.txt" in sources, "the image installs the tested versions"
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                assert not dockerignore_included(IGNORE_RULES, relative)
                continue
            assert dockerignore_included(IGNORE_RULES, relative), f"{relative} left out"
    for outside in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "deploy/README.md"):
        assert not dockerignore_included(IGNORE_RULES, outside), outside


@pytest.fixture
async def healthz_port() -> AsyncIterator[int]:
    app = web.Application()
    app.add_routes(Readiness("127.0.0.1:1", None).routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_the_healthcheck_command_passes_on_a_live_healthz_and_fails_without(
    runtime, healthz_port
):
    healthcheck = runtime.last("HEALTHCHECK") or ""
    assert " CMD " in f" {healthcheck} "
    options, _, command = healthcheck.partition(" CMD ")
    assert "--start-period=" in options
    assert "--timeout=" in options

    def run(port: int) -> int:
        env = {"PATH": "/usr/bin:/bin", "SALESPULSE_HTTP_PORT": str(port)}
        # The image's python is the venv's; here, the one running the tests.
        assert command.startswith("python -c ")
        shell = f"{sys.executable} {command.removeprefix('python ')}"
        return subprocess.run(["/bin/sh", "-c", shell], env=env, check=False).returncode

    assert await asyncio.to_thread(run, healthz_port) == 0
    assert await asyncio.to_thread(run, free_port()) != 0
