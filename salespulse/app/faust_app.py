"""The faust application and worker factory: the one module that builds them.

faust is the process framework (App, worker lifecycle, services, web server); the KPI hot
path is a batch consumer beside it, not a faust agent. Why, with the measurement:
docs/adr/0001-faust-as-process-framework-batch-consumer-hot-path.md.

What faust would do here for nothing is switched off: it is imported without reading the
command line or changing the environment (``faust_guard``), it takes no settings from the
environment, its own web pages do not answer on the product's port, and its worker leaves
logging and the terminal alone. Building an app has no side effects beyond the object.
"""

from __future__ import annotations

from mode import Service

from salespulse.app.faust_guard import hidden_from_faust
from salespulse.core.settings import Settings

with hidden_from_faust():
    from faust.app.base import App, BootStrategy
    from faust.web.base import BlueprintManager
    from faust.web.drivers.aiohttp import Web as AiohttpWeb
    from faust.worker import Worker

__all__ = ["AiohttpWeb", "App", "create_app", "create_worker", "faust_broker_url"]


def faust_broker_url(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` → faust's ``kafka://host1:9092;kafka://host2:9092``."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(",") if server)


def create_app(settings: Settings, bootstrap: str) -> App:
    """A faust App that owns the process: worker lifecycle, web server, timers.

    The KPI and SLA stages are services started beside it (the ADR above says why).
    """
    session = settings.kafka_session_timeout_s
    app = App(
        settings.app_id,
        # faust would otherwise let variables such as WEB_PORT or BROKER_URL override what
        # is given here (a Kubernetes service named "web" sets WEB_PORT=tcp://...): the
        # SALESPULSE_* settings are the only source.
        env={},
        broker=faust_broker_url(bootstrap),
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir / settings.app_id),
        web_enabled=True,
        web_host=settings.http_host,
        web_bind=settings.http_host,
        web_port=settings.http_port,
        topic_partitions=settings.topic_partitions,
        producer_acks=-1,
        broker_session_timeout=session,
        broker_heartbeat_interval=max(0.1, session / 5),
        broker_rebalance_timeout=session,
    )
    # Every Kafka client of ours is our own (salespulse/core/batch_stage.py, handlers/publisher.py).
    # faust's producer and consumer would only make a start need the broker (an ingest
    # could not start during a Kafka outage, to spool) and join a group of their own.
    app.boot_strategy = BootStrategy(app, enable_kafka=False)
    # faust mounts its own pages (/ status, /router/, /table/; /stats/ and /graph/ in debug)
    # on the web server it starts: they would answer on the product's port beside our
    # routes. An empty manager mounts none of them; our routes are added by compose.
    app.web.blueprints = BlueprintManager()
    return app


def create_worker(app: App, services: list[Service]) -> Worker:
    """The faust worker that runs ``app`` and ``services`` until SIGINT/SIGTERM.

    It keeps the process's logging as configured (salespulse.core.logs), prints nothing of
    its own to the terminal, and draws no spinner.
    """
    worker = Worker(
        app,
        *services,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    # faust creates its terminal spinner unconditionally (only its own logging setup would
    # drop it): it draws frames on a TTY, and at start-up its finish() writes backspaces and
    # a cursor escape code to stdout even when that is a file or a pipe.
    worker.spinner = None
    return worker
