"""Static checks of deploy/kubernetes: base/, worker/ and the example overlay, rendered and validated.

There is no kubectl or cluster here. `render` applies the few kustomize features the files use
(resources, namespace, images, replicas, patches of maps, nameSuffix and labels on a worker pool) and
refuses any other, so a kustomization that starts using more fails here rather than being rendered
wrongly. Every object is validated
against the Kubernetes JSON schemas (`kubernetes-validate`, bundled, offline, strict: an unknown or
misspelt field fails). The ServiceMonitor is a Prometheus Operator CRD those schemas lack: its
fields are checked by hand, against the Service it selects.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from api.routes.health import router as health_router
from config import check_build_id
from connection import _SETTINGS as TEMPORAL_SETTINGS
from tests.test_compose import (
    REPO_ROOT,
    command_words,
    dockerfile_instructions,
    known_settings,
    referenced_scripts,
    service,
)
from worker import DRAIN_TIMEOUT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
# Validated against the oldest Kubernetes the manifests are meant for (a field added later fails) and
# the newest the validator knows (an API removed since fails).
OLDEST_KUBERNETES = "1.30.0"

# The Temporal variables connection.py reads (through the SDK's envconfig)
TEMPORAL_VARIABLES = {variable for variable, _key in TEMPORAL_SETTINGS.values()} | {
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
}
SECRETS = {"OMS_DATABASE_URL", "OMS_CODEC_KEYS", "OMS_SESSION_SECRET", "TEMPORAL_API_KEY"}
WORKER_HEALTH_PATH = "/healthz"  # served on OMS_METRICS_PORT by the worker (branch metrics)
# the image's user (`useradd --uid` in the Dockerfile): the pods run as it
IMAGE_USER = int(re.findall(r"useradd .*--uid (\d+)", "\n".join(dockerfile_instructions("RUN")))[0])

Object = dict[str, Any]


# --- a small kustomize -------------------------------------------------------------------------------

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "replicas",
    "patches",
    "nameSuffix",
    "labels",
}
# What `nameSuffix` and `labels` may touch here: kustomize would also rewrite references to a renamed
# ConfigMap or Service, and selectors of kinds this loader does not know.
RENAMED_KINDS = {"Deployment", "PodDisruptionBudget"}


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


def image_name(image: str) -> str:
    """`registry:5000/oms:tag@sha256:...` -> `registry:5000/oms`: what kustomize's `images` match."""
    image = image.split("@")[0]
    path, _, last = image.rpartition("/")
    return f"{path}/{last.split(':')[0]}" if path else last.split(":")[0]


def the_one(objects: list[Object], kind: str, name: str, what: str) -> Object:
    found = [obj for obj in objects if identity(obj) == (kind, name)]
    assert len(found) == 1, f"{what}: {len(found)} {kind} {name}"
    return found[0]


