"""Static checks of the production topology: docker-compose.yml and the Dockerfile.

They catch broken cross-references (renamed services, volumes, files, credentials)
without needing Docker.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from config import Settings, WorkerRole
from extras import Extra
from worker import DRAIN_TIMEOUT

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "compose.env.example"  # what `.env` must hold
DOCKERFILE = REPO_ROOT / "Dockerfile"
APP_SERVICES = ("migrate", "worker", "analytics-worker", "api")  # services running an application image
# the Dockerfile's target each runs: the analytics worker alone needs the `analytics` extra
IMAGE_TARGETS = {"migrate": "runtime", "worker": "runtime", "analytics-worker": "analytics", "api": "runtime"}
WORKERS = {"worker": WorkerRole.orders, "analytics-worker": WorkerRole.analytics}
OBSERVABILITY = "observability"  # the optional profile: Prometheus and Grafana
# what Prometheus and Grafana read: the dashboard, the scrape config, the alert rules
METRICS_FILES = {
    "deploy/grafana/oms-dashboard.json",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/prometheus.yml",
}

# ${VAR}, ${VAR:-default}, ${VAR:?message}: compose's interpolation of its environment and `.env`
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


def example_env() -> dict[str, str]:
    """deploy/compose.env.example as a filled-in `.env`: its values, or a stand-in for the empty ones."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip() or f"example-{key.strip().lower()}"
    return found


def interpolate(text: str, variables: dict[str, str]) -> str:
    """The file as compose reads it with `variables` set; a required one missing fails the test."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if variables.get(name):
            return variables[name]
        assert operator != "?", f"{name} is required ({argument}) and not in {ENV_EXAMPLE.name}"
        return argument if operator == "-" else ""

    return VARIABLE.sub(value, text)


@cache
def load_compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), example_env()))


@cache
def raw_compose() -> dict[str, Any]:
    """The file as written, before interpolation."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def service(name: str) -> dict[str, Any]:
    assert name in services(), f"service {name!r} is not defined"
    return services()[name]


def env(name: str, compose: dict[str, Any] | None = None) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses (as compose reads
    it, or as `compose` has it)."""
    raw = (compose or load_compose())["services"][name].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: str(value) for key, value in raw.items()}


def raw_env(name: str) -> dict[str, str]:
    """A service's environment as the file writes it, `${...}` not yet replaced."""
    return env(name, raw_compose())


def depends_on(name: str) -> dict[str, dict[str, Any]]:
    """A service's depends_on as {target: options}, whichever of the two compose forms it uses."""
    raw = service(name).get("depends_on") or {}
    if isinstance(raw, list):
        return {target: {} for target in raw}
    return {target: options or {} for target, options in raw.items()}


