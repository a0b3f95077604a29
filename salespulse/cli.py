"""The ``salespulse`` command: run the product (all roles or one), demo traffic, benchmark."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import msgspec
from pydantic import ValidationError

from handlers.spool import SpoolBusyError
from salespulse.app.demo_offices import LOCALES, MAX_SPEED, DemoOptions
from salespulse.core.access import UnsafeExposureError
from salespulse.core.errors import EmbeddedServiceError
from salespulse.core.logs import configure_logging
from salespulse.core.settings import Settings
from salespulse.core.tenants import TenantsFileError
from salespulse.core.tuning import tune_gc
from salespulse.dev.datasets import CONVERTERS, DEFAULT_TENANTS, Conversion

logger = logging.getLogger("salespulse")

_ROLE_COMMANDS = {
    "run": "ingest + exporter + worker stages as child processes (embedded broker/Redis if unset)",
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
        command.add_argument(
            "--demo-locale",
            choices=LOCALES,
            default="en",
            help="the demo office: en (USD), uk (a Ukrainian office in UAH), ru (RUB)",
        )
        command.add_argument(
            "--demo-speed",
            type=_demo_speed,
            default=1.0,
            help="the demo office's activity rate as a multiple of a real office's (1 to 100)",
        )
    replay = commands.add_parser(
        "replay", help="send a JSON-lines history through the running pipeline"
    )
    replay.add_argument("file", type=Path, help="canonical events or recorded webhooks, one a line")
    replay.add_argument("--url", default="http://127.0.0.1:8080", help="the ingest's base URL")
    replay.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="return once the worker has applied everything sent, read from the URL's "
        "/v1/applied (default: on when stdout is a terminal)",
    )
    replay.add_argument(
        "--wait-timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="give up waiting for the worker after this long (exit 1)",
    )
    dataset = commands.add_parser(
        "dataset", help="convert a public CRM data set into canonical events (JSON lines)"
    )
    dataset.add_argument("name", choices=sorted(CONVERTERS))
    dataset.add_argument("directory", type=Path, help="the data set's folder")
    dataset.add_argument("--tenant", help="tenant id for the events (default: the data set's)")
    dataset.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    commands.add_parser(
        "rebuild",
        help="rebuild the KPI store from crm.events, then switch to it at once",
        description="Re-consume crm.events from its earliest retained offset into a staging "
        "key set while reads continue, then switch atomically (deploy/RUNBOOK.md).",
    )
    bench = commands.add_parser("bench", help="measure throughput and latency, print a table")
    bench.add_argument("--events", type=_positive, default=200_000, help="events for the pipeline")
    bench.add_argument(
        "--naive-events", type=_positive, default=20_000, help="events for the naive faust baseline"
    )
    bench.add_argument("--partitions", type=_positive, default=8)
    bench.add_argument(
        "--open-deals",
        type=_positive,
        default=1_000_000,
        help="open deals for the state-memory figure",
    )
    bench.add_argument(
        "--runs", type=_positive, default=3, help="runs of path (a); the table shows the median"
    )
    bench.add_argument(
        "--replay",
        type=_positive,
        metavar="N",
        help="only a history replay of N events, end to end in `salespulse run` until applied",
    )
    bench.add_argument(
        "--ingest",
        type=_positive,
        metavar="N",
        help="only the HTTP ingest: N one-event requests to `salespulse ingest` and to `run`",
    )
    bench.add_argument(
        "--fold-only",
        action="store_true",
        help="only the worker's decode, fold and packing, KPI (per event type) and SLA stage "
        "(no broker, no Redis)",
    )
    soak = commands.add_parser(
        "soak", help="a steady event rate for N minutes: memory per process and Redis, slopes"
    )
    soak.add_argument("--minutes", type=_positive_float, default=10.0)
    soak.add_argument("--rate", type=_positive_float, default=50.0, help="events per second")
    soak.add_argument("--sample-every", type=_positive_float, default=20.0, help="seconds")
    return parser


def _demo_speed(text: str) -> float:
    value = _positive_float(text)
    if not 1 <= value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SPEED:g}, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def _positive(text: str) -> int:
    """argparse type of the benchmark's sizes: a clear usage error, not a traceback."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(_settings_problems(exc), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        if args.command == "replay":
            token = settings.ingest_token_value()
            wait = sys.stdout.isatty() if args.wait is None else bool(args.wait)
            return _replay(args.file, args.url, token, wait, args.wait_timeout)
        if args.command == "rebuild":
            return _rebuild(settings)
        if args.command == "dataset":
            return _dataset(args.name, args.directory, args.tenant, args.output)
        if args.command == "bench" and args.fold_only:
            from salespulse.dev.bench.fold import measure_fold
            from salespulse.dev.bench.sla_fold import measure_sla_fold

            tune_gc()  # as the worker process does
            print(*measure_fold(args.events, settings.batch_max_records), sep="\n")
            print(*measure_sla_fold(args.events, settings.batch_max_records), sep="\n")
            return 0
        if args.command == "bench" and args.ingest:
            from salespulse.dev.bench.ingest import run_ingest_bench

            return run_ingest_bench(args.ingest)
        if args.command == "bench" and args.replay:
            from salespulse.dev.bench.replay import run_replay

            return run_replay(args.replay)
        if args.command == "bench":
            from salespulse.dev.bench.table import run_benchmark

            try:
                return run_benchmark(
                    settings,
                    args.events,
                    args.naive_events,
                    args.partitions,
                    args.open_deals,
                    args.runs,
                )
            except KeyboardInterrupt:
                print("salespulse bench: interrupted", file=sys.stderr)
                return 130
        if args.command == "soak":
            from salespulse.dev.soak import run_soak

            return run_soak(settings, args.minutes, args.rate, args.sample_every)
        from salespulse.app.launcher import serve

        roles = None if args.command == "run" else [args.command]
        status = 0
        with contextlib.suppress(KeyboardInterrupt):
            demo = DemoOptions(args.demo_locale, args.demo_speed) if args.demo else None
            status = serve(settings, roles, demo=demo)
    except TenantsFileError as exc:
        print(f"salespulse: invalid tenants file:\n{exc}", file=sys.stderr)
        return 2
    except UnsafeExposureError as exc:
        print(f"salespulse: refusing to start: {exc}", file=sys.stderr)
        return 2
    except (EmbeddedServiceError, SpoolBusyError) as exc:
        print(f"salespulse: {exc}", file=sys.stderr)
        return 1
    return status