@cache
def render(directory: Path) -> tuple[Object, ...]:
    """`kustomize build directory`, for the features in SUPPORTED, in kustomize's order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{directory}: {sorted(unsupported)} not implemented by tests/test_kubernetes.py"
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else load_documents(path)
    objects = [yaml.safe_load(yaml.safe_dump(obj)) for obj in objects]  # copies: render() is cached
    assert len({identity(obj) for obj in objects}) == len(objects), f"{directory}: two objects of one name"

    for patch_entry in kustomization.get("patches", []):
        assert set(patch_entry) == {"path"}, f"patch {patch_entry}: only `path` is supported"
        for patch in load_documents(directory / patch_entry["path"]):
            target = the_one(objects, *identity(patch), what=f"patch {patch_entry['path']}")
            objects[objects.index(target)] = merge_patch(target, patch)
    if "namespace" in kustomization:
        for obj in objects:
            obj["metadata"]["namespace"] = kustomization["namespace"]
    if "nameSuffix" in kustomization:
        assert {obj["kind"] for obj in objects} <= RENAMED_KINDS, f"{directory}: renames what others name"
        for obj in objects:
            obj["metadata"]["name"] += kustomization["nameSuffix"]
    for labels in kustomization.get("labels", []):
        assert set(labels) <= {"pairs", "includeSelectors"}, labels
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
            if labels.get("includeSelectors"):
                assert obj["kind"] in RENAMED_KINDS, f"{directory}: selectors of a {obj['kind']}"
                obj["spec"]["selector"]["matchLabels"].update(labels["pairs"])
                if "template" in obj["spec"]:
                    obj["spec"]["template"]["metadata"]["labels"].update(labels["pairs"])
    for replicas in kustomization.get("replicas", []):
        the_one(objects, "Deployment", replicas["name"], "replicas")["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        matching = [c for obj in objects for c in containers(obj) if image_name(c["image"]) == image["name"]]
        assert matching, f"{directory}: image {image['name']} is used by no container"
        for container in matching:
            name = image.get("newName", image["name"])
            container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
    return tuple(objects)


# --- what the tests read -------------------------------------------------------------------------------

# the two directories an overlay builds on, and the example overlay (every object, every pool)
RENDERINGS = {"base": BASE, "worker": KUBERNETES / "worker", "overlay": OVERLAY}
VERSION = "app.kubernetes.io/version"  # the label that tells the pools of two builds apart


def objects(which: str = "overlay") -> tuple[Object, ...]:
    return render(RENDERINGS[which])


def of_kind(kind: str, which: str = "overlay") -> list[Object]:
    return [obj for obj in objects(which) if obj["kind"] == kind]


def find(kind: str, name: str, which: str = "overlay") -> Object:
    return the_one(list(objects(which)), kind, name, which)


def component(obj: Object) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def worker_pools(which: str = "overlay") -> list[Object]:
    """The pools of order workers (`python worker.py`), one per build."""
    pools = [obj for obj in of_kind("Deployment", which) if component(obj) == "worker"]
    assert pools, f"{which}: no worker Deployment"
    return pools


def analytics_workers(which: str = "overlay") -> list[Object]:
    """The analytics workers (`python worker.py --role analytics`), one per build."""
    found = [obj for obj in of_kind("Deployment", which) if component(obj) == "analytics-worker"]
    assert found, f"{which}: no analytics worker Deployment"
    return found


def all_workers(which: str = "overlay") -> list[Object]:
    """Every Temporal worker of every kind and build: what drains, probes /healthz and is scraped."""
    return worker_pools(which) + analytics_workers(which)


def build_of(obj: Object) -> str:
    return str(obj["metadata"]["labels"][VERSION])


def workloads(which: str = "overlay") -> list[Object]:
    return of_kind("Deployment", which) + of_kind("Job", which)


def pod_spec(obj: Object) -> Object:
    spec: Object = obj["spec"]["template"]["spec"]
    return spec


def pod_labels(obj: Object) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def only_container(obj: Object) -> Object:
    (container,) = containers(obj)
    return container


def container_env(container: Object) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def env_value(obj: Object, name: str) -> str:
    return str(container_env(only_container(obj))[name]["value"])


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
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {kind: container[kind] for kind in kinds if kind in container}


def image_tag(obj: Object) -> str:
    image = only_container(obj)["image"]
    assert image_name(image) != image, f"{image} is not pinned"
    return str(image.rpartition(":")[2])


# --- the tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version() + ".0"])
@pytest.mark.parametrize("which", RENDERINGS)
def test_every_object_is_valid_kubernetes(which: str, version: str) -> None:
    core = [obj for obj in objects(which) if obj["kind"] != "ServiceMonitor"]
    invalid = []
    for obj in core:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except jsonschema.ValidationError as exc:
            invalid.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not invalid, "\n".join(invalid)


def test_the_overlay_renders_the_whole_system() -> None:
    kinds = {obj["kind"] for obj in objects()}
    assert kinds == {"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceMonitor"}


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_service_monitors_scrape_the_metrics_ports(which: str) -> None:
    """The Prometheus Operator's required fields (apiVersion, kind, metadata.name, spec.selector,
    spec.endpoints[].port), checked by hand, and what the schema could not say: each selects exactly
    one of our Services, in its own namespace, and scrapes a port that Service names."""
    monitors = of_kind("ServiceMonitor", which)
    assert {m["metadata"]["name"] for m in monitors} == {"oms-worker", "oms-api"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
        spec = monitor["spec"]
        assert set(spec) <= {"selector", "endpoints", "jobLabel"}, sorted(spec)  # no namespaceSelector
        selected = [
            s
            for s in of_kind("Service", which)
            if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"{monitor['metadata']['name']} selects {len(selected)} Services"
        port_names = {port["name"] for port in selected[0]["spec"]["ports"]}
        assert spec["endpoints"], "no endpoint to scrape"
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}, sorted(endpoint)
            assert endpoint["port"] in port_names, f"{endpoint['port']} is not a port of {port_names}"
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"\d+(ms|s|m)", endpoint["interval"]), endpoint["interval"]


def test_the_metrics_services_list_every_pod_on_its_metrics_port() -> None:
    service = find("Service", "oms-worker-metrics")["spec"]
    (port,) = service["ports"]
    assert service["clusterIP"] == "None"  # every worker pod an endpoint of its own
    for pool in all_workers():  # of every build, the order workers and the analytics workers
        assert selects(service["selector"], pod_labels(pool)), pool["metadata"]["name"]
        worker = only_container(pool)
        assert named_port(worker, port["targetPort"]) == int(env_value(pool, "OMS_METRICS_PORT"))
    # the workers' and no other pods: the API's metrics are scraped by its own Service
    others = [d for d in workloads() if d not in all_workers()]
    assert not [identity(d) for d in others if selects(service["selector"], pod_labels(d))]
    api = find("Deployment", "oms-api")
    service = find("Service", "oms-api")["spec"]
    ports = {port["name"]: port for port in service["ports"]}
    assert selects(service["selector"], pod_labels(api))
    served = {"http": "OMS_API_PORT", "metrics": "OMS_METRICS_PORT"}  # traffic, and the scrapes apart
    assert set(ports) == set(served)
    for name, setting in served.items():
        assert named_port(only_container(api), ports[name]["targetPort"]) == int(env_value(api, setting))


@pytest.mark.parametrize("which", RENDERINGS)
def test_every_variable_is_a_known_setting(which: str) -> None:
    """config.Settings ignores an unknown OMS_* variable and the SDK an unknown TEMPORAL_* one: a
    misspelt name would silently change nothing."""
    names = set(config_map("overlay"))
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
    assert not of_kind("Secret", which)
    assert not SECRETS & set(config_map("overlay"))
    for obj in workloads(which):
        for container in containers(obj):
            for name, entry in container_env(container).items():
                if name in SECRETS:
                    optional = {"optional": True} if name == "TEMPORAL_API_KEY" else {}
                    assert entry == {
                        "name": name,
                        "valueFrom": {"secretKeyRef": {"name": "oms-secrets", "key": name, **optional}},
                    }
    # what the workers and the API must share to read each other's payloads and links
    for obj in of_kind("Deployment", which):
        assert {"OMS_DATABASE_URL", "OMS_CODEC_KEYS", "OMS_SESSION_SECRET"} <= set(
            container_env(only_container(obj))
        ), obj["metadata"]["name"]


def test_the_temporal_client_certificate_is_the_mounted_secret() -> None:
    for deployment in of_kind("Deployment"):
        container = only_container(deployment)
        volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        for variable, key in (
            ("TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.crt"),
            ("TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.key"),
        ):
            path = PurePosixPath(env_value(deployment, variable))
            mount = mounts[str(path.parent)]
            secret = volumes[mount["name"]]["secret"]
            # `kubectl create secret tls` names the files tls.crt and tls.key
            assert (secret["secretName"], path.name) == ("oms-temporal-tls", key)
            assert mount["readOnly"] is True
            # readable by the image's user alone (and root)
            assert secret["defaultMode"] == 0o440
            assert pod_spec(deployment)["securityContext"]["fsGroup"] == IMAGE_USER


def test_a_worker_is_given_longer_to_stop_than_it_drains() -> None:
    for pool in all_workers():
        grace = pod_spec(pool)["terminationGracePeriodSeconds"]
        assert grace > DRAIN_TIMEOUT.total_seconds() + 5, grace


def test_probes_ask_what_the_processes_serve() -> None:
    for pool in all_workers():
        worker = only_container(pool)
        assert set(probes(worker)) == {"startupProbe", "readinessProbe", "livenessProbe"}
        for probe in probes(worker).values():
            assert probe["httpGet"]["path"] == WORKER_HEALTH_PATH
            assert named_port(worker, probe["httpGet"]["port"]) == int(env_value(pool, "OMS_METRICS_PORT"))

    deployment = find("Deployment", "oms-api")
    api = only_container(deployment)
    served = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    api_probes = probes(api)
    assert api_probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # an outage of Temporal or the database must not restart the API: liveness asks the process only
    assert api_probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in api_probes.values():
        assert probe["httpGet"]["path"] in served
        assert named_port(api, probe["httpGet"]["port"]) == int(env_value(deployment, "OMS_API_PORT"))
    assert env_value(deployment, "OMS_API_HOST") == "0.0.0.0"  # reachable from the kubelet


def test_each_disruption_budget_covers_its_own_pods() -> None:
    """A node drain takes one pod of a pool at a time, and the budget of one build's pool counts none
    of another's (nor the API's, nor an analytics worker's). The analytics worker, one replica, has
    none: a budget could only forbid its drain or allow it (worker/analytics.yaml)."""
    deployments = [d for d in of_kind("Deployment") if component(d) != "analytics-worker"]
    for analytics in analytics_workers():
        assert not [
            b
            for b in of_kind("PodDisruptionBudget")
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(analytics))
        ], analytics["metadata"]["name"]
    for budget in of_kind("PodDisruptionBudget"):
        covered = [
            d for d in deployments if selects(budget["spec"]["selector"]["matchLabels"], pod_labels(d))
        ]
        assert len(covered) == 1, f"{budget['metadata']['name']} covers {len(covered)} Deployments"
        assert covered[0]["metadata"]["name"] == budget["metadata"]["name"]
        assert budget["spec"]["maxUnavailable"] == 1
    assert {b["metadata"]["name"] for b in of_kind("PodDisruptionBudget")} == {
        d["metadata"]["name"] for d in deployments
    }


def test_the_pools_of_two_builds_never_share_pods() -> None:
    """One pool per build (docs/versioning.md): each runs its build's image, and no Deployment's
    selector takes another's pods (two that did would fight over them)."""
    pools = worker_pools()
    assert len(pools) >= 2, "the example shows a release: a draining build beside the current one"
    for pool in pools:
        build = pool["metadata"]["labels"][VERSION]
        assert check_build_id(build) == build  # what the worker in that image takes
        # the API server's rule for a label value, which the schemas do not carry
        assert len(build) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", build), build
        assert pool["spec"]["selector"]["matchLabels"][VERSION] == build == pod_labels(pool)[VERSION]
        assert image_tag(pool) == build, "the pool runs the build it is labelled with"
        assert pool["metadata"]["name"] == f"oms-worker-{build.replace('.', '-')}"
        # a restart of the pool keeps its task queue polled
        assert pool["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    deployments = of_kind("Deployment")
    for deployment in deployments:
        for other in deployments:
            if other is not deployment:
                assert not selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(other))