def container_ports(name: str) -> set[int]:
    """Container-side ports a service publishes or exposes ("7233:7233", "8080", {target: ...})."""
    ports: set[int] = set()
    for entry in service(name).get("ports", []) + service(name).get("expose", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def known_settings() -> set[str]:
    """The OMS_* variables config.Settings reads (it ignores unknown ones, so a misspelt variable would
    silently change nothing), and those promised by a branch not merged yet."""
    return {f"OMS_{field.upper()}" for field in Settings.model_fields}


def bind_mounts(name: str) -> list[tuple[str, str]]:
    """A service's bind mounts as (source relative to the repo, target), short or long syntax."""
    mounts = []
    for volume in service(name).get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
        elif volume.startswith(("./", "../")):
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
    return [(str(Path(source)), target) for source, target in mounts]


def long_running(name: str) -> bool:
    """A service that stays up (the one-shot jobs say `restart: "no"`)."""
    return str(service(name).get("restart", "no")) != "no"


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def command_words(command: str | list[str]) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


def dockerfile_instructions(keyword: str) -> list[str]:
    """Arguments of every `keyword` instruction in the Dockerfile (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].upper() == keyword:
            found.append(parts[1])
    return found


def exec_form(argument: str) -> list[str]:
    """CMD/ENTRYPOINT argument as a word list (JSON exec form or shell form)."""
    return json.loads(argument) if argument.lstrip().startswith("[") else shlex.split(argument)


def referenced_scripts(words: list[str]) -> list[str]:
    """Files a command runs: `script.py` words and `-m module` (module.py or package/__main__.py)."""
    scripts = [word for word in words if word.endswith(".py")]
    for flag, module in pairwise(words):
        if flag == "-m":
            path = module.replace(".", "/")
            scripts.append(f"{path}.py" if (REPO_ROOT / f"{path}.py").is_file() else f"{path}/__main__.py")
    return scripts


def test_compose_parses() -> None:
    compose = load_compose()
    assert isinstance(compose, dict)
    assert "version" not in compose, "compose spec files carry no top-level version"
    assert services(), "no services defined"


def test_depends_on_targets_are_defined() -> None:
    for name in services():
        for target, options in depends_on(name).items():
            assert target in services(), f"{name} depends on undefined service {target!r}"
            # A health condition is only satisfiable if the target has a healthcheck.
            if options.get("condition") == "service_healthy":
                assert "healthcheck" in service(target), f"{name} waits for {target} health, which has none"


def test_named_volumes_are_declared() -> None:
    declared = set(load_compose().get("volumes") or {})
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            if isinstance(volume, dict):  # long syntax
                if volume.get("type", "volume") != "volume" or "source" not in volume:
                    continue
                source = volume["source"]
            else:  # short syntax "source:target[:mode]"
                if ":" not in volume:
                    continue  # anonymous volume
                source = volume.split(":", 1)[0]
                if source.startswith(("/", ".", "~")):
                    continue  # bind mount
            assert source in declared, f"{name} uses undeclared volume {source!r}"


def test_app_services_build_from_repo_dockerfile() -> None:
    for name in APP_SERVICES:
        build = service(name).get("build")
        assert build is not None, f"{name} does not build the application image"
        if isinstance(build, str):
            build = {"context": build}
        context = (REPO_ROOT / build.get("context", ".")).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile == DOCKERFILE, f"{name} builds from {dockerfile}, not the repo Dockerfile"
        assert dockerfile.is_file(), f"{dockerfile} does not exist"


def test_app_commands_reference_existing_scripts() -> None:
    for name in APP_SERVICES:
        scripts = referenced_scripts(command_words(service(name)["command"]))
        assert scripts, f"{name}'s command runs no script"
        for script in scripts:
            assert (REPO_ROOT / script).is_file(), f"{name} runs missing {script}"


def test_database_url_matches_oms_db() -> None:
    db_env = env("oms-db")
    for name in APP_SERVICES:
        url = urlsplit(env(name)["OMS_DATABASE_URL"])
        assert url.scheme.startswith("postgresql"), url.scheme
        assert url.hostname == "oms-db" and url.hostname in services()
        assert url.port in (None, 5432)
        assert url.username == db_env["POSTGRES_USER"]
        assert url.password == db_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == db_env["POSTGRES_DB"]


def test_temporal_address_matches_temporal_service() -> None:
    for name in APP_SERVICES:
        host, port = split_host_port(env(name)["OMS_TEMPORAL_ADDRESS"])
        assert host == "temporal" and host in services()
        assert port in container_ports("temporal"), f"temporal does not expose port {port}"


def test_temporal_ui_points_at_temporal() -> None:
    host, port = split_host_port(env("temporal-ui")["TEMPORAL_ADDRESS"])
    assert host == "temporal" and host in services()
    assert port in container_ports("temporal")


def test_every_app_service_shares_the_codec_keys() -> None:
    settings = {raw_env(name).get("OMS_CODEC_KEYS") for name in APP_SERVICES}
    assert len(settings) == 1 and None not in settings, "workers and the API must hold the same keys"
    assert settings.pop().startswith("${OMS_CODEC_KEYS:?"), "required from the environment, never a default"


def test_every_app_service_signs_with_one_secret_from_the_environment() -> None:
    """The API signs sessions and checks tracking links; the workers sign the links they e-mail."""
    secrets = {raw_env(name).get("OMS_SESSION_SECRET") for name in APP_SERVICES}
    assert len(secrets) == 1 and None not in secrets, "workers and the API must sign with the same secret"
    assert secrets.pop().startswith("${OMS_SESSION_SECRET:?"), (
        "required from the environment, never a default"
    )


def test_the_web_ui_decodes_through_the_api_codec_server() -> None:
    ui, api = env("temporal-ui"), env("api")
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"])
    assert endpoint.path == "/codec" and ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    published = {int(p.split(":")[0]): int(p.split(":")[1]) for p in service("api")["ports"]}
    assert published.get(endpoint.port) == int(api["OMS_API_PORT"]), (
        "the endpoint is the API's published port"
    )
    origin = urlsplit(api["OMS_TEMPORAL_UI_ORIGIN"])
    ui_published = {int(p.split(":")[0]) for p in service("temporal-ui")["ports"]}
    assert origin.port in ui_published and origin.hostname == endpoint.hostname  # same site: the cookie rides


def test_temporal_persistence_matches_temporal_db() -> None:
    temporal, db = env("temporal"), env("temporal-db")
    assert temporal["POSTGRES_SEEDS"] == "temporal-db" and "temporal-db" in services()
    assert temporal["POSTGRES_USER"] == db["POSTGRES_USER"]
    assert temporal["POSTGRES_PWD"] == db["POSTGRES_PASSWORD"]


def test_worker_is_scalable() -> None:
    worker = service("worker")
    assert "container_name" not in worker, "a fixed container_name prevents scaling"
    assert "ports" not in worker, "host port bindings would collide between replicas"
    assert int(worker.get("deploy", {}).get("replicas", 1)) > 1
    # Workers must not start against an unmigrated schema, nor before Temporal has its namespace.
    assert depends_on("worker")["migrate"].get("condition") == "service_completed_successfully"
    assert depends_on("worker")["temporal-namespace"].get("condition") == "service_completed_successfully"


def test_the_workers_are_given_longer_to_stop_than_they_drain() -> None:
    for name in WORKERS:
        grace = service(name).get("stop_grace_period", "10s")  # Docker's default
        assert grace.endswith("s") and int(grace[:-1]) > DRAIN_TIMEOUT.total_seconds() + 5, (name, grace)


def test_each_app_service_builds_its_image_target() -> None:
    for name, target in IMAGE_TARGETS.items():
        assert service(name)["build"].get("target") == target, name
    # one build id for both images: one build is one deployment version for every queue
    ids = {str(service(name)["build"].get("args", {}).get("OMS_WORKER_BUILD_ID")) for name in WORKERS}
    assert len(ids) == 1, ids


def test_each_worker_runs_its_role_and_the_analytics_worker_is_one() -> None:
    for name, role in WORKERS.items():
        words = command_words(service(name)["command"])
        assert words[:2] == ["python", "worker.py"], words
        assert (words[2:] or ["--role", WorkerRole.orders]) == ["--role", role], words
    analytics = service("analytics-worker")
    assert int(analytics.get("deploy", {}).get("replicas", 1)) == 1  # one forecast a day: one is enough
    for job in ("migrate", "temporal-namespace"):  # the schedule and the tables it reads exist first
        assert depends_on("analytics-worker")[job].get("condition") == "service_completed_successfully"


def test_the_workers_agree_on_each_others_queues() -> None:
    """The analytics worker polls the queue every worker's `forecast-daily` schedule starts the forecast
    on, and starts replenishments on the order workers' queue: every app service reads both from the
    same values."""
    for setting in ("OMS_TASK_QUEUE", "OMS_ANALYTICS_TASK_QUEUE"):
        values = {env(name).get(setting) for name in APP_SERVICES}
        assert len(values) == 1 and None not in values, (setting, values)
    assert env("worker")["OMS_TASK_QUEUE"] != env("worker")["OMS_ANALYTICS_TASK_QUEUE"]


def dockerfile_stages() -> dict[str, str]:
    """The Dockerfile's stages by name: each stage's text from its FROM line on."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    parts = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].split(" AS ")[-1].strip(): "FROM " + part for part in parts}


def test_the_runtime_image_leaves_the_analytics_extra_out() -> None:
    stages = dockerfile_stages()
    assert {"runtime", "analytics"} <= stages.keys()
    assert list(stages)[-1] == "runtime", "a plain `docker build .` builds the lean image"

    def lineage(stage: str) -> list[str]:
        chain = [stage]
        while (parent := stages[chain[-1]].split()[1]) in stages:
            chain.append(parent)
        return chain

    def syncs(stage: str) -> list[str]:
        return [line for s in lineage(stage) for line in stages[s].splitlines() if "uv sync" in line]

    assert syncs("runtime") and all("--extra" not in line and "--no-dev" in line for line in syncs("runtime"))
    assert any(f"--extra {Extra.analytics}" in line for line in syncs("analytics"))
    assert set(lineage("runtime")) <= set(lineage("analytics")) | {"runtime"}, "the libraries are shared"


def test_every_variable_the_file_requires_is_in_the_env_example() -> None:
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE_FILE.read_text()) if m.group(2) == "?"}
    assert required <= example_env().keys(), sorted(required - example_env().keys())
    assert {"OMS_DB_PASSWORD", "TEMPORAL_DB_PASSWORD", "OMS_CODEC_KEYS", "OMS_SESSION_SECRET"} <= required


