"""Traces (observability/tracing.py): one trace from `POST /orders` to the order's SQL statements, the
trace ids in the JSON logs, a collector that does not answer, a malformed endpoint, and nothing loaded
when tracing is off.

The traced API and worker run in this process (uvicorn and build_worker on the test's event loop), so
that the spans land in an in-memory exporter; the provider is the module's (`tracing_to`), never
OpenTelemetry's global one, so the other modules sharing this process trace nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from api.app import create_app
from config import PROJECT_DIR, Settings
from connection import connect
from db import SessionFactory, make_engine, make_session_factory
from domain.api_keys import Role
from logs import JsonFormatter
from models.workflow_names import order_workflow_id
from observability.tracing import (
    QuietExporter,
    TracingMisconfigured,
    client_interceptors,
    traces_url,
    tracing_to,
)
from tests.api_server import free_port
from tests.conftest import TEST_CONVERTER
from tests.helpers import add_products, as_, eventually, gate_activities, order_doc, place, wait_status
from tests.test_replay import HISTORIES
from tests.worker_process import running_worker
from worker import WORKFLOWS, build_activities, build_worker, workflow_runner

INSIDE_AN_ACTIVITY = "inside reserve_stock"


@dataclass
class Traced:
    """The API (at `url`) and a worker, traced into `spans`, on a task queue of their own."""

    url: str
    settings: Settings
    client: Client
    spans: InMemorySpanExporter


def note_inside_the_activity(_request: object) -> bool:
    """Logs a line from inside reserve_stock (the real one runs next): never holds it."""
    logging.getLogger("oms.test").info(INSIDE_AN_ACTIVITY)
    return False


@pytest.fixture(scope="module")
async def traced(settings: Settings, client: Client, sessions: SessionFactory) -> AsyncIterator[Traced]:
    # `client` and `sessions` first: the suite's own client and engine stay untraced
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-traces-{uuid.uuid4().hex[:6]}"})
    with tracing_to(provider):
        traced_client = await connect(own)
        engine = make_engine(own.database_url)
        traced_sessions = make_session_factory(engine)
        activities, _ = gate_activities(
            build_activities(traced_sessions, traced_client, own),
            [("reserve_stock", note_inside_the_activity)],
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(own, client=traced_client),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
            )
        )
        async with build_worker(traced_client, traced_sessions, own, activities=activities):
            serving = asyncio.create_task(server.serve())
            await eventually(lambda: server.started or serving.done(), bool, what="the API started")
            assert not serving.done(), serving
            try:
                yield Traced(f"http://127.0.0.1:{port}", own, traced_client, spans)
            finally:
                server.should_exit = True
                await serving
        engine.dispose()
    provider.shutdown()


class JsonLines(logging.Handler):
    """Formats each record as the JSON log does, when it is made (the span current then)."""

    def __init__(self) -> None:
        super().__init__()
        self.formatter_ = JsonFormatter()
        self.lines: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.formatter_.format(record)))


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def trace_of(spans: InMemorySpanExporter, order_id: str) -> list[ReadableSpan]:
    """The spans of the trace the order's workflow run is in."""
    finished = spans.get_finished_spans()
    runs = [
        s
        for s in finished
        if s.name.startswith("RunWorkflow:")
        and (s.attributes or {}).get("temporalWorkflowID") == order_workflow_id(order_id)
    ]
    if not runs:
        return []
    trace_id = runs[0].context.trace_id
    return [s for s in finished if s.context.trace_id == trace_id]


def names(spans: list[ReadableSpan]) -> set[str]:
    return {s.name for s in spans}


async def test_one_trace_runs_from_the_http_request_to_the_order_s_sql(
    traced: Traced, sessions: SessionFactory, api_keys: dict[Role, str], json_lines: JsonLines
):
    skus = add_products(sessions, {"MUG": 5})
    doc = order_doc([(skus["MUG"], 1)])
    async with httpx.AsyncClient(base_url=traced.url, timeout=60) as http:
        answer = await http.post(
            "/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"}
        )
    assert answer.status_code == 201, answer.text
    await wait_status(traced.client, doc["order_id"], "confirmed", "picking", "packed", "shipped")

    steps = {"RunActivity:admit_order", "RunActivity:authorize_payment", "RunActivity:reserve_stock"}
    trace = await eventually(
        lambda: trace_of(traced.spans, doc["order_id"]),
        lambda spans: steps <= names(spans),
        what="the order's steps in its trace",
    )
    by_name = {s.name: s for s in trace}
    request = by_name["POST /orders"]  # the FastAPI server span: the root
    assert request.parent is None
    assert "StartUpdateWithStartWorkflow:OrderWorkflow" in by_name  # ?wait=true: update-with-start
    assert "RunWorkflow:OrderWorkflow" in by_name
    sql = [s for s in trace if s.instrumentation_scope and s.instrumentation_scope.name == "sqlalchemy"]
    activity_span_ids = {s.context.span_id for s in trace if s.name in steps}
    assert any(s.parent and s.parent.span_id in activity_span_ids for s in sql), names(trace)

    # the JSON log lines made in the request and in the activity carry the trace
    trace_id = format(request.context.trace_id, "032x")
    (audit,) = [
        line
        for line in json_lines.lines
        if line["logger"] == "oms.api.audit" and "POST /orders ->" in line["message"]
    ]
    assert audit["trace_id"] == trace_id  # written as the request's span ends: of its trace all the same
    inside = [line for line in json_lines.lines if line["message"] == INSIDE_AN_ACTIVITY]
    assert inside and inside[0]["trace_id"] == trace_id
    assert inside[0]["span_id"] == format(by_name["RunActivity:reserve_stock"].context.span_id, "016x")


