"""Start a SalesPulse process: embedded broker/Redis when unconfigured, then the faust worker."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

from handlers.spool import DiskSpool
from metrics.exposition import RemoteExposition
from salespulse.app.compose import Role, Stage, build_runtime
from salespulse.app.demo import WALL_TOKEN, DemoTraffic
from salespulse.app.demo_offices import DEMO_TENANTS, DemoOptions, write_demo_tenants
from salespulse.app.embedded import free_port, start_broker, start_redis
from salespulse.app.faust_app import create_worker
from salespulse.app.worker_process import WorkerProcess, WorkerWatch
from salespulse.core.logs import configure_logging
from salespulse.core.settings import Settings
from salespulse.core.tuning import tune_gc

logger = logging.getLogger(__name__)

__all__ = ["DEMO_TENANTS", "serve"]


def serve(
    settings: Settings, roles: Iterable[str] | None, *, demo: DemoOptions | None = None
) -> int:
    """Run until SIGINT/SIGTERM. ``roles=None`` means all three roles; ``demo``: also post
    the demo office's traffic (and, without a tenants file, use the demo's)."""
    configure_logging(settings.log_level)
    chosen = [Role(r) for r in roles] if roles is not None else list(Role)
    with contextlib.ExitStack() as stack:
        updates: dict[str, object] = {}
        embedded: list[str] = []
        if settings.kafka_bootstrap is None or settings.redis_url is None:
            workdir = Path(tempfile.mkdtemp(prefix="salespulse-embedded-"))
            if settings.kafka_bootstrap is None:
                broker = stack.enter_context(start_broker(workdir))
                updates["kafka_bootstrap"] = f"127.0.0.1:{broker.port}"
                embedded.append(f"broker (Tansu, in-memory) 127.0.0.1:{broker.port}")
            if settings.redis_url is None:
                # AOF under the data dir: with SALESPULSE_DATA_DIR set, KPIs survive a restart
                # (the new in-memory broker's events count: streams/store_guard.py).
                explicit = "data_dir" in settings.model_fields_set
                aof_dir = (settings.data_dir if explicit else workdir / "data") / "redis"
                redis_process = stack.enter_context(start_redis(workdir, aof_dir=aof_dir))
                updates["redis_url"] = f"redis://127.0.0.1:{redis_process.port}/0"
                embedded.append(f"redis-server 127.0.0.1:{redis_process.port} (AOF {aof_dir})")
            if "http_port" not in settings.model_fields_set and _port_busy(settings.http_port):
                updates["http_port"] = free_port()
            if "data_dir" not in settings.model_fields_set:  # SALESPULSE_DATA_DIR wins
                updates["data_dir"] = workdir / "data"
        if demo is not None and settings.tenants_file is None:
            demo_dir = Path(tempfile.mkdtemp(prefix="salespulse-demo-"))
            updates["tenants_file"] = write_demo_tenants(demo.locale, demo_dir)
        settings = settings.model_copy(update=updates)
        (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
        spool = None
        if Role.INGEST in chosen and settings.spool_max_bytes > 0:
            # Opened before anything starts, so that a busy directory is a one-line error.
            spool = DiskSpool(settings.data_dir / "spool", settings.spool_max_bytes)
            stack.callback(spool.close)
        workers: list[WorkerProcess] = []
        watch = None
        if Role.WORKER in chosen and len(chosen) > 1 and settings.worker_process:
            workers = [WorkerProcess(settings, stage) for stage in Stage]
            chosen.remove(Role.WORKER)
        runtime = build_runtime(
            settings,
            chosen,
            spool=spool,
            worker_metrics=[_worker_metrics(stage, settings) for stage in workers],
        )
        base = f"http://{settings.http_host}:{settings.http_port}"
        services = list(runtime.services)
        for stage_process in workers:
            # Started once everything they share has been checked (tenants file, ports),
            # stopped after the parent's own services (the callbacks run last).
            stage_process.start()
            stack.callback(stage_process.stop)
        for stage_process in workers:
            stage_process.wait_healthy()
        if workers:
            services.append(watch := WorkerWatch(workers))
        if demo is not None:
            token = settings.ingest_token_value()
            services.append(
                DemoTraffic(f"{base}/v1/events", token=token, locale=demo.locale, speed=demo.speed)
            )

        lines = ["", "SalesPulse is running."]
        lines += [f"  embedded   {item}" for item in embedded]
        if Role.INGEST in chosen:
            lines.append(f"  ingest     POST {base}/v1/events")
        if Role.EXPORTER in chosen:
            tenant = "demo" if demo is not None else "<tenant>"
            lines.append(
                f"  kpis       GET  {base}/v1/kpis?tenant={tenant}&window=today&by=manager"
            )
            lines.append(f"  waiting    GET  {base}/v1/waiting?tenant={tenant}")
            token = WALL_TOKEN if demo is not None else "<screen token>"
            lines.append(f"  wall       GET  {base}/wall?tenant={tenant}&token={token}")
        lines.append(f"  metrics    GET  {base}/metrics")
        lines.append(f"  health     GET  {base}/healthz")
        if demo is not None:
            lines.append(
                f"  demo       posting the {demo.locale} demo office's traffic for tenant 'demo'"
            )
        lines += ["Ctrl-C stops everything.", ""]

        async def announce() -> None:
            print("\n".join(lines), flush=True)  # noqa: T201 - the URLs are for the person

        runtime.app.task(announce, on_leader=False)
        worker = create_worker(runtime.app, services)
        tune_gc()
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = int(exc.code or 0) if isinstance(exc.code, int | None) else 1
            return 1 if watch is not None and watch.failed else code
    return 1 if watch is not None and watch.failed else 0


def _worker_metrics(worker: WorkerProcess, settings: Settings) -> RemoteExposition:
    """A worker stage process's /metrics, asked with the credentials it asks for."""
    headers = {}
    if settings.metrics_token is not None:
        headers["Authorization"] = f"Bearer {settings.metrics_token.get_secret_value()}"
    elif (basic := settings.metrics_basic_auth()) is not None:
        credentials = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {credentials}"
    return RemoteExposition(worker.metrics_url, headers)


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