def test_every_build_runs_its_analytics_worker() -> None:
    """A build is one deployment version for every queue (docs/versioning.md): each build directory
    renders, beside its order workers, one analytics worker on the analytics image of the same tag
    (the same OMS_WORKER_BUILD_ID baked in), which no order worker's selector or budget takes, and
    which the workers' ServiceMonitor scrapes."""
    pools = {build_of(pool): pool for pool in worker_pools()}
    analytics = {build_of(worker): worker for worker in analytics_workers()}
    assert len(analytics) == len(analytics_workers()), "one analytics worker per build"
    assert set(analytics) == set(pools), "every build with order workers has its analytics worker"
    order_image = image_name(only_container(next(iter(pools.values())))["image"])
    for build, worker in analytics.items():
        container = only_container(worker)
        assert worker["metadata"]["name"] == f"oms-analytics-worker-{build.replace('.', '-')}"
        assert worker["spec"]["replicas"] == 1
        assert worker["spec"]["selector"]["matchLabels"][VERSION] == build == pod_labels(worker)[VERSION]
        # the build's analytics image: the order workers' image name with `-analytics`, the same tag
        assert image_name(container["image"]) == f"{order_image}-analytics"
        assert image_tag(worker) == image_tag(pools[build]) == build
        assert container["command"] == ["python", "worker.py", "--role", "analytics"]
        assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        # no order worker's Deployment or budget of any build takes its pods
        for pool in worker_pools():
            assert not selects(pool["spec"]["selector"]["matchLabels"], pod_labels(worker))
        for budget in of_kind("PodDisruptionBudget"):
            assert not selects(budget["spec"]["selector"]["matchLabels"], pod_labels(worker))
        # scraped: a Service a ServiceMonitor selects lists it, on the port its /metrics is served
        scraping = [
            s
            for s in of_kind("Service")
            if s["spec"].get("clusterIP") == "None" and selects(s["spec"]["selector"], pod_labels(worker))
        ]
        assert len(scraping) == 1, [s["metadata"]["name"] for s in scraping]
        (port,) = scraping[0]["spec"]["ports"]
        assert named_port(container, port["targetPort"]) == int(env_value(worker, "OMS_METRICS_PORT"))
        monitors = [
            m
            for m in of_kind("ServiceMonitor")
            if selects(m["spec"]["selector"]["matchLabels"], scraping[0]["metadata"]["labels"])
        ]
        assert [e["port"] for m in monitors for e in m["spec"]["endpoints"]] == [port["name"]]