def test_no_secret_is_written_in_the_file() -> None:
    """Passwords, keys and secrets are `${VAR:?...}` from `.env`; `.env` stays out of git and images."""
    raw = raw_compose()["services"]
    secrets = [
        raw["temporal-db"]["environment"]["POSTGRES_PASSWORD"],
        raw["temporal"]["environment"]["POSTGRES_PWD"],
        raw["temporal-schema"]["environment"]["TEMPORAL_DB_PASSWORD"],
        raw["oms-db"]["environment"]["POSTGRES_PASSWORD"],
        # the URL's password (not urlsplit: the `?` of the interpolation reads as a query)
        raw["worker"]["environment"]["OMS_DATABASE_URL"].split("@")[0].split(":", 2)[2],
        raw["worker"]["environment"]["OMS_CODEC_KEYS"],
        raw["worker"]["environment"]["OMS_SESSION_SECRET"],
    ]
    for secret in secrets:
        assert secret.startswith("${") and ":?" in secret, f"a secret written in the file: {secret!r}"
    for ignore in (REPO_ROOT / ".gitignore", REPO_ROOT / ".dockerignore"):
        assert ".env" in ignore.read_text().split(), f"{ignore.name} must keep .env out"


def test_temporal_is_set_up_by_its_admin_tools_not_auto_setup() -> None:
    images = {name: str(s.get("image", "")) for name, s in services().items()}
    assert not any("auto-setup" in image for image in images.values()), "auto-setup is deprecated"
    for name, image in images.items():
        if image.startswith("temporalio/"):
            tag = image.partition(":")[2]
            assert tag and tag != "latest", f"{name}: pin {image}"
    server = images["temporal"].partition(":")[2]
    for job in ("temporal-schema", "temporal-namespace"):
        assert images[job].startswith(f"temporalio/admin-tools:{server}-"), (
            "admin-tools must match the server"
        )
        for volume in service(job).get("volumes", []):
            assert (REPO_ROOT / volume.split(":")[0]).is_file(), f"{job} mounts a missing {volume}"
    assert depends_on("temporal")["temporal-schema"].get("condition") == "service_completed_successfully"
    assert depends_on("temporal-namespace")["temporal"] is not None


