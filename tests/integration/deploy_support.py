"""Readers for the deploy files, as the tools that load them read them.

Docker's Dockerfile and .dockerignore rules, Compose's .env files and ``${VAR}``
interpolation, and the SALESPULSE_* environment a container ends up with. Only the
parts our files use are implemented; anything else fails loudly rather than being guessed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from salespulse.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_PREFIX = "SALESPULSE_"


# --- Dockerfile -------------------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for name, args in self.instructions if name == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV key=value pairs of this stage (quotes removed as the shell would)."""
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {pair!r}: only the key=value form is supported"
                values[key] = value
        return values


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped by Docker too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_stages(path: Path) -> list[Stage]:
    """Build stages in order; FROM images have their ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, arguments in dockerfile_instructions(path.read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, stage))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction argument."""
    parsed = yaml.safe_load(arguments)
    assert isinstance(parsed, list), arguments
    return [str(argument) for argument in parsed]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    wildcards = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    parts = [wildcards.get(t, re.escape(t)) for t in re.split(r"(\*\*|\*|\?)", pattern)]
    return re.compile("".join(parts) + r"\Z")


def dockerignore_included(rules_text: str, relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a parent dir."""
    rules = []
    for line in rules_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _glob_regex(line.lstrip("!").strip("/"))))
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            included = negated
    return included


# --- Compose ---------------------------------------------------------------------------


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=value lines; comments and blank lines skipped; surrounding quotes removed."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}: bad name {key!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


class MissingVariableError(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty."""


def interpolate(value: Any, env: Mapping[str, str], missing: list[str] | None = None) -> Any:
    """Compose's interpolation of every string in a loaded YAML document.

    ``missing`` collects required variables that are not set (instead of raising).
    """
    if isinstance(value, dict):
        return {key: interpolate(item, env, missing) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, missing) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if op in (":-", "-"):
            use_default = current is None or (op == ":-" and current == "")
            return arg if use_default else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                if missing is None:
                    raise MissingVariableError(f"{name}: {arg}")
                missing.append(name)
                return ""
            return current
        return current or ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def variables_used(text: str) -> set[str]:
    return {m.group("name") or m.group("bare") for m in _VARIABLE.finditer(text)}


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    document = interpolate(raw, env)
    assert isinstance(document, dict)
    return document


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's ``environment`` as a mapping (list form ``K=V`` too)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# --- SalesPulse settings ------------------------------------------------------------------


def settings_field_names() -> set[str]:
    return {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


def settings_from(environment: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process with exactly this SALESPULSE_* environment would build."""
    with monkeypatch.context() as patch:
        for name, value in environment.items():
            if name.startswith(ENV_PREFIX):
                patch.setenv(name, value)
        return Settings()


def yaml_documents(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text()):
        if document is not None:
            assert isinstance(document, dict), path
            yield document