def test_the_analytics_worker_is_what_compose_and_the_dockerfile_run() -> None:
    """The same command as compose's `analytics-worker`, on an image the Dockerfile builds (its
    `analytics` target)."""
    (worker, *_) = analytics_workers("worker")
    command = only_container(worker)["command"]
    assert command == command_words(service("analytics-worker")["command"])
    stages = [
        argument.split()[-1] for argument in dockerfile_instructions("FROM") if " AS " in argument.upper()
    ]
    assert "analytics" in stages
    assert only_container(worker)["image"] == "oms-analytics"  # what a build directory maps


def test_the_migration_and_the_api_run_the_newest_build() -> None:
    builds = sorted(pool["metadata"]["labels"][VERSION] for pool in worker_pools())
    for name, kind in (("oms-api", "Deployment"), ("oms-migrate", "Job")):
        assert image_tag(find(kind, name)) == builds[-1], name
    # the runtime image for all but the analytics workers, which run the analytics image
    runtime = {
        image_name(only_container(obj)["image"]) for obj in workloads() if obj not in analytics_workers()
    }
    analytics = {image_name(only_container(obj)["image"]) for obj in analytics_workers()}
    assert len(runtime) == 1 and "/" in next(iter(runtime)), "one runtime image, from a registry"
    assert len(analytics) == 1 and analytics != runtime, "one analytics image, another than the runtime"


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
            assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])


