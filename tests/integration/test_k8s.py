"""deploy/k8s: valid Kubernetes objects, and settings, ports and names line up.

Each object is validated strictly (unknown fields rejected) against the Kubernetes JSON
schemas that the kubernetes-validate wheel ships (no network), for the oldest Kubernetes
we target and the newest it knows. Then the wiring, as in test_compose.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from handlers.crm.sources import CRMS, source_of
from salespulse.app.embedded import HASH_LISTPACK_ENTRIES
from salespulse.cli import build_parser
from salespulse.core.access import refuse_open_doors
from salespulse.core.settings import Settings
from salespulse.core.tenants import Secret, TenantDirectory, load_tenants
from tests.integration.deploy_support import (
    DEPLOY,
    ROOT,
    dockerfile_stages,
    host_port,
    settings_field_names,
    settings_from,
    yaml_documents,
)

pytestmark = pytest.mark.integration

K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
OBJECTS = [(path.name, doc) for path in MANIFESTS for doc in yaml_documents(path)]
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
ROLES = {"salespulse-ingest": "ingest", "salespulse-worker": "worker"}
ROLES["salespulse-exporter"] = "exporter"
RUNTIME = dockerfile_stages(ROOT / "Dockerfile")[-1]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in OBJECTS if doc["kind"] == kind}


def workloads() -> dict[str, dict[str, Any]]:
    """SalesPulse's pods' controllers: Deployments, and the ingest's StatefulSet (its spool's
    disk); not the Redis StatefulSet (redis.yaml), which runs Redis's own image."""
    every = objects("Deployment") | objects("StatefulSet")
    return {name: workload for name, workload in every.items() if name in ROLES}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def process_env(deployment: dict[str, Any]) -> dict[str, str]:
    """What the container sees: image ENV, then envFrom sources in order, then env."""
    env = dict(RUNTIME.env())
    sources = {"configMapRef": objects("ConfigMap"), "secretRef": objects("Secret")}
    for entry in container(deployment).get("envFrom", []):
        [(kind, ref)] = entry.items()
        found = sources[kind][ref["name"]]
        env.update(found.get("data", {}))
        env.update(found.get("stringData", {}))
    for variable in container(deployment).get("env", []):
        env[variable["name"]] = variable.get("value", "<from a reference>")
    return env


def mounted(deployment: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(mount path, volume) of the container's mounts; a claim template as its PVC."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for claim in deployment["spec"].get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
    for mount in container(deployment).get("volumeMounts", []):
        yield mount["mountPath"], volumes[mount["name"]]


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("file", "document"), OBJECTS, ids=[f for f, _ in OBJECTS])
def test_each_object_is_valid_for_kubernetes(file, document, version):
    problem = None
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # Only the path and message: the exception's text carries the whole schema.
        problem = f"{'/'.join(map(str, exc.path))}: {exc.message}"
    where = f"{file} {document['kind']}/{document['metadata']['name']}"
    assert problem is None, f"{where}: {problem}"


