"""The ``salespulse`` command: run the product (all roles or one), demo traffic, benchmark."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from salespulse.errors import EmbeddedServiceError
from salespulse.settings import Settings
from salespulse.tenants import TenantsFileError

logger = logging.getLogger("salespulse")

_ROLE_COMMANDS = {
    "run": "ingest + worker + exporter in one process (embedded broker/Redis when unset)",
    "ingest": "only the HTTP ingest (POST /v1/events)",
    "worker": "only the KPI worker (crm.events → Redis)",
    "exporter": "only the KPI exporter (GET /metrics from Redis)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salespulse", description="Real-time sales KPIs from CRM webhooks."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in _ROLE_COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--demo", action="store_true", help="also post realistic demo traffic to the ingest"
        )
    bench = commands.add_parser("bench", help="measure throughput and latency, print a table")
    bench.add_argument("--events", type=int, default=200_000, help="events for the pipeline")
    bench.add_argument(
        "--naive-events", type=int, default=20_000, help="events for the naive faust baseline"
    )
    bench.add_argument("--partitions", type=int, default=8)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"salespulse: invalid settings (SALESPULSE_* environment):\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "bench":
            from salespulse.bench import run_benchmark

            return run_benchmark(settings, args.events, args.naive_events, args.partitions)
        from salespulse.launcher import serve

        roles = None if args.command == "run" else [args.command]
        status = 0
        with contextlib.suppress(KeyboardInterrupt):
            status = serve(settings, roles, demo=args.demo)
    except TenantsFileError as exc:
        print(f"salespulse: invalid tenants file:\n{exc}", file=sys.stderr)
        return 2
    except EmbeddedServiceError as exc:
        print(f"salespulse: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