def test_containers_run_scripts_that_exist() -> None:
    commands = {component(obj): only_container(obj)["command"] for obj in workloads()}
    assert commands == {
        "migrate": ["python", "starter.py", "migrate"],
        "worker": ["python", "worker.py"],
        "analytics-worker": ["python", "worker.py", "--role", "analytics"],
        "api": ["python", "-m", "api"],
    }
    for command in commands.values():
        for script in referenced_scripts(command):
            assert (REPO_ROOT / script).is_file(), script


def test_the_migration_is_applied_with_what_it_needs_and_nothing_else() -> None:
    """docs/operations.md applies `-l 'app.kubernetes.io/component in (config,migrate)'` first and
    waits for the Job: that must bring the Job and the ConfigMap it reads, and no Deployment."""
    first = {identity(obj) for obj in objects() if component(obj) in ("config", "migrate")}
    assert first == {("ConfigMap", "oms-config"), ("Job", "oms-migrate")}
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "-l 'app.kubernetes.io/component in (config,migrate)'" in operations


@pytest.mark.parametrize("which", ["base", "worker"])
def test_what_overlays_build_on_names_no_namespace(which: str) -> None:
    assert not [identity(obj) for obj in objects(which) if "namespace" in obj["metadata"]]


def test_the_overlay_names_the_namespace_and_temporal() -> None:
    assert {obj["metadata"]["namespace"] for obj in objects()} == {"oms"}
    config = config_map()
    assert config["TEMPORAL_ADDRESS"].endswith(".tmprl.cloud:7233")
    assert config["TEMPORAL_NAMESPACE"] == config["TEMPORAL_ADDRESS"].split(".tmprl.cloud")[0]
    assert config["OMS_PUBLIC_URL"].startswith("https://") and config["OMS_SESSION_COOKIE_SECURE"] == "true"
    # Temporal's variables, not OMS_TEMPORAL_*: those would win over them (connection.py)
    assert not {"OMS_TEMPORAL_ADDRESS", "OMS_TEMPORAL_NAMESPACE"} & set(config)


def test_the_loader_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(AssertionError, match="configMapGenerator"):
        render(tmp_path)
