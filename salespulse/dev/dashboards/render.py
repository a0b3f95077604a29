"""Every dashboard as the text of its JSON file, and writing or checking them on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

from salespulse.dev.dashboards.operations import pipeline_health, response_time
from salespulse.dev.dashboards.panels import Json
from salespulse.dev.dashboards.sales import DEFAULT_CURRENCY, funnel, managers, overview

# File name → builder; the order is the order of the boards' links.
BOARDS: Final[dict[str, Callable[[], Json]]] = {
    "sales-overview.json": overview,
    "funnel.json": funnel,
    "response-time.json": response_time,
    "managers.json": managers,
    "pipeline-health.json": pipeline_health,
}


# The boards with money panels, built for one currency.
PRICED: Final[dict[str, Callable[[str], Json]]] = {
    "sales-overview.json": overview,
    "managers.json": managers,
}


def rendered(currency: str = DEFAULT_CURRENCY) -> dict[str, str]:
    """File name → JSON text: two-space indent, keys in the order built, final newline."""
    return {
        name: json.dumps(
            PRICED[name](currency) if name in PRICED else build(), indent=2, ensure_ascii=False
        )
        + "\n"
        for name, build in BOARDS.items()
    }


def write(directory: Path, currency: str = DEFAULT_CURRENCY) -> list[Path]:
    """Write every board; remove no other file. Returns the paths whose text changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in rendered(currency).items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