def test_the_validation_rejects_an_unknown_field():
    deployment = objects("Deployment")["salespulse-worker"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    container(broken)["livenessprobe"] = container(broken).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_and_names_the_image():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    [image] = kustomization["images"]
    namespaces = objects("Namespace")
    assert list(namespaces) == [kustomization["namespace"]]
    for deployment in workloads().values():
        assert container(deployment)["image"].split(":")[0] == image["name"]


@pytest.mark.parametrize("name", sorted(ROLES))
def test_each_role_runs_its_command_with_valid_complete_settings(name, monkeypatch):
    deployment = workloads()[name]
    assert build_parser().parse_args(container(deployment)["args"]).command == ROLES[name]
    env = process_env(deployment)
    ours = {key for key in env if key.startswith("SALESPULSE_")}
    assert ours <= settings_field_names(), f"not a setting: {ours - settings_field_names()}"
    settings = settings_from(env, monkeypatch)
    assert settings.kafka_bootstrap
    assert settings.redis_url
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - reached through the Service
    host, port = host_port(settings.kafka_bootstrap)
    assert host
    assert port > 0
    # The Redis URL may carry a password: it comes from a Secret, never a ConfigMap.
    for config in objects("ConfigMap").values():
        assert "SALESPULSE_REDIS_URL" not in config.get("data", {})


@pytest.mark.parametrize("name", sorted(ROLES))
def test_probes_and_services_use_the_port_the_process_listens_on(name, monkeypatch):
    deployment = workloads()[name]
    port = settings_from(process_env(deployment), monkeypatch).http_port
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert set(ports.values()) == {port}
    kinds = ("livenessProbe", "readinessProbe", "startupProbe")
    probes = {kind: container(deployment)[kind]["httpGet"] for kind in kinds}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == port
    service = objects("Service")[name]
    assert selects(service["spec"]["selector"], deployment)
    for service_port in service["spec"]["ports"]:
        assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port
    others = [d for n, d in workloads().items() if n != name]
    assert not any(selects(service["spec"]["selector"], other) for other in others)


def test_prometheus_targets_resolve_to_services_in_the_namespace():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = objects("Service")
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = host_port(target)
                assert port in {p["port"] for p in services[host]["spec"]["ports"]}
        for dns in job.get("dns_sd_configs", []):
            for name in dns["names"]:
                # An A record per pod only from a headless Service.
                assert services[name]["spec"].get("clusterIP") == "None", name
                assert dns["port"] in {p["port"] for p in services[name]["spec"]["ports"]}


def test_workers_scale_within_the_partitions_and_the_exporter_is_single(monkeypatch):
    deployments = workloads()
    worker = deployments["salespulse-worker"]
    assert worker["spec"]["replicas"] == 2
    settings = settings_from(process_env(worker), monkeypatch)
    assert settings.topic_partitions >= 2 * worker["spec"]["replicas"]
    groups = {
        settings_from(process_env(d), monkeypatch).consumer_group for d in deployments.values()
    }
    assert len(groups) == 1
    exporter = deployments["salespulse-exporter"]["spec"]
    assert exporter["replicas"] == 1
    assert exporter["strategy"]["type"] == "Recreate", "never two exporters at once"


def test_the_ingest_autoscales_and_disruptions_keep_ingest_and_workers_up():
    deployments = workloads()
    [hpa] = objects("HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", "salespulse-ingest")
    assert "replicas" not in deployments["salespulse-ingest"]["spec"], "the HPA owns it"
    assert hpa["spec"]["minReplicas"] >= 2
    covered = set()
    for pdb in objects("PodDisruptionBudget").values():
        chosen = [
            n for n, d in deployments.items() if selects(pdb["spec"]["selector"]["matchLabels"], d)
        ]
        assert len(chosen) == 1, chosen
        covered.add(chosen[0])
    assert covered == {"salespulse-ingest", "salespulse-worker"}


def test_ingress_publishes_only_the_verified_webhooks():
    [ingress] = objects("Ingress").values()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["path"].startswith("/v1/webhooks/")
            assert path["backend"]["service"]["name"] == "salespulse-ingest"


@pytest.mark.parametrize("name", sorted(ROLES))
def test_pods_run_as_the_images_non_root_user_with_requests_and_limits(name, monkeypatch):
    deployment = workloads()[name]
    pod = deployment["spec"]["template"]["spec"]
    uid, _, gid = (RUNTIME.last("USER") or "").partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    security = container(deployment)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container(deployment)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    if security.get("readOnlyRootFilesystem"):
        settings = settings_from(process_env(deployment), monkeypatch)
        kinds = ("emptyDir", "persistentVolumeClaim")
        writable = {path for path, v in mounted(deployment) if any(k in v for k in kinds)}
        assert str(settings.data_dir) in writable
        assert "/tmp" in writable  # noqa: S108 - Python's tempfile needs one


def test_the_ingest_spool_is_on_a_disk_of_its_own_that_outlives_the_pod(monkeypatch):
    """A pod removed while Kafka is down must not take acknowledged webhooks with it."""
    ingest = objects("StatefulSet")["salespulse-ingest"]
    settings = settings_from(process_env(ingest), monkeypatch)
    [data] = [v for path, v in mounted(ingest) if path == str(settings.data_dir)]
    claim = data["persistentVolumeClaim"]
    assert claim["accessModes"] == ["ReadWriteOnce"], "one pod, one spool"
    assert _bytes(claim["resources"]["requests"]["storage"]) > settings.spool_max_bytes
    kept = {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert ingest["spec"]["persistentVolumeClaimRetentionPolicy"] == kept
    assert objects("Service")[ingest["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def _bytes(quantity: str) -> int:
    """A Kubernetes binary quantity (64Mi, 1Gi) in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * units[quantity[-2:]]


def tenants_of(deployment: dict[str, Any], settings: Settings) -> TenantDirectory:
    """The tenants file the pod reads, loaded by the product's own loader."""
    assert settings.tenants_file is not None
    path = PurePosixPath(settings.tenants_file)
    for mount_path, volume in mounted(deployment):
        if PurePosixPath(mount_path) == path.parent and "configMap" in volume:
            data = objects("ConfigMap")[volume["configMap"]["name"]]["data"]
            with tempfile.TemporaryDirectory() as folder:
                file = Path(folder) / path.name
                file.write_text(data[path.name])
                return TenantDirectory(load_tenants(file), settings.default_timezone)
    raise AssertionError(f"{settings.tenants_file} is not mounted from a ConfigMap")


@pytest.mark.parametrize("name", sorted(ROLES))
def test_the_tenants_file_loads_and_each_crm_secret_it_names_is_provided(name, monkeypatch):
    deployment = workloads()[name]
    env = process_env(deployment)
    tenants = tenants_of(deployment, settings_from(env, monkeypatch))
    secrets = objects("Secret")
    files = {}
    for mount_path, volume in mounted(deployment):
        if "secret" in volume:
            secret = secrets[volume["secret"]["secretName"]]
            for key in secret.get("stringData", {}) | secret.get("data", {}):
                files[PurePosixPath(mount_path) / key] = secret
    named = []
    for tenant in tenants.names():
        for crm in CRMS:
            for _, value in source_of(tenants.get(tenant), crm) or []:
                if isinstance(value, Secret):
                    named.append(value)
    assert named, "the example shows how a CRM secret is named"
    for secret_ref in named:
        if secret_ref.env is not None:
            assert secret_ref.env in env, secret_ref.env
        else:
            assert PurePosixPath(str(secret_ref.file)) in files, secret_ref.file


def test_secrets_hold_placeholders_only():
    for secret in objects("Secret").values():
        for key, value in secret.get("stringData", {}).items():
            assert "change-me" in value, f"{secret['metadata']['name']}.{key} looks real"
        assert "data" not in secret, "base64 values would hide what is committed"


@pytest.mark.parametrize("name", sorted(ROLES))
def test_no_pod_would_serve_an_open_door_beyond_loopback(name, monkeypatch):
    workload = {**objects("Deployment"), **objects("StatefulSet")}[name]
    settings = settings_from(process_env(workload), monkeypatch)
    tenants = tenants_of(workload, settings)
    # What build_runtime checks before it listens: it raises on an open door.
    refuse_open_doors(
        settings,
        tenants,
        serves_ingest=ROLES[name] == "ingest",
        serves_reads=ROLES[name] == "exporter",
    )


def test_redis_keeps_the_kpi_store_on_a_volume_with_aof_and_no_eviction():
    redis = objects("StatefulSet")["salespulse-redis"]
    spec = redis["spec"]
    [only] = spec["template"]["spec"]["containers"]
    args = only["args"]
    flags = {args[i]: args[i + 1] for i in range(0, len(args), 2)}
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--hash-max-listpack-entries"] == str(HASH_LISTPACK_ENTRIES)
    [claim] = spec["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in only["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == flags["--dir"]
    assert spec["replicas"] == 1
    # The workers' Redis URL names this Redis's Service, with the password it asks for.
    service = objects("Service")[spec["serviceName"]]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    url = objects("Secret")["salespulse-secrets"]["stringData"]["SALESPULSE_REDIS_URL"]
    password_ref = only["env"][0]["valueFrom"]["secretKeyRef"]
    password = objects("Secret")[password_ref["name"]]["stringData"][password_ref["key"]]
    assert url == f"redis://:{password}@{service['metadata']['name']}:6379/0"
    assert flags["--requirepass"] == f"$({only['env'][0]['name']})"
