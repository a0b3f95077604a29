"""``python -m salespulse.dev.redis_layout_doc [FILE]``: write docs/redis-layout.md from
the docstring of salespulse/core/kpi/redis_layout.py (make redis-layout-doc).

The table of keys lives beside the code that names them, where a change to a key is
seen; the Markdown copy is for readers of the docs, and a unit test fails when the two
differ (tests/unit/test_redis_layout_doc.py).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

from salespulse.core.kpi import redis_layout

DEFAULT_FILE = Path("docs/redis-layout.md")
SOURCE = "salespulse/core/kpi/redis_layout.py"
COMMAND = "make redis-layout-doc"


def rendered() -> str:
    """The Markdown document: a title, where it comes from, then the docstring."""
    doc = inspect.cleandoc(redis_layout.__doc__ or "")
    header = (
        "# Redis layout\n\n"
        f"<!-- Generated from the docstring of {SOURCE} by `{COMMAND}`: edit the docstring,"
        " not this file. -->\n\n"
    )
    return f"{header}{doc}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m salespulse.dev.redis_layout_doc",
        description=f"Write the Redis layout document from {SOURCE}.",
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    args = parser.parse_args(argv)
    text = rendered()
    path: Path = args.file
    if path.exists() and path.read_text(encoding="utf-8") == text:
        sys.stderr.write(f"{path} is up to date\n")
        return 0
    path.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