def test_customers_and_browsers_reach_the_api_at_its_public_url() -> None:
    public = example_env()["OMS_PUBLIC_URL"]
    for name in APP_SERVICES:
        assert env(name)["OMS_PUBLIC_URL"] == public  # the tracking links in e-mails
    assert env("temporal-ui")["TEMPORAL_CODEC_ENDPOINT"] == f"{public}/codec"  # the Web UI's browser


def test_app_settings_are_known() -> None:
    for name in APP_SERVICES:
        unknown = {key for key in env(name) if key.startswith("OMS_")} - known_settings()
        assert not unknown, f"{name} sets unknown settings {sorted(unknown)}"


def test_api_is_published_and_health_checked() -> None:
    api, api_env = service("api"), env("api")
    assert command_words(api["command"])[-2:] == ["-m", "api"]
    # Inside a container the API must listen beyond the loopback to be reachable at all.
    assert api_env.get("OMS_API_HOST") == "0.0.0.0"
    port = int(api_env.get("OMS_API_PORT", Settings.model_fields["api_port"].default))
    assert port in container_ports("api"), f"the api listens on {port} but does not publish it"
    # Like the workers: not before the schema is migrated and Temporal answers with its namespace.
    assert depends_on("api")["migrate"].get("condition") == "service_completed_successfully"
    assert depends_on("api")["temporal-namespace"].get("condition") == "service_completed_successfully"
    # The healthcheck asks /readyz on that port with the image's Python (it has no curl or wget).
    test = command_words(api["healthcheck"]["test"])
    assert test[0] == "CMD" and test[1] == "python" and test[2] == "-c", test
    compile(test[3], "healthcheck", "exec")
    assert f"127.0.0.1:{port}/readyz" in test[3]


def healthcheck_words(name: str) -> list[str]:
    test = service(name)["healthcheck"]["test"]
    return command_words(test) if isinstance(test, list) else ["CMD-SHELL", test]


