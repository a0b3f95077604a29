"""``python -m salespulse.dev.dashboards [DIR]``: write the dashboards' JSON (make dashboards)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from salespulse.dev.dashboards.render import write
from salespulse.dev.dashboards.sales import DEFAULT_CURRENCY, money_unit

DEFAULT_DIRECTORY = Path("deploy/grafana/dashboards")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m salespulse.dev.dashboards", description="Write the Grafana dashboards."
    )
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument(
        "--currency",
        default=DEFAULT_CURRENCY,
        help="ISO 4217 code of the money panels' unit: the tenants' currency (default USD)",
    )
    args = parser.parse_args(argv)
    try:
        money_unit(args.currency)
    except ValueError as exc:
        parser.error(str(exc))
    changed = write(args.directory, args.currency)
    for path in changed:
        sys.stderr.write(f"wrote {path}\n")
    sys.stderr.write(f"{len(changed)} dashboard(s) changed in {args.directory}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
