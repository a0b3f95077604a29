"""faust reads no command line and changes no environment of ours; our modules read neither
at import.

``import faust`` looks through ``sys.argv`` for ``--datadir``/``-L``/``--loop`` and writes
``FAUST_DATADIR``/``FAUST_LOOP``; faust's settings take ``WEB_PORT`` and the like from the
environment over what the app is given. A fresh interpreter shows it: faust is imported
once per process, so only a process of its own sees the first import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("salespulse", "handlers", "streams", "metrics")

BUILD_THE_APP = textwrap.dedent(
    """
    import json, os, sys

    sys.argv = ["salespulse", "--datadir=/tmp/faust-was-here", "-L", "aio", "run"]
    argv, environ = list(sys.argv), dict(os.environ)

    from salespulse.app.compose import Role, build_runtime
    from salespulse.core.settings import Settings

    settings = Settings(
        kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9/0", http_port=18080
    )
    runtime = build_runtime(settings, list(Role))
    changed = sorted(
        name for name in set(environ) | set(os.environ) if environ.get(name) != os.environ.get(name)
    )
    print(json.dumps({
        "changed": changed,
        "argv_kept": sys.argv == argv,
        "datadir": str(runtime.app.conf.datadir),
        "web_port": runtime.app.conf.web_port,
    }))
    """
)


def test_building_the_app_leaves_argv_and_environment_alone(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SALESPULSE_")}
    env["SALESPULSE_DATA_DIR"] = str(tmp_path)
    # What a Kubernetes service named "web" puts into every pod's environment.
    env["WEB_PORT"] = "tcp://10.0.0.1:80"
    result = subprocess.run(
        [sys.executable, "-c", BUILD_THE_APP],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "changed": [],
        "argv_kept": True,
        "datadir": str(tmp_path / "salespulse"),
        "web_port": 18080,
    }


def _import_time_reads(path: Path) -> list[str]:
    """``os.environ``/``os.getenv``/``sys.argv`` used where the module's import runs it:
    module and class bodies, decorators and default values, not function bodies."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for part in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
                if part is not None:
                    visit(part)
            return
        if isinstance(node, ast.Lambda):
            for part in (*node.args.defaults, *node.args.kw_defaults):
                if part is not None:
                    visit(part)
            return
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = f"{node.value.id}.{node.attr}"
            if name in ("os.environ", "os.getenv", "sys.argv"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "sys"):
            found.extend(
                f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}"
                for alias in node.names
                if alias.name in ("environ", "getenv", "argv")
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_our_modules_read_no_environment_or_argv_at_import() -> None:
    """Settings are read by the settings object when it is built, not as a module loads."""
    modules = [path for package in OUR_PACKAGES for path in (ROOT / package).rglob("*.py")]
    assert len(modules) > 50
    assert [read for path in modules for read in _import_time_reads(path)] == []
