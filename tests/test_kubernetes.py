"""Static checks of deploy/kubernetes: the base and the example overlay, rendered and validated.

There is no kubectl or cluster here. `render` applies the few kustomize features the files use
(resources, namespace, images, replicas, patches of maps) and refuses any other, so a kustomization
that starts using more fails here rather than being rendered wrongly. Every object is validated
against the Kubernetes JSON schemas (`kubernetes-validate`, bundled, offline, strict: an unknown or
misspelt field fails). The ServiceMonitor is a Prometheus Operator CRD those schemas lack: its
fields are checked by hand, against the Service it selects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from api.routes.health import router as health_router
from connection import _SETTINGS as TEMPORAL_SETTINGS
from tests.test_compose import REPO_ROOT, known_settings, referenced_scripts
from worker import DRAIN_TIMEOUT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
# The oldest Kubernetes still supported upstream when this was written: fields newer than it would be
# refused by the schemas.
KUBERNETES_VERSION = "1.31.0"

# The variables the Temporal SDK's envconfig reads (connection.py), besides its settings' own names
TEMPORAL_VARIABLES = {variable for variable, _key in TEMPORAL_SETTINGS.values()} | {
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
}
SECRETS = {"OMS_DATABASE_URL", "OMS_CODEC_KEYS", "OMS_SESSION_SECRET", "TEMPORAL_API_KEY"}
WORKER_HEALTH_PATH = "/healthz"  # served on OMS_METRICS_PORT by the worker (branch metrics)
IMAGE_USER = 10001  # the Dockerfile's `useradd --uid`

Object = dict[str, Any]


# --- a small kustomize -------------------------------------------------------------------------------

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}


def load_documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def merge_patch(target: Object, patch: Object) -> Object:
    """RFC 7386 merge, which is what a strategic merge patch does to maps. Lists merge by key in a
    strategic merge patch and are replaced here: refused, so the two never differ."""
    merged = dict(target)
    for key, value in patch.items():
        assert not isinstance(value, list), f"a patch with a list ({key}): not supported by this loader"
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def containers(obj: Object) -> list[Object]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def identity(obj: Object) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


@cache
def render(directory: Path) -> tuple[Object, ...]:
    """`kustomize build directory`, for the features in SUPPORTED."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: {sorted(unsupported)} not implemented by tests/test_kubernetes.py"
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else load_documents(path)
    objects = [yaml.safe_load(yaml.safe_dump(obj)) for obj in objects]  # copies: render() is cached
    by_identity = {identity(obj): index for index, obj in enumerate(objects)}
    assert len(by_identity) == len(objects), f"{directory}: two objects of one kind and name"

    for patch_entry in kustomization.get("patches", []):
        assert set(patch_entry) == {"path"}, f"patch {patch_entry}: only `path` is supported"
        for patch in load_documents(directory / patch_entry["path"]):
            index = by_identity.get(identity(patch))
            assert index is not None, f"patch {patch_entry['path']} targets nothing: {identity(patch)}"
            objects[index] = merge_patch(objects[index], patch)
    for replicas in kustomization.get("replicas", []):
        index = by_identity.get(("Deployment", replicas["name"]))
        assert index is not None, f"replicas for a missing Deployment {replicas['name']}"
        objects[index]["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        used = False
        for obj in objects:
            for container in containers(obj):
                if re.split(r"[:@]", container["image"])[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
                    used = True
        assert used, f"image {image['name']} is used by no container"
    if "namespace" in kustomization:
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    return tuple(objects)


# --- what the tests read -------------------------------------------------------------------------------

RENDERINGS = {"base": BASE, "overlay": OVERLAY}


def objects(which: str = "overlay") -> tuple[Object, ...]:
    return render(RENDERINGS[which])


def find(kind: str, name: str, which: str = "overlay") -> Object:
    found = [obj for obj in objects(which) if identity(obj) == (kind, name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def workloads(which: str = "overlay") -> Iterator[Object]:
    return (obj for obj in objects(which) if obj["kind"] in ("Deployment", "Job"))


def pod_spec(obj: Object) -> Object:
    spec: Object = obj["spec"]["template"]["spec"]
    return spec


def only_container(obj: Object) -> Object:
    (container,) = containers(obj)
    return container


def container_env(container: Object) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def config_map(which: str = "overlay") -> dict[str, str]:
    data: dict[str, str] = find("ConfigMap", "oms-config", which)["data"]
    return data


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def named_port(container: Object, port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def probes(container: Object) -> dict[str, Object]:
    return {
        kind: container[kind]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


# --- the tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", RENDERINGS)
def test_every_object_is_valid_kubernetes(which: str) -> None:
    core = [obj for obj in objects(which) if obj["kind"] != "ServiceMonitor"]
    assert {obj["kind"] for obj in core} == {
        "ConfigMap",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "Service",
    }
    invalid = []
    for obj in core:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except jsonschema.ValidationError as exc:
            invalid.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not invalid, "\n".join(invalid)


@pytest.mark.parametrize("which", RENDERINGS)
def test_service_monitors_scrape_the_metrics_ports(which: str) -> None:
    """The Prometheus Operator's required fields (apiVersion, kind, metadata.name, spec.selector,
    spec.endpoints[].port), checked by hand, and what the schema could not say: each selects exactly
    one of our Services, in its own namespace, and scrapes a port that Service names."""
    monitors = [obj for obj in objects(which) if obj["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"oms-worker", "oms-api"}
    services = [obj for obj in objects(which) if obj["kind"] == "Service"]
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
        spec = monitor["spec"]
        assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, sorted(spec)
        assert "namespaceSelector" not in spec, "the overlay's namespace, not one written in the base"
        selected = [s for s in services if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert len(selected) == 1, f"{monitor['metadata']['name']} selects {len(selected)} Services"
        port_names = {port["name"] for port in selected[0]["spec"]["ports"]}
        assert spec["endpoints"], "no endpoint to scrape"
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}, sorted(endpoint)
            assert endpoint["port"] in port_names, f"{endpoint['port']} is not a port of {port_names}"
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"\d+(ms|s|m)", endpoint["interval"]), endpoint["interval"]


def test_the_monitored_ports_are_the_metrics_ports() -> None:
    worker = only_container(find("Deployment", "oms-worker"))
    service = find("Service", "oms-worker-metrics")
    (port,) = service["spec"]["ports"]
    assert named_port(worker, port["targetPort"]) == int(container_env(worker)["OMS_METRICS_PORT"]["value"])
    assert service["spec"]["clusterIP"] == "None"  # every worker pod an endpoint of its own
    api = only_container(find("Deployment", "oms-api"))
    (port,) = find("Service", "oms-api")["spec"]["ports"]
    assert named_port(api, port["targetPort"]) == int(container_env(api)["OMS_API_PORT"]["value"])


@pytest.mark.parametrize("which", RENDERINGS)
def test_every_variable_is_a_known_setting(which: str) -> None:
    """config.Settings ignores an unknown OMS_* variable and the SDK an unknown TEMPORAL_* one: a
    misspelt name would silently change nothing."""
    names = set(config_map(which))
    for obj in workloads(which):
        for container in containers(obj):
            names |= set(container_env(container))
            assert [source["configMapRef"]["name"] for source in container["envFrom"]] == ["oms-config"]
    unknown = {
        name
        for name in names
        if not (name in known_settings() or name in TEMPORAL_VARIABLES or name.startswith("OTEL_"))
    }
    assert not unknown, sorted(unknown)


@pytest.mark.parametrize("which", RENDERINGS)
def test_secrets_are_referenced_never_written(which: str) -> None:
    """No Secret is rendered (they are created in the cluster, not kept in git) and the secret
    settings come from secretKeyRef only, never a value or the ConfigMap."""
    assert not [obj for obj in objects(which) if obj["kind"] == "Secret"]
    assert not SECRETS & set(config_map(which))
    for obj in workloads(which):
        for container in containers(obj):
            for name, entry in container_env(container).items():
                if name in SECRETS:
                    reference = entry["valueFrom"]["secretKeyRef"]
                    assert "value" not in entry and reference == {
                        "name": "oms-secrets",
                        "key": name,
                        **({"optional": True} if name == "TEMPORAL_API_KEY" else {}),
                    }, (name, entry)
    # what the workers and the API must share to read each other's payloads and links
    for name in ("oms-worker", "oms-api"):
        assert {"OMS_DATABASE_URL", "OMS_CODEC_KEYS", "OMS_SESSION_SECRET"} <= set(
            container_env(only_container(find("Deployment", name)))
        )


def test_the_temporal_client_certificate_is_the_mounted_secret() -> None:
    for name in ("oms-worker", "oms-api"):
        deployment = find("Deployment", name)
        container = only_container(deployment)
        env = container_env(container)
        volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        for variable, key in (
            ("TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.crt"),
            ("TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.key"),
        ):
            path = PurePosixPath(env[variable]["value"])
            mount = mounts[str(path.parent)]
            secret = volumes[mount["name"]]["secret"]
            # `kubectl create secret tls` names the files tls.crt and tls.key
            assert (secret["secretName"], path.name) == ("oms-temporal-tls", key)
            assert mount["readOnly"] is True
            assert (
                secret["defaultMode"] == 0o440
                and pod_spec(deployment)["securityContext"]["fsGroup"] == IMAGE_USER
            )


def test_the_worker_is_given_longer_to_stop_than_it_drains() -> None:
    grace = pod_spec(find("Deployment", "oms-worker"))["terminationGracePeriodSeconds"]
    assert grace > DRAIN_TIMEOUT.total_seconds() + 5, grace


def test_probes_ask_what_the_processes_serve() -> None:
    worker = only_container(find("Deployment", "oms-worker"))
    port = int(container_env(worker)["OMS_METRICS_PORT"]["value"])
    assert set(probes(worker)) == {"startupProbe", "readinessProbe", "livenessProbe"}
    for probe in probes(worker).values():
        assert probe["httpGet"]["path"] == WORKER_HEALTH_PATH
        assert named_port(worker, probe["httpGet"]["port"]) == port

    api = only_container(find("Deployment", "oms-api"))
    port = int(container_env(api)["OMS_API_PORT"]["value"])
    served = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    api_probes = probes(api)
    assert api_probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # an outage of Temporal or the database must not restart the API: liveness asks the process only
    assert api_probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in api_probes.values():
        assert probe["httpGet"]["path"] in served
        assert named_port(api, probe["httpGet"]["port"]) == port
    assert container_env(api)["OMS_API_HOST"]["value"] == "0.0.0.0"  # reachable from the kubelet


def test_the_disruption_budget_covers_the_workers_only() -> None:
    budget = find("PodDisruptionBudget", "oms-worker")["spec"]
    worker, api = find("Deployment", "oms-worker"), find("Deployment", "oms-api")
    assert selects(budget["selector"]["matchLabels"], worker["spec"]["template"]["metadata"]["labels"])
    assert not selects(budget["selector"]["matchLabels"], api["spec"]["template"]["metadata"]["labels"])
    assert budget["maxUnavailable"] < worker["spec"]["replicas"], "a drain could take every worker"
    # the rollout, too, keeps the task queue polled
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("which", RENDERINGS)
def test_pods_run_unprivileged_on_a_read_only_root(which: str) -> None:
    for obj in workloads(which):
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == IMAGE_USER
        assert spec["automountServiceAccountToken"] is False  # nothing here talks to the Kubernetes API
        for container in containers(obj):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            # tempfile needs one writable directory
            tmp = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
            assert tmp and all("emptyDir" in v for v in spec["volumes"] if v["name"] in tmp)
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
                resources["limits"]
            )


@pytest.mark.parametrize("which", RENDERINGS)
def test_containers_run_scripts_that_exist(which: str) -> None:
    commands = {obj["metadata"]["name"]: only_container(obj)["command"] for obj in workloads(which)}
    assert commands == {
        "oms-migrate": ["python", "starter.py", "migrate"],
        "oms-worker": ["python", "worker.py"],
        "oms-api": ["python", "-m", "api"],
    }
    for command in commands.values():
        for script in referenced_scripts(command):
            assert (REPO_ROOT / script).is_file(), script


def test_the_migration_is_applied_with_what_it_needs_and_nothing_else() -> None:
    """docs/operations.md applies `-l 'app.kubernetes.io/component in (config,migrate)'` first and
    waits for the Job: that must bring the Job and the ConfigMap it reads, and no Deployment."""
    first = {
        identity(obj)
        for obj in objects()
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") in ("config", "migrate")
    }
    assert first == {("ConfigMap", "oms-config"), ("Job", "oms-migrate")}
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "-l 'app.kubernetes.io/component in (config,migrate)'" in operations


def test_the_base_names_no_namespace() -> None:
    assert not [identity(obj) for obj in objects("base") if "namespace" in obj["metadata"]]


def test_the_overlay_names_the_namespace_the_image_and_temporal() -> None:
    assert {obj["metadata"]["namespace"] for obj in objects("overlay")} == {"oms"}
    images = {container["image"] for obj in workloads("overlay") for container in containers(obj)}
    assert len(images) == 1, "the worker, the API and the migration run one build"
    name, _, tag = images.pop().rpartition(":")
    assert "/" in name and tag and tag != "latest", "a registry's image, pinned"
    config = config_map("overlay")
    assert config["TEMPORAL_ADDRESS"].endswith(".tmprl.cloud:7233")
    assert config["TEMPORAL_NAMESPACE"] == config["TEMPORAL_ADDRESS"].split(".tmprl.cloud")[0]
    assert config["OMS_PUBLIC_URL"].startswith("https://") and config["OMS_SESSION_COOKIE_SECURE"] == "true"
    # Temporal's variables, not OMS_TEMPORAL_*: those would win over them (connection.py)
    assert not {"OMS_TEMPORAL_ADDRESS", "OMS_TEMPORAL_NAMESPACE"} & set(config)
    assert (
        find("Deployment", "oms-worker")["spec"]["replicas"]
        > find("Deployment", "oms-worker", "base")["spec"]["replicas"]
    )


def test_the_loader_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(AssertionError, match="configMapGenerator"):
        render(tmp_path)
