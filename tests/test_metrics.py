"""Metrics (docs/observability.md): a real worker.py and a real API process, each serving /metrics and
/healthz on its OMS_METRICS_PORT, scraped before and after a few orders; the database figures over a
database of their own; the deploy files (Grafana dashboard, Prometheus rules and scrape config) refer
only to metrics the system exports. The session's API and worker are shared, so every count here is a
difference between two scrapes, on a task queue and a channel this module alone uses."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from config import PROJECT_DIR, Settings
from domain.api_keys import Role
from domain.monitoring import monitoring_figures
from encryption.codec import EncryptionCodec
from encryption.converter import key_ring
from models import tables as t
from models.events import OrderEventType, ReasonCode
from observability.database_collector import DatabaseCollector
from observability.endpoint import MetricsEndpoint
from tests.api_server import free_port, process_env, running_api
from tests.helpers import add_order_row, add_products, as_, eventually, fresh_database, order_doc, unique
from tests.test_codec_server import body, plain, sealed
from tests.worker_process import running_worker
from worker import Liveness, build_worker

CHANNEL = "marketplace"  # the suite's other tests place `web` orders: this module's counts are its own
TOKEN = "metrics-test-token"
DASHBOARD = PROJECT_DIR / "deploy" / "grafana" / "oms-dashboard.json"
ALERTS = PROJECT_DIR / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_CONFIG = PROJECT_DIR / "deploy" / "prometheus" / "prometheus.yml"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Stack:
    settings: Settings  # the worker's and the API's: their own task queue
    api: str  # the public API
    api_metrics: str  # the API's OMS_METRICS_PORT
    worker_metrics: str  # the worker's OMS_METRICS_PORT


@pytest.fixture(scope="module")
async def stack(
    client: Client, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """A worker process and an API process on a task queue of their own, each with a metrics port
    (the API's wants a token)."""
    logs = tmp_path_factory.mktemp("metrics")
    worker_port, api_port = free_port(), free_port()
    async with running_worker(
        settings, logs / "worker.log", OMS_METRICS_PORT=str(worker_port), OMS_METRICS_HOST="127.0.0.1"
    ) as (own, _):
        with running_api(
            own, logs, OMS_METRICS_PORT=str(api_port), OMS_METRICS_HOST="127.0.0.1", OMS_METRICS_TOKEN=TOKEN
        ) as api:
            yield Stack(own, api.url, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}")


async def scrape_text(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


async def scrape(url: str, token: str | None = None) -> Samples:
    return parse(await scrape_text(url, token))


# the series a family of each type is queried by (a counter's family is named without its _total)
SERIES_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_names(text: str) -> set[str]:
    """Every series name a query may use: those with samples, and those of families declared without
    any yet (a gauge by warehouse with no stock-out, a counter of refusals nobody has made)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",))}
    return names


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def place_via_api(http: httpx.AsyncClient, key: str, doc: dict[str, Any]) -> httpx.Response:
    answer = await http.post("/orders?wait=true", json=doc, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code in (200, 201), answer.text
    return answer


async def test_counters_move_by_what_the_orders_did(stack: Stack, sessions, api_keys, settings):
    source, support = api_keys[Role.source], api_keys[Role.support]
    skus = add_products(sessions, {"MUG": 10})
    before_api = await scrape(stack.api_metrics, TOKEN)
    before_worker = await scrape(stack.worker_metrics)

    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as http:
        kept, cancelled = (order_doc([(skus["MUG"], 1)], channel=CHANNEL) for _ in range(2))
        declined = order_doc(
            [(skus["MUG"], 1)], channel=CHANNEL, payment={"method": "card", "token": "tok_declined"}
        )
        answers = [await place_via_api(http, source, doc) for doc in (kept, cancelled, declined)]
        assert [a.json()["status"] for a in answers][2] == "rejected"
        placed_status = {str(a.status_code) for a in answers}
        assert placed_status == {"201"}
        stop = await http.post(
            f"/orders/{cancelled['order_id']}/cancel",
            json={"reason": "changed mind"},
            headers=as_(api_keys, Role.support),
        )
        assert stop.status_code == 200, stop.text
        await eventually(
            lambda: http.get(
                f"/orders/{cancelled['order_id']}", headers={"Authorization": f"Bearer {support}"}
            ),
            lambda answer: answer.json()["status"] == "cancelled",
        )
        reads_before = value(
            await scrape(stack.api_metrics, TOKEN),
            "oms_api_requests_total",
            method="GET",
            route="/orders/{order_id}",
        )
        assert (
            await http.get(f"/orders/{kept['order_id']}", headers=as_(api_keys, Role.source))
        ).status_code == 200
        assert (await http.get("/no/such/path")).status_code == 404
        codec = EncryptionCodec(key_ring(settings))

        decoded = await http.post(
            "/codec/decode",
            json=body(*sealed(codec, "order-x", plain({"a": 1}))),
            headers=as_(api_keys, Role.support),
        )
        assert decoded.status_code == 200
        refused = await http.post(
            "/codec/decode",
            content=b"[]",
            headers={**as_(api_keys, Role.support), "Content-Type": "application/json"},
        )
        assert refused.status_code == 400

    # the database figures are cached for a few seconds: poll until this module's orders show
    async def api_now() -> Samples:
        return await scrape(stack.api_metrics, TOKEN)

    after_api = await eventually(
        api_now, lambda s: delta(before_api, s, "oms_orders_total", outcome="cancelled", channel=CHANNEL) >= 1
    )

    def orders(outcome, **labels):
        return delta(before_api, after_api, "oms_orders_total", outcome=outcome, channel=CHANNEL, **labels)

    assert orders("placed") == 3
    assert orders("confirmed") == 2
    assert orders("rejected") == orders("rejected", reason=ReasonCode.payment_declined) == 1
    assert orders("cancelled") == orders("cancelled", reason=ReasonCode.cancelled_by_support) == 1

    # the API's own counts: by route template and status, never the raw path
    def requests(**labels):
        return delta(before_api, after_api, "oms_api_requests_total", **labels)

    assert requests(method="POST", route="/orders", status="201") == 3
    assert requests(method="POST", route="/orders/{order_id}/cancel", status="200") == 1
    assert (
        value(after_api, "oms_api_requests_total", method="GET", route="/orders/{order_id}") - reads_before
        == 1
    )
    assert requests(route="unmatched", status="404") == 1
    assert not any(kept["order_id"] in dict(labels).get("route", "") for _, labels in after_api)
    durations = delta(
        before_api, after_api, "oms_api_request_duration_seconds_count", method="POST", route="/orders"
    )
    assert durations == 3
    assert delta(before_api, after_api, "oms_codec_requests_total", operation="decode", outcome="ok") == 1
    assert (
        delta(before_api, after_api, "oms_codec_requests_total", operation="decode", outcome="refused") == 1
    )
    assert delta(before_api, after_api, "oms_codec_payloads_total", operation="decode") == 1
    assert value(after_api, "oms_database_figures_up") == 1
    assert ("oms_outbox_backlog", frozenset()) in after_api

    # the worker's: every attempt of every step, by step and outcome; the SDK's metrics next to them
    after_worker = await scrape(stack.worker_metrics)

    def steps(step, outcome):
        return delta(
            before_worker, after_worker, "oms_step_duration_seconds_count", step=step, outcome=outcome
        )

    assert steps("admit_order", "completed") == 3
    assert steps("authorize_payment", "completed") == 2
    assert steps("authorize_payment", "refused") == 1
    assert steps("void_payment", "completed") == 1  # the cancelled order's authorization
    buckets = value(
        after_worker,
        "oms_step_duration_seconds_bucket",
        step="authorize_payment",
        outcome="completed",
        le="+Inf",
    )
    assert buckets == value(
        after_worker, "oms_step_duration_seconds_count", step="authorize_payment", outcome="completed"
    )
    assert (
        delta(
            before_worker,
            after_worker,
            "temporal_activity_execution_latency_seconds_count",
            activity_type="authorize_payment",
        )
        == 3
    )
    assert value(after_worker, "temporal_workflow_task_schedule_to_start_latency_seconds_count") > 0
    # the database figures come from the API alone: a sum over processes counts each once
    assert not any(name.startswith("oms_orders") for name, _ in after_worker)


async def test_health_and_the_token(stack: Stack):
    async with httpx.AsyncClient(timeout=30) as http:
        worker = await http.get(f"{stack.worker_metrics}/healthz")
        assert worker.status_code == 200 and worker.json() == {"status": "ok", "detail": "polling"}
        assert (await http.get(f"{stack.api_metrics}/healthz")).status_code == 200
        assert (await http.get(f"{stack.api_metrics}/metrics")).status_code == 401
        wrong = await http.get(f"{stack.api_metrics}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert (await http.get(f"{stack.worker_metrics}/other")).status_code == 404
        # the public API has no /metrics: it is on the metrics port only
        assert (await http.get(f"{stack.api}/metrics")).status_code == 404


async def test_the_worker_health_follows_its_pollers(client: Client, sessions, settings: Settings):
    """503 before the worker polls, 200 while it does, 503 once it stopped: the endpoint over HTTP,
    the worker in this process on a task queue of its own."""
    liveness = Liveness()
    endpoint = MetricsEndpoint("127.0.0.1", 0, health=liveness).start()
    own = settings.model_copy(update={"task_queue": unique("health-queue"), "sandbox_parties": False})

    async def health() -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"http://127.0.0.1:{endpoint.port}/healthz")
        return answer.status_code, answer.json()["detail"]

    try:
        assert await health() == (503, "starting: not polling yet")
        workers = build_worker(client, sessions, own)
        liveness.workers = workers.workers
        assert (await health())[0] == 503  # built, not polling yet
        async with workers, liveness.heartbeat:
            assert await health() == (200, "polling")
        assert await health() == (503, f"not polling task queue {own.task_queue!r}")
    finally:
        endpoint.stop()


def test_a_metrics_port_in_use_stops_the_worker_with_one_line(settings: Settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "worker.py"],
            cwd=PROJECT_DIR,
            env=process_env(settings, OMS_METRICS_PORT=str(port), OMS_METRICS_HOST="127.0.0.1"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: OMS_METRICS_PORT: port {port} on 127.0.0.1 is already in use"
        " (another process listens there; pick another port)"
    )


def test_the_database_figures(tmp_path: Path):
    """Over an empty database of their own: the outbox's backlog and age, orders needing attention,
    stock-outs, orders by outcome (imported orders left out)."""
    now = datetime.now(UTC)
    with fresh_database(tmp_path, "metrics") as (_, sessions):
        with sessions.begin() as s:
            for n, (channel, imported) in enumerate([("web", None), ("phone", None), ("web", "legacy")]):
                add_order_row(
                    s,
                    f"M-{n}",
                    "C-1",
                    status="rejected",
                    payment_status="declined",
                    placed_at=now,
                    channel=channel,
                    imported_from=imported,
                )
                s.add(t.OrderEvent(order_id=f"M-{n}", seq=1, at=now, type=OrderEventType.order_received))
                s.add(
                    t.OrderEvent(
                        order_id=f"M-{n}",
                        seq=2,
                        at=now,
                        type=OrderEventType.order_rejected,
                        reason_code=ReasonCode.out_of_stock,
                    )
                )
            s.add(t.OrderEvent(order_id="M-0", seq=3, at=now, type=OrderEventType.step_stuck))
            for n, (age, sent) in enumerate(
                [(timedelta(minutes=7), None), (timedelta(minutes=1), None), (timedelta(hours=1), now)]
            ):
                s.add(
                    t.Notification(
                        order_id="M-0",
                        kind="k",
                        recipient="r@example.com",
                        subject="s",
                        body="b",
                        idempotency_key=f"k{n}",
                        created_at=now - age,
                        sent_at=sent,
                    )
                )
            s.add(t.Warehouse(code="W9", name="W9"))
            s.add(t.Product(sku="S1", name="S1", price=1, currency="EUR", weight_g=1))
            s.add(t.Product(sku="S2", name="S2", price=1, currency="EUR", weight_g=1))
            s.flush()
            s.add(t.Stock(sku="S1", warehouse="W9", on_hand=2, reserved=2))
            s.add(t.Stock(sku="S2", warehouse="W9", on_hand=3, reserved=1))
        samples = parse_collected(DatabaseCollector(lambda: monitoring_figures(sessions, now)))
    assert samples[("oms_outbox_backlog", frozenset())] == 2
    assert 420 <= samples[("oms_outbox_oldest_age_seconds", frozenset())] < 421
    assert samples[("oms_orders_needing_attention", frozenset())] == 1
    assert samples[("oms_stock_outs", frozenset({("warehouse", "W9")}))] == 1
    placed = {
        dict(labels)["channel"]: v
        for (name, labels), v in samples.items()
        if name == "oms_orders_total" and ("outcome", "placed") in labels
    }
    assert placed == {"web": 1, "phone": 1}  # the imported web order is history, not counted
    assert value(samples, "oms_orders_total", outcome="rejected", reason="out_of_stock") == 2
    assert samples[("oms_orders_by_status", frozenset({("status", "rejected")}))] == 2


def parse_collected(collector: DatabaseCollector) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in collector.collect()
        for s in family.samples
    }


# --- the deploy files -------------------------------------------------------------------------------

METRIC_NAME = re.compile(r"\b((?:oms|temporal)_[a-z0-9_]+)")


def referenced_metrics(expression: str) -> set[str]:
    return set(METRIC_NAME.findall(expression))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alert_rules_and_scrape_config_are_well_formed():
    """The structure promtool would check (promtool is not installed here: see docs/observability.md)."""
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", rule["alert"])
            assert rule["expr"].strip() and rule["labels"]["severity"] in {"page", "ticket"}
            assert {"summary", "description"} <= set(rule["annotations"])
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "OmsOrdersNeedAttention",
        "OmsOutboxStuck",
        "TemporalWorkflowTaskFailures",
        "TemporalScheduleToStartHigh",
    } <= names
    scrape = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert scrape["rule_files"] == ["alerts.yml"]
    # every replica of the Compose services, by DNS, on OMS_METRICS_PORT
    targets = {
        job["job_name"]: [(d["names"], d["port"]) for d in job["dns_sd_configs"]]
        for job in scrape["scrape_configs"]
    }
    assert targets == {"oms-worker": [(["worker", "analytics-worker"], 9464)], "oms-api": [(["api"], 9464)]}
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and len(dashboard["panels"]) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


# SDK metrics that a healthy run never records (the SDK exports a series once it has a value): their
# names as the SDK's documentation gives them, with our exporter's suffixes (_total, _seconds).
# https://docs.temporal.io/references/sdk-metrics (workflow_task_execution_failed: a counter)
RECORDED_ON_FAILURE_ONLY = {"temporal_workflow_task_execution_failed_total"}


async def test_the_dashboard_and_alerts_use_only_exported_metrics(stack: Stack, sessions, api_keys):
    skus = add_products(sessions, {"CUP": 2})
    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as http:
        await place_via_api(http, api_keys[Role.source], order_doc([(skus["CUP"], 1)], channel=CHANNEL))
    exported = exported_names(await scrape_text(stack.worker_metrics))
    exported |= exported_names(await scrape_text(stack.api_metrics, TOKEN))
    exported |= RECORDED_ON_FAILURE_ONLY
    used = set().union(*map(referenced_metrics, dashboard_expressions() + [r["expr"] for r in alert_rules()]))
    assert used, "no metric found in the dashboard or the rules"
    assert used - exported == set()
    assert any(n.startswith("oms_") for n in used) and any(n.startswith("temporal_") for n in used)
