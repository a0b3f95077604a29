"""The import contract: the tree's layers, read from the code's own imports (README, "Where
things are").

    salespulse/core     the kernel: events, settings, tenants, KPI catalogue and Redis layout
    handlers/           ingest: HTTP and CRM webhooks → the crm.events topic
    streams/            worker: crm.events → the Redis KPI store
    metrics/            read side: the Redis KPI store → Prometheus, the JSON API, the wall
    salespulse/app      composition: runtime wiring, embedded servers, demo, health
    salespulse/dev      tooling: bench, dataset converters, replay, soak, dashboards generator
    salespulse/cli.py   the command line, the one module that offers both app and dev

A layer may import itself and the layers it is allowed below; the three sides never import
each other (what they share is in the kernel, and the composition root hands each side what
it needs), the kernel imports none of ours, and the serving path (app) never pulls in
developer tooling.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUR_TOP_LEVEL = ("salespulse", "handlers", "streams", "metrics")
SIDES = ("handlers", "streams", "metrics")

ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "handlers": frozenset({"handlers", "core"}),
    "streams": frozenset({"streams", "core"}),
    "metrics": frozenset({"metrics", "core"}),
    "app": frozenset({"app", "core", *SIDES}),
    "dev": frozenset({"dev", "app", "core", *SIDES}),
    "cli": frozenset({"cli", "dev", "app", "core", *SIDES}),
    "package": frozenset({"package"}),
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to; None for a module in no layer."""
    parts = module.split(".")
    if parts[0] in SIDES:
        return parts[0]
    if parts[0] != "salespulse":
        return None
    if len(parts) == 1:
        return "package"  # salespulse/__init__.py: the version, nothing imported
    if parts[1] in ("core", "app", "dev"):
        return parts[1]
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return None


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of ours in one file, relative ones resolved.

    ``from salespulse import app`` names the layer in the imported name, so an import
    from the bare package is read as the names it takes from it."""
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + is_package]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if layer_of(target) in (None, "package"):
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.split(".")[0] in OUR_TOP_LEVEL]


def violations(root: Path) -> list[str]:
    problems: list[str] = []
    for top in OUR_TOP_LEVEL:
        for path in sorted((root / top).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            layer = layer_of(module)
            where = path.relative_to(root)
            if layer is None:
                problems.append(f"{where}: in no layer (put it under core, app or dev)")
                continue
            for line, target in imports_of(path, module):
                target_layer = layer_of(target)
                if target_layer is not None and target_layer not in ALLOWED[layer]:
                    problems.append(f"{where}:{line}: {layer} imports {target} ({target_layer})")
    return problems


def test_the_code_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def test_every_module_is_in_a_layer() -> None:
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for top in OUR_TOP_LEVEL
        for path in (ROOT / top).rglob("*.py")
    ]
    assert len(modules) > 100
    assert [m for m in modules if layer_of(m) is None] == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_check_catches_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    """The contract test can fail: every rule is broken once in a small tree."""
    root = _tree(
        tmp_path,
        {
            "salespulse/__init__.py": "",
            "salespulse/core/__init__.py": "",
            "salespulse/core/events.py": "from streams.fold import x\nfrom .. import dev\n",
            "salespulse/core/settings.py": "from salespulse import app\n",
            "salespulse/app/compose.py": "import salespulse.dev.bench\n",
            "salespulse/dev/bench.py": "from salespulse.cli import main\n",
            "salespulse/cli.py": "from salespulse.dev.bench import run\n",
            "salespulse/stray.py": "",
            "handlers/webhooks.py": "from metrics.read import waiting\n",
            "streams/fold.py": "from handlers.publisher import KafkaPublisher\n",
            "streams/rebuild.py": "from . import fold\nfrom ..metrics import exposition\n",
            "metrics/exposition.py": "from salespulse.core.events import CrmEvent\n",
        },
    )
    expected = [
        "salespulse/stray.py: in no layer (put it under core, app or dev)",
        "salespulse/app/compose.py:1: app imports salespulse.dev.bench (dev)",
        "salespulse/core/events.py:1: core imports streams.fold (streams)",
        "salespulse/core/events.py:2: core imports salespulse.dev (dev)",
        "salespulse/core/settings.py:1: core imports salespulse.app (app)",
        "salespulse/dev/bench.py:1: dev imports salespulse.cli (cli)",
        "handlers/webhooks.py:1: handlers imports metrics.read (metrics)",
        "streams/fold.py:1: streams imports handlers.publisher (handlers)",
        "streams/rebuild.py:2: streams imports metrics (metrics)",
    ]
    assert sorted(violations(root)) == sorted(expected)
