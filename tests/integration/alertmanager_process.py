"""A real Alertmanager on free loopback ports, and a webhook receiver that records what it sends."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from salespulse.app.embedded import LocalProcess, free_port, wait_until
from salespulse.core.errors import EmbeddedServiceError

JsonObject = dict[str, Any]


def alertmanager_binary() -> str:
    # Debian installs the server as prometheus-alertmanager; upstream builds call it alertmanager.
    found = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
    assert found, "alertmanager missing: `make test` installs the Debian prometheus-alertmanager"
    return found


@dataclass
class Alertmanager:
    process: LocalProcess

    @property
    def port(self) -> int:
        return self.process.port

    def post_alerts(self, alerts: list[JsonObject]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        # The URL is ours, http://127.0.0.1 (S310 only sees a Request object).
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.status == 200, response.read()

    def alerts(self) -> list[JsonObject]:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/api/v2/alerts", timeout=5
        ) as response:
            found: list[JsonObject] = json.load(response)
            return found

    def status(self) -> JsonObject:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/api/v2/status", timeout=5
        ) as response:
            found: JsonObject = json.load(response)
            return found


@contextmanager
def running_alertmanager(config: Path, workdir: Path) -> Iterator[Alertmanager]:
    """Start Alertmanager on `config`, wait for /-/ready, stop it afterwards."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        alertmanager_binary(),
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port, no HA peers
        "--log.level=debug",
    ]
    with LocalProcess("alertmanager", argv, port, workdir) as process:
        process.wait_ready()
        manager = Alertmanager(process)
        try:
            wait_until(lambda: _ready(port), 20, "Alertmanager /-/ready")
        except EmbeddedServiceError as exc:
            raise AssertionError(f"{exc}: {process.log_tail()}") from None
        yield manager


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Notification:
    receiver_path: str
    body: JsonObject

    def alert_labels(self) -> list[dict[str, str]]:
        return [alert["labels"] for alert in self.body["alerts"]]


@dataclass
class WebhookReceiver:
    """Records every notification Alertmanager posts; the URL path names the receiver."""

    port: int
    notifications: list[Notification] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, receiver: str) -> str:
        return f"http://127.0.0.1:{self.port}/{receiver}"

    def record(self, path: str, body: JsonObject) -> None:
        with self._lock:
            self.notifications.append(Notification(path.lstrip("/"), body))

    def received(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver: WebhookReceiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            assert receiver is not None
            receiver.record(self.path, json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the notifications are asserted on, not logged."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
