"""deploy/docker-compose.yml: valid Compose, and every address and setting lines up.

Validated against the Compose Specification's JSON schema (tests/schemas/), after
interpolation with deploy/.env.example as `docker compose` does it. Then the wiring:
SALESPULSE_* settings per role, Kafka and Redis addresses, Prometheus targets, Grafana and
Alertmanager files, ports and health checks.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES
from salespulse.cli import build_parser
from salespulse.core.access import refuse_open_doors
from salespulse.core.tenants import TenantDirectory, load_tenants
from tests.integration.deploy_support import (
    DEPLOY,
    ROOT,
    MissingVariableError,
    dockerfile_stages,
    environment_of,
    host_port,
    interpolate,
    load_compose,
    read_dotenv,
    settings_field_names,
    settings_from,
    variables_used,
)

pytestmark = pytest.mark.integration

COMPOSE_TEXT = (DEPLOY / "docker-compose.yml").read_text()
ENV_EXAMPLE = read_dotenv(DEPLOY / ".env.example")
REQUIRED_BY_USER = {"GRAFANA_ADMIN_PASSWORD", "SALESPULSE_INGEST_TOKEN", "SALESPULSE_READ_TOKEN"}
USER_SECRETS = {
    "GRAFANA_ADMIN_PASSWORD": "test-only",
    "SALESPULSE_INGEST_TOKEN": "test-only-ingest-token",
    "SALESPULSE_READ_TOKEN": "test-only-read-token",
}
ROLES = {"salespulse-ingest": "ingest", "salespulse-worker": "worker"}
ROLES["salespulse-exporter"] = "exporter"
IMAGE_ENV = dockerfile_stages(ROOT / "Dockerfile")[-1].env()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose({**ENV_EXAMPLE, **USER_SECRETS})


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def process_env(service: dict[str, Any]) -> dict[str, str]:
    """What a SalesPulse container sees: the image's ENV, then the service's environment."""
    return {**IMAGE_ENV, **environment_of(service)}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host path (relative to deploy/) of the bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The file behind a container path, through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in sorted(mounts(service).items(), key=lambda m: -len(m[0])):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            if not source.startswith((".", "/")):
                return None  # a named volume
            return (DEPLOY / source / path.relative_to(target)).resolve()
    return None


def listening_ports(name: str, service: dict[str, Any]) -> set[int]:
    """Where a service accepts connections, read from its own configuration."""
    if name in ROLES:
        return {int(process_env(service)["SALESPULSE_HTTP_PORT"])}
    env = environment_of(service)
    if "KAFKA_ADVERTISED_LISTENERS" in env:
        return {host_port(a)[1] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    command = service.get("command", [])
    if command and command[0] == "redis-server":
        return {int(command[command.index("--port") + 1])}
    # Prometheus, Alertmanager, Grafana: the port their health check reaches.
    url = service["healthcheck"]["test"][-1]
    return {int(url.split("://", 1)[1].split("/", 1)[0].rpartition(":")[2])}


def test_compose_file_is_valid_against_the_compose_spec_schema(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_catches_a_broken_file(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    broken = {**compose, "services": {**compose["services"], "redis": {"imagee": "redis"}}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_every_variable_is_documented_in_env_example_and_only_the_secrets_are_required():
    used = variables_used(COMPOSE_TEXT)
    assert used <= set(ENV_EXAMPLE), f"undocumented: {used - set(ENV_EXAMPLE)}"
    assert set(ENV_EXAMPLE) <= used, f"documented but unused: {set(ENV_EXAMPLE) - used}"
    missing: list[str] = []
    interpolate(yaml.safe_load(COMPOSE_TEXT), ENV_EXAMPLE, missing)
    assert set(missing) == REQUIRED_BY_USER
    with pytest.raises(MissingVariableError):
        load_compose(ENV_EXAMPLE)


def test_kafka_cluster_id_is_a_base64_uuid(services):
    cluster_id = environment_of(services["kafka"])["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


@pytest.mark.parametrize("name", sorted(ROLES))
def test_each_role_gets_valid_complete_settings(services, name, monkeypatch):
    service = services[name]
    assert build_parser().parse_args(service["command"]).command == ROLES[name]
    env = process_env(service)
    ours = {key for key in env if key.startswith("SALESPULSE_")}
    assert ours <= settings_field_names(), f"not a setting: {ours - settings_field_names()}"
    settings = settings_from(env, monkeypatch)
    # Unset broker or Redis would mean "start embedded ones": not in this image.
    assert settings.kafka_bootstrap
    assert settings.redis_url
    assert settings.tenants_file
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - reached from other containers
    # The tenants file is mounted where the setting says, and is a valid tenants file.
    tenants = host_path(service, str(settings.tenants_file))
    assert tenants is not None, "the tenants file is not mounted"
    assert tenants.is_file(), tenants
    assert load_tenants(tenants).tenants
    assert settings.webhook_public_url == ""  # empty means unset for the webhooks


@pytest.mark.parametrize("name", sorted(ROLES))
def test_no_role_would_serve_an_open_door_beyond_loopback(services, name, monkeypatch):
    service = services[name]
    settings = settings_from(process_env(service), monkeypatch)
    tenants_file = host_path(service, str(settings.tenants_file))
    assert tenants_file is not None
    tenants = TenantDirectory(load_tenants(tenants_file))
    # What build_runtime checks before it listens: it raises on an open door.
    refuse_open_doors(
        settings,
        tenants,
        serves_ingest=ROLES[name] == "ingest",
        serves_reads=ROLES[name] == "exporter",
    )
    assert not settings.ingest_behind_auth_proxy
    assert not settings.reads_behind_auth_proxy
    # The tokens go to the role that asks for them, not to every container.
    assert (settings.ingest_token is not None) == (ROLES[name] == "ingest")
    assert (settings.read_token is not None) == (ROLES[name] == "exporter")


def test_roles_share_one_consumer_group_and_workers_fit_the_partitions(services, monkeypatch):
    settings = {name: settings_from(process_env(services[name]), monkeypatch) for name in ROLES}
    assert len({s.consumer_group for s in settings.values()}) == 1
    assert len({s.topic_partitions for s in settings.values()}) == 1
    workers = services["salespulse-worker"]["deploy"]["replicas"]
    assert workers == 2
    partitions = settings["salespulse-worker"].topic_partitions
    assert partitions >= 2 * workers, "room to scale the workers out"
    kafka_default = int(environment_of(services["kafka"])["KAFKA_NUM_PARTITIONS"])
    assert kafka_default == partitions
    assert services["salespulse-exporter"].get("deploy", {}).get("replicas", 1) == 1


def test_the_bootstrap_servers_are_kafkas_advertised_listener(services, monkeypatch):
    for name in ROLES:
        bootstrap = settings_from(process_env(services[name]), monkeypatch).kafka_bootstrap
        assert bootstrap
        for server in bootstrap.split(","):
            host, port = host_port(server)
            kafka = environment_of(services[host])
            advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
            [listener] = [a for a in advertised if a.split("://")[1] == server]
            listener_name = listener.split("://")[0]
            listening = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
            assert host_port(listening[listener_name])[1] == port
            assert listener_name not in kafka["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
            assert "kafka" in {d for d in services[name].get("depends_on", {})}


def test_the_redis_url_is_the_redis_service(services, monkeypatch):
    for name in ("salespulse-worker", "salespulse-exporter"):
        url = settings_from(process_env(services[name]), monkeypatch).redis_url
        assert url
        host, port = host_port(url.split("://", 1)[1].split("/", 1)[0])
        assert port in listening_ports(host, services[host])
        command = services[host]["command"]
        assert "noeviction" in command, "KPI state must never be evicted"
        assert command[command.index("--hash-max-listpack-entries") + 1] == str(
            HASH_LISTPACK_ENTRIES
        )
        assert services[name]["depends_on"][host]["condition"] == "service_healthy"


def test_every_service_has_a_health_check_and_salespulse_checks_readiness(services):
    for name, service in services.items():
        assert "healthcheck" in service, name
    for name in ROLES:
        [url] = [w for w in services[name]["healthcheck"]["test"][-1].split("'") if "://" in w]
        assert url.endswith("/readyz")
        assert host_port(url.split("://")[1].split("/")[0])[1] in listening_ports(
            name, services[name]
        )


def prometheus_config(services) -> tuple[dict[str, Any], Path]:
    prometheus = services["prometheus"]
    [flag] = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    path = host_path(prometheus, flag.split("=", 1)[1])
    assert path == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return config, path


def test_prometheus_targets_are_services_on_the_ports_they_listen_on(services):
    config, _ = prometheus_config(services)
    targets: list[tuple[str, int]] = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets += [host_port(t) for t in static["targets"]]
        for dns in job.get("dns_sd_configs", []):
            targets += [(n, dns["port"]) for n in dns["names"]]
    for alerting in config.get("alerting", {}).get("alertmanagers", []):
        for static in alerting.get("static_configs", []):
            targets += [host_port(t) for t in static["targets"]]
    assert {h for h, _ in targets} >= set(ROLES)
    for host, port in targets:
        assert host in services, f"no service {host}"
        assert port in listening_ports(host, services[host]), (host, port)
    # Workers are several processes: each must be its own target, not one address.
    worker_jobs = [j for j in config["scrape_configs"] if j["job_name"] == "salespulse-worker"]
    assert all("dns_sd_configs" in job for job in worker_jobs)


def test_prometheus_rule_files_are_inside_its_mount(services):
    config, path = prometheus_config(services)
    for pattern in config.get("rule_files", []):
        assert not pattern.startswith("/") or host_path(services["prometheus"], pattern)
        assert list(path.parent.glob(pattern)), f"rule file {pattern} not under deploy/prometheus"


def test_alertmanager_loads_its_config_and_secret_files_from_its_mounts(services):
    alertmanager = services["alertmanager"]
    [flag] = [c for c in alertmanager["command"] if c.startswith("--config.file=")]
    config_path = host_path(alertmanager, flag.split("=", 1)[1])
    assert config_path == DEPLOY / "alertmanager" / "alertmanager.yml"
    assert "/etc/alertmanager/secrets" in mounts(alertmanager)
    if not config_path.is_file():
        return  # the Alertmanager config arrives with the alerting work
    config = yaml.safe_load(config_path.read_text())
    for key, value in _walk(config):
        if key.endswith("_file") or key.endswith("_files"):
            for file in value if isinstance(value, list) else [value]:
                assert host_path(alertmanager, file) is not None, f"{key}: {file} is not mounted"


def test_grafana_provisioning_is_mounted_and_points_at_prometheus(services):
    grafana = services["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == DEPLOY / "grafana" / "provisioning"
    provisioning = DEPLOY / "grafana" / "provisioning"
    for file in sorted((provisioning / "datasources").glob("*.y*ml")):
        for source in yaml.safe_load(file.read_text()).get("datasources", []):
            if "url" in source:
                host, port = host_port(source["url"].split("://")[1].split("/")[0])
                assert port in listening_ports(host, services[host]), file
    for file in sorted((provisioning / "dashboards").glob("*.y*ml")):
        for provider in yaml.safe_load(file.read_text()).get("providers", []):
            folder = host_path(grafana, provider["options"]["path"])
            assert folder is not None, f"{file}: dashboards folder not mounted"
            assert folder.is_relative_to(DEPLOY / "grafana"), file


def test_only_the_ingest_is_published_beyond_this_host(services):
    assert ENV_EXAMPLE["PUBLISH_BIND"] == "127.0.0.1"
    for name, service in services.items():
        for port in service.get("ports", []):
            bind = str(port).split(":")[0]
            assert bind == ("0.0.0.0" if name == "salespulse-ingest" else "127.0.0.1"), name  # noqa: S104
    assert "ports" not in services["salespulse-worker"], "replicas cannot share a host port"


def test_named_volumes_are_declared_and_state_is_persisted(compose, services):
    declared = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared
    persisted = {
        name
        for name, s in services.items()
        for v in s.get("volumes", [])
        if v.split(":")[0] in declared
    }
    assert {"kafka", "redis", "prometheus", "grafana", "alertmanager"} <= persisted
    assert "salespulse-ingest" in persisted, "its disk spool outlives the container"
    assert "--appendonly" in services["redis"]["command"]


def _walk(node: Any) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((str(key), value))
            found += _walk(value)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item)
    return found
