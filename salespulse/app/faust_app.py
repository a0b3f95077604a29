"""The faust application factory. Building an app has no side effects beyond the object."""

from __future__ import annotations

import faust
from faust.app.base import BootStrategy
from faust.web.base import BlueprintManager

from salespulse.core.settings import Settings


def faust_broker_url(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` → faust's ``kafka://host1:9092;kafka://host2:9092``."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(",") if server)


def create_app(settings: Settings, bootstrap: str) -> faust.App:
    """A faust App that owns the process: worker lifecycle, web server, timers.

    The KPI agent itself is a service started beside it (streams.kpi_consumer explains why).
    """
    session = settings.kafka_session_timeout_s
    app = faust.App(
        settings.app_id,
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
    # Every Kafka client of ours is our own (streams/kpi_consumer.py, handlers/publisher.py).
    # faust's producer and consumer would only make a start need the broker (an ingest
    # could not start during a Kafka outage, to spool) and join a group of their own.
    app.boot_strategy = BootStrategy(app, enable_kafka=False)
    # faust mounts its own pages (/ status, /router/, /table/; /stats/ and /graph/ in debug)
    # on the web server it starts: they would answer on the product's port beside our
    # routes. An empty manager mounts none of them; our routes are added by compose.
    app.web.blueprints = BlueprintManager()
    return app
