"""deploy/docker-compose.redis-cluster.yml over deploy/docker-compose.yml: still valid
Compose, every SalesPulse role in cluster mode once the cluster is made, and every master
of the cluster persisted and never evicting, as the single Redis."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES
from tests.integration.deploy_support import (
    DEPLOY,
    ROOT,
    environment_of,
    host_port,
    interpolate,
    load_compose,
    read_dotenv,
    settings_from,
    variables_used,
)
from tests.integration.test_compose import ENV_EXAMPLE, ROLES, USER_SECRETS, process_env

pytestmark = pytest.mark.integration

OVERRIDE = DEPLOY / "docker-compose.redis-cluster.yml"
MASTERS = ("redis", "redis-2", "redis-3")


def merged(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, as far as this one uses it: mappings
    (services, environment, depends_on, volumes) merge key by key, and any other value
    (a command, an entrypoint) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {
            key: merged(base[key], value) if key in base else value
            for key, value in {**base, **override}.items()
        }
    return override


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    env = {**ENV_EXAMPLE, **USER_SECRETS}
    override = interpolate(yaml.safe_load(OVERRIDE.read_text()), env)
    document = merged(load_compose(env), override)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def test_the_merged_file_is_valid_against_the_compose_spec_schema(compose):
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert problems == []


def test_its_variables_are_the_documented_ones():
    assert variables_used(OVERRIDE.read_text()) <= set(read_dotenv(DEPLOY / ".env.example"))


@pytest.mark.parametrize("name", sorted(ROLES))
def test_each_role_runs_in_cluster_mode_after_the_cluster_is_made(services, name, monkeypatch):
    service = services[name]
    settings = settings_from(process_env(service), monkeypatch)
    assert settings.redis_mode == "cluster"
    assert settings.kpi_keys().tenant_slots
    assert settings.redis_url
    host, port = host_port(settings.redis_url.split("://", 1)[1].split("/", 1)[0])
    assert host in MASTERS
    assert port == 6379
    assert service["depends_on"]["redis-cluster-init"] == {
        "condition": "service_completed_successfully"
    }


def test_every_master_is_a_persisted_cluster_node_that_never_evicts(compose, services):
    for name in MASTERS:
        command = services[name]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--port") + 1] == "6379"
        assert command[command.index("--appendonly") + 1] == "yes"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
        assert command[command.index("--hash-max-listpack-entries") + 1] == str(
            HASH_LISTPACK_ENTRIES
        )
        [volume] = services[name]["volumes"]
        source, target = volume.split(":")[:2]
        assert source in compose["volumes"]
        assert target == "/data"
    assert len({services[name]["volumes"][0] for name in MASTERS}) == len(MASTERS)


def test_the_init_service_makes_the_cluster_of_every_master_once_they_answer(services):
    init = services["redis-cluster-init"]
    assert init["restart"] == "no"
    assert [host_port(node) for node in init["command"]] == [(m, 6379) for m in MASTERS]
    [mount] = init["volumes"]
    source, target = mount.split(":")[:2]
    assert (DEPLOY / source).resolve() == (DEPLOY / "redis-cluster" / "create-cluster.sh")
    assert init["entrypoint"][-1] == target
    assert {name: d["condition"] for name, d in init["depends_on"].items()} == {
        name: "service_healthy" for name in MASTERS
    }
    for name in MASTERS:
        assert environment_of(services[name]) == {}  # nothing of SalesPulse's in Redis
