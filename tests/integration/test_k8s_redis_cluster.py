"""deploy/redis-cluster: the Kubernetes variant of deploy/k8s with the KPI store on a Redis
Cluster. Its objects are valid Kubernetes (strict, as in test_k8s.py); applied over
deploy/k8s as kustomize applies its patches, the single Redis is gone, every SalesPulse
process runs in cluster mode against the first master, and the Job makes the cluster of
every master with the script that test_redis_cluster_deploy.py runs for real."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from salespulse.app.embedded import HASH_LISTPACK_ENTRIES
from tests.integration.deploy_support import DEPLOY, host_port, settings_from, yaml_documents
from tests.integration.test_k8s import KUBERNETES_VERSIONS, OBJECTS, ROLES, RUNTIME, container

pytestmark = pytest.mark.integration

OVERLAY = DEPLOY / "redis-cluster"
KUSTOMIZATION = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
OWN = list(yaml_documents(OVERLAY / "redis-cluster.yaml"))
PATCHES = [yaml.safe_load(entry["patch"]) for entry in KUSTOMIZATION["patches"]]


Objects = dict[tuple[str, str], dict[str, Any]]


def _id(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def deep_merged(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        return {
            key: deep_merged(base[key], value) if key in base else value
            for key, value in {**base, **patch}.items()
        }
    return patch


def built() -> Objects:
    """deploy/k8s's objects, then this variant's, with its patches applied (deletes, and
    strategic merges of maps: all these patches hold)."""
    objects = {_id(doc): doc for _, doc in OBJECTS}
    objects |= {_id(doc): doc for doc in OWN}
    for patch in PATCHES:
        target = _id(patch)
        assert target in objects, f"the patch names no object: {target}"
        if patch.get("$patch") == "delete":
            del objects[target]
        else:
            objects[target] = deep_merged(objects[target], patch)
    return objects


def env_of(
    objects: dict[tuple[str, str], dict[str, Any]], workload: dict[str, Any]
) -> dict[str, str]:
    env = dict(RUNTIME.env())
    kinds = {"configMapRef": "ConfigMap", "secretRef": "Secret"}
    for entry in container(workload).get("envFrom", []):
        [(kind, ref)] = entry.items()
        found = objects[(kinds[kind], ref["name"])]
        env.update(found.get("data", {}))
        env.update(found.get("stringData", {}))
    return env


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("document", OWN, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in OWN])
def test_each_object_is_valid_for_kubernetes(document, version):
    problem = None
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problem = f"{'/'.join(map(str, exc.path))}: {exc.message}"
    assert problem is None, problem


def test_the_variant_builds_on_deploy_k8s_and_ships_the_script():
    assert KUSTOMIZATION["resources"] == ["../k8s", "redis-cluster.yaml"]
    base = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert KUSTOMIZATION["namespace"] == base["namespace"]
    [generator] = KUSTOMIZATION["configMapGenerator"]
    assert generator["files"] == ["create-cluster.sh"]
    assert (OVERLAY / "create-cluster.sh").is_file()
    job = next(doc for doc in OWN if doc["kind"] == "Job")
    [volume] = job["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == generator["name"]


def test_the_single_redis_is_gone_and_its_password_serves_the_cluster():
    objects = built()
    assert ("StatefulSet", "salespulse-redis") not in objects
    assert ("Service", "salespulse-redis") not in objects
    assert ("Secret", "salespulse-redis") in objects
    cluster = objects[("StatefulSet", "salespulse-redis-cluster")]
    [redis] = cluster["spec"]["template"]["spec"]["containers"]
    [password] = redis["env"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "salespulse-redis", "key": "password"}


@pytest.mark.parametrize("name", sorted(ROLES))
def test_every_role_runs_in_cluster_mode_against_the_first_master(name, monkeypatch):
    objects = built()
    [workload] = [
        doc for (kind, doc_name), doc in objects.items()
        if doc_name == name and kind in ("Deployment", "StatefulSet")
    ]  # fmt: skip
    settings = settings_from(env_of(objects, workload), monkeypatch)
    assert settings.redis_mode == "cluster"
    assert settings.redis_url
    host, port = host_port(settings.redis_url.split("@", 1)[1].split("/", 1)[0])
    cluster = objects[("StatefulSet", "salespulse-redis-cluster")]
    service = cluster["spec"]["serviceName"]
    assert host == f"{cluster['metadata']['name']}-0.{service}"
    assert port == 6379


def test_three_persisted_masters_that_never_evict_and_a_job_that_joins_them_all():
    objects = built()
    cluster = objects[("StatefulSet", "salespulse-redis-cluster")]
    replicas = cluster["spec"]["replicas"]
    assert replicas == 3
    [redis] = cluster["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--cluster-enabled") + 1] == "yes"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--hash-max-listpack-entries") + 1] == str(HASH_LISTPACK_ENTRIES)
    data = args[args.index("--dir") + 1]
    assert args[args.index("--cluster-config-file") + 1].startswith(data + "/")
    assert [m["mountPath"] for m in redis["volumeMounts"]] == [data]
    assert cluster["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    service = objects[("Service", cluster["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"
    assert {p["name"] for p in service["spec"]["ports"]} == {"redis", "cluster-bus"}
    job = objects[("Job", "salespulse-redis-cluster-create")]
    [create] = job["spec"]["template"]["spec"]["containers"]
    assert create["command"][-1].endswith("/create-cluster.sh")
    name, headless = cluster["metadata"]["name"], service["metadata"]["name"]
    assert create["args"] == [f"{name}-{n}.{headless}:6379" for n in range(replicas)]
    assert create["env"][0]["name"] == "REDISCLI_AUTH"