async def test_recorded_orders_replay_on_a_traced_worker():
    """Tracing turned on while orders are in flight: their histories, recorded untraced, replay on a
    worker with the tracing interceptor (it adds no workflow command)."""
    with tracing_to(TracerProvider()):
        interceptors = client_interceptors()
    assert interceptors

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for path in HISTORIES:
            yield WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())

    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=TEST_CONVERTER,
        workflow_runner=workflow_runner(),
        interceptors=interceptors,
    )
    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    assert dict(results.replay_failures) == {}
    assert len(HISTORIES) > 20


def test_sql_outside_a_trace_makes_no_span(database_url: str):
    """The outbox's poll every second, the key cache's reads: no trace of their own each."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with tracing_to(provider):
        engine = make_engine(database_url)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        assert spans.get_finished_spans() == ()
        with provider.get_tracer("test").start_as_current_span("a step"):
            connection.exec_driver_sql("SELECT 2")
    engine.dispose()
    statement, step = spans.get_finished_spans()
    assert step.name == "a step" and statement.parent is not None
    assert statement.parent.span_id == step.context.span_id
    assert (statement.attributes or {}).get("db.statement") == "SELECT 2"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


async def test_a_collector_that_does_not_answer_is_said_once_and_orders_flow(
    client: Client, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    log_path = tmp_path / "worker.log"
    unreachable = f"http://127.0.0.1:{closed_port()}"
    environment = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": unreachable,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "0.5",  # each failed batch gives up at once (no backoff fits)
        "OTEL_BSP_SCHEDULE_DELAY": "20",  # ms: a batch per span or two, many failed exports
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
    }
    async with running_worker(settings, log_path, **environment) as (own, _):
        skus = add_products(sessions, {"TEE": 10})
        orders = [await place(client, own, order_doc([(skus["TEE"], 1)])) for _ in range(3)]
        for order_id in orders:
            await wait_status(client, order_id, "confirmed", "picking", "packed", "shipped")
    log = log_path.read_text()
    said = [line for line in log.splitlines() if "oms.tracing: cannot send spans" in line]
    assert len(said) == 1, log
    assert (
        f"cannot send spans to {unreachable}/v1/traces (Failed to export" in said[0]
    )  # the exporter's words
    assert " opentelemetry." not in log  # none of the exporter's or the batch processor's own lines
    (dropped,) = re.findall(r"oms.tracing: (\d+) spans were not sent", log)  # said as the worker stops
    assert int(dropped) >= 30  # many spans, in many batches, failed: one warning


class Collector(BaseHTTPRequestHandler):
    """A collector that takes every batch (OTLP/HTTP answers 200 with an empty body)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_collector_back_again_is_said_once(caplog: pytest.LogCaptureFixture):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/traces"
    exporter = QuietExporter(OTLPSpanExporter(endpoint=url, timeout=0.5), url)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # one export per span: no waiting
    tracer = provider.get_tracer("test")
    caplog.set_level(logging.INFO)
    for n in range(5):
        tracer.start_span(f"lost {n}").end()
    server = ThreadingHTTPServer(("127.0.0.1", port), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracer.start_span("sent").end()
    finally:
        server.shutdown()
        server.server_close()
        provider.shutdown()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 2, said  # nothing from the exporter itself
    assert said[0].startswith(f"cannot send spans to {url} (")
    assert said[1] == f"{url} takes spans again; 5 were dropped meanwhile"


def run_python(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**plain, **environment},
    )


@pytest.mark.parametrize("command", [["worker.py"], ["starter.py", "status", "A-1"], ["-m", "api"]])
def test_a_malformed_endpoint_stops_the_process_at_start_with_one_line(command: list[str]):
    done = run_python(*command, OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318")
    assert done.returncode == 1
    assert done.stderr == (
        "error: OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not an http(s) URL: write it like "
        "http://otel-collector:4318\n"
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otel/t", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"},
            "https://otel/t",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ],
)
def test_where_spans_go_is_read_from_the_standard_variables(environ: dict[str, str], expected: str | None):
    if expected is None or expected.startswith("http"):
        assert traces_url(environ) == expected
    else:
        with pytest.raises(TracingMisconfigured, match=f"^{expected}"):
            traces_url(environ)


def test_off_nothing_of_opentelemetry_s_sdk_is_loaded():
    done = run_python(
        "-c",
        "import sys, worker, api.app, cli\n"
        "from observability.tracing import start_tracing\n"
        "assert not start_tracing('oms-worker')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter',"
        " 'opentelemetry.instrumentation', 'temporalio.contrib.opentelemetry'))))",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