def _settings_problems(error: ValidationError) -> str:
    """One line per bad variable, without the values: one of them may be a secret."""
    lines = ["salespulse: invalid settings (SALESPULSE_* environment):"]
    for problem in error.errors(include_input=False, include_url=False):
        where = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        named = not where or message.startswith("SALESPULSE_")  # the validator named it
        lines.append(f"  {message}" if named else f"  SALESPULSE_{where}: {message}")
    return "\n".join(lines)


def _replay(path: Path, url: str, token: str | None, wait: bool, wait_timeout_s: float) -> int:
    from salespulse.dev.replay import AppliedUnknownError, IngestUnauthorizedError, replay

    if not path.is_file():
        print(f"salespulse replay: no such file: {path}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(
            replay(path, url, token=token, wait=wait, wait_timeout_s=wait_timeout_s)
        )
    except (IngestUnauthorizedError, AppliedUnknownError) as exc:
        print(f"salespulse replay: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"salespulse replay: sent, but the worker had not applied it all after "
            f"{wait_timeout_s:g}s (is `salespulse worker` running?)",
            file=sys.stderr,
        )
        return 1
    except aiohttp.ClientError as exc:
        print(f"salespulse replay: cannot reach the ingest at {url}: {exc}", file=sys.stderr)
        return 1
    print(summary.render())
    return 1 if summary.rejected else 0


def _rebuild(settings: Settings) -> int:
    """0 when switched; 2 when it cannot start (settings); 1 when it failed midway."""
    from streams.rebuild import RebuildError, rebuild_store

    if settings.kafka_bootstrap is None or settings.redis_url is None:
        print(
            "salespulse rebuild: set SALESPULSE_KAFKA_BOOTSTRAP and SALESPULSE_REDIS_URL to the "
            "broker and Redis the workers use (an embedded broker keeps no history to rebuild "
            "from)",
            file=sys.stderr,
        )
        return 2

    def progress(line: str) -> None:
        print(f"salespulse rebuild: {line}", file=sys.stderr, flush=True)

    try:
        summary = asyncio.run(rebuild_store(settings, settings.redis_url, progress))
    except RebuildError as exc:
        print(f"salespulse rebuild: {exc} (nothing switched)", file=sys.stderr)
        return 1
    print(summary.render())
    return 0


def _dataset(name: str, directory: Path, tenant: str | None, output: Path | None) -> int:
    convert = CONVERTERS[name]
    conversion = Conversion()
    try:
        events = convert(directory, tenant or DEFAULT_TENANTS[name], conversion)
        encoder = msgspec.json.Encoder()
        with output.open("wb") if output else contextlib.nullcontext(sys.stdout.buffer) as out:
            count = 0
            for event in events:
                out.write(encoder.encode(event) + b"\n")
                count += 1
    except FileNotFoundError as exc:
        print(f"salespulse dataset: {exc.filename}: not found", file=sys.stderr)
        return 2
    print(f"salespulse dataset: {count:,} events", file=sys.stderr)
    for line in conversion.render():
        print(f"salespulse dataset: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