def test_every_long_running_service_is_health_checked() -> None:
    """`docker compose ps` shows each one healthy or not; a check the image cannot run (a missing curl)
    would show a working service as unhealthy forever, so each runs a tool its image has."""
    running = [name for name in services() if long_running(name)]
    assert {"temporal", "temporal-ui", "worker", "api", "prometheus", "grafana"} <= set(running)
    for name in running:
        assert "healthcheck" in service(name), f"{name} runs on without a healthcheck"
        kind, *words = healthcheck_words(name)
        assert kind in ("CMD", "CMD-SHELL") and not service(name)["healthcheck"].get("disable")
        tool = words[0] if kind == "CMD" else shlex.split(words[0])[0]
        if "build" in service(name):
            assert tool == "python", f"{name}: the application image (python:3.11-slim) has no {tool}"
        else:  # postgres: pg_isready; Alpine (Temporal, its UI, Grafana) and busybox (Prometheus)
            assert tool in ("pg_isready", "curl", "wget", "nc"), f"{name} ({service(name)['image']}): {tool}"


def test_the_worker_is_healthy_while_it_polls() -> None:
    port = int(env("worker")["OMS_METRICS_PORT"])
    words = healthcheck_words("worker")
    assert words[1:3] == ["python", "-c"], words
    compile(words[3], "healthcheck", "exec")
    assert f"127.0.0.1:{port}/healthz" in words[3]
    # Docker's default 0 s would count the worker's start (connect, register search attributes) as failures.
    assert service("worker")["healthcheck"].get("start_period")


def test_the_web_ui_is_checked_on_the_port_it_serves() -> None:
    ui_port = {int(p.split(":")[1]) for p in service("temporal-ui")["ports"]}
    words = healthcheck_words("temporal-ui")
    assert words[1] == "curl" and "-fsS" in words, words  # -f: an HTTP error fails the check
    assert any(urlsplit(w).port in ui_port and urlsplit(w).hostname == "127.0.0.1" for w in words), words


def test_observability_runs_only_under_its_profile() -> None:
    """`docker compose up` starts the system alone; `--profile observability` adds Prometheus and
    Grafana, and nothing of the system waits for them."""
    profiled = {name for name, svc in services().items() if svc.get("profiles")}
    assert profiled == {"prometheus", "grafana"}, sorted(profiled)
    for name in profiled:
        assert service(name)["profiles"] == [OBSERVABILITY]
    for name in set(services()) - profiled:
        assert not set(depends_on(name)) & profiled, f"{name} would pull in the profile"
    prometheus_port = container_ports("prometheus")
    datasource = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert [urlsplit(d["url"]).hostname for d in datasource] == ["prometheus"]
    assert {urlsplit(d["url"]).port for d in datasource} <= prometheus_port


def test_the_grafana_password_comes_from_the_environment() -> None:
    password = raw_env("grafana")["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "never a default such as admin"


def test_mounted_files_exist() -> None:
    mounted = {source for name in services() for source, _target in bind_mounts(name)}
    assert mounted >= METRICS_FILES, sorted(METRICS_FILES - mounted)  # where Prometheus and Grafana read them
    for source in mounted:
        assert (REPO_ROOT / source).exists(), f"a mount of a missing {source}"


def test_grafana_loads_the_dashboard_where_it_is_mounted() -> None:
    provisioning = dict(bind_mounts("grafana"))["deploy/grafana/provisioning"]
    assert provisioning == "/etc/grafana/provisioning"
    dashboard = dict(bind_mounts("grafana"))["deploy/grafana/oms-dashboard.json"]
    providers = yaml.safe_load((REPO_ROOT / "deploy/grafana/provisioning/dashboards/oms.yml").read_text())[
        "providers"
    ]
    assert str(Path(dashboard).parent) in {p["options"]["path"] for p in providers}


def test_prometheus_reads_its_config_and_rules_where_they_are_mounted() -> None:
    mounts = dict(bind_mounts("prometheus"))
    assert mounts["deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"  # its default
    # beside the config, so that `rule_files: [alerts.yml]` finds it
    assert mounts["deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"


def test_every_image_is_pinned() -> None:
    for name, svc in services().items():
        if "image" in svc:
            image = str(svc["image"])
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            assert tag and tag != "latest", f"{name}: pin {image}"


def test_dockerfile_references_existing_files() -> None:
    for argument in dockerfile_instructions("COPY"):
        *sources, _dest = shlex.split(argument)
        for source in sources:
            if source.startswith("--") or source == ".":
                continue
            assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"

    commands = dockerfile_instructions("CMD") + dockerfile_instructions("ENTRYPOINT")
    assert commands, "Dockerfile has no CMD"
    for argument in commands:
        for script in referenced_scripts(exec_form(argument)):
            assert (REPO_ROOT / script).is_file(), f"Dockerfile runs missing {script}"
