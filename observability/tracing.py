"""Traces: OpenTelemetry spans of an order's path, sent over OTLP/HTTP to a collector.

One trace runs from the HTTP request (or the CLI command) through the Temporal client's start of the
workflow, the workflow and its activities, to their SQL statements. It is on when
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, with the standard OTEL_*
variables for the rest (docs/configuration.md#traces).

Off, it costs nothing: no OpenTelemetry SDK is imported and nothing is installed; every hook below
returns at once. Each process calls `start_tracing` at start and `stop_tracing` before it exits (the
latter from `connection.exit_without_finalizing`); the hooks are called where the traced parts are
built: `connect()` (the Temporal client, whose interceptor also traces the workers built on it),
`create_app` (FastAPI) and `make_engine` (SQLAlchemy).

The provider is this module's, not OpenTelemetry's global one, which can be set only once per process:
the tests trace into an in-memory exporter (`tracing_to`) next to tests that trace nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy import Engine
    from temporalio.client import Interceptor

    _ExporterBase = SpanExporter
else:
    # QuietExporter is a SpanExporter to the type checker; at run time it needs none of its code (the
    # batch processor only calls export, shutdown and force_flush), so the SDK stays unimported when off
    _ExporterBase = object

log = logging.getLogger("oms.tracing")

SERVICE_WORKER = "oms-worker"
SERVICE_API = "oms-api"
SERVICE_CLI = "oms-cli"

# The variables naming where spans go, the more specific first (as the OTLP exporter reads them)
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
PROTOCOL = "http/protobuf"  # OTLP/HTTP: no grpcio in the image (a dependency of its own, and large)
TRACES_PATH = "v1/traces"  # what the exporter appends to OTEL_EXPORTER_OTLP_ENDPOINT

# Probes answer every few seconds for ever: a trace each would bury the orders' (regexes, searched)
UNTRACED_URLS = "/healthz$,/readyz$"

# The OTLP exporter's logger: it logs each failed batch (and each retry before it gives up)
EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
# The batch processor's: "Queue full, dropping span." while the exports fail and spans pile up
PROCESSOR_LOGGER = "opentelemetry.sdk._shared_internal"


class TracingMisconfigured(Exception):
    """An OTEL_* variable this system cannot work with. The message is one line naming it: the worker,
    the API and the CLI print it and stop, as for a Temporal setting at fault."""


_provider: TracerProvider | None = None  # set while this process traces
_exporter: QuietExporter | None = None  # start_tracing's, told when the process stops


def traces_url(environ: Mapping[str, str]) -> str | None:
    """Where the spans go (the OTLP/HTTP traces URL), or None when tracing is off: no endpoint set, or
    turned off (OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none). Raises TracingMisconfigured for an
    endpoint that is not an http(s) URL, another protocol or another exporter."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if exporter == "none":
        return None
    given = [(name, environ[name].strip()) for name in ENDPOINT_VARIABLES if environ.get(name, "").strip()]
    if not given:
        return None
    name, endpoint = given[0]
    if exporter != "otlp":
        raise TracingMisconfigured(
            f"OTEL_TRACES_EXPORTER={exporter!r}: traces go over OTLP only (otlp), or nowhere (none)"
        )
    protocols = [(v, environ[v].strip()) for v in PROTOCOL_VARIABLES if environ.get(v, "").strip()]
    if protocols and protocols[0][1] != PROTOCOL:
        variable, protocol = protocols[0]
        raise TracingMisconfigured(
            f"{variable}={protocol!r}: traces are sent over OTLP/HTTP only ({PROTOCOL}, a collector's"
            " port 4318)"
        )
    _check_url(name, endpoint)
    if name == "OTEL_EXPORTER_OTLP_ENDPOINT":
        return f"{endpoint.removesuffix('/')}/{TRACES_PATH}"
    return endpoint


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number from 0 to 65535)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        usable = False
    if not usable:
        raise TracingMisconfigured(
            f"{name}={value!r} is not an http(s) URL: write it like http://otel-collector:4318"
        )


def start_tracing(service_name: str) -> bool:
    """Trace this process if the OTEL_* variables ask for it; returns whether it does. `service_name`
    names the process in the traces unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) does.
    Raises TracingMisconfigured (see traces_url): called before the process does anything else."""
    global _provider, _exporter
    url = traces_url(os.environ)  # as the exporter reads the rest: from this process's environment
    if url is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # the exporter reads the rest of its settings (headers, timeout, compression, certificates) from
    # the OTEL_EXPORTER_OTLP_* variables itself; the batch processor its own from OTEL_BSP_*
    _exporter = QuietExporter(OTLPSpanExporter(endpoint=url), url)
    _provider = tracer_provider(service_name)
    _provider.add_span_processor(BatchSpanProcessor(_exporter))
    log.info("sending spans of %s to %s", _provider.resource.attributes.get("service.name"), url)
    return True


def tracer_provider(service_name: str) -> TracerProvider:
    """A provider of spans from the service named by OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES),
    else `service_name`; sampled as OTEL_TRACES_SAMPLER says (the SDK's default: every trace)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return TracerProvider(resource=resource)


def stop_tracing() -> None:
    """Send the spans still queued and stop tracing (before the process exits; nothing when off)."""
    global _provider, _exporter
    if _exporter is not None:
        _exporter.stopping = True
    if _provider is not None:
        _provider.shutdown()
    if _exporter is not None and _exporter.dropped:  # the count of what the one warning was about
        log.info("%d spans were not sent to %s", _exporter.dropped, _exporter.url)
    _provider = _exporter = None


@contextmanager
def tracing_to(provider: TracerProvider | None) -> Iterator[None]:
    """Trace into `provider` for the block (the tests: an in-memory exporter), then as before."""
    global _provider
    before, _provider = _provider, provider
    try:
        yield
    finally:
        _provider = before


@contextmanager
def span(name: str) -> Iterator[None]:
    """A span around the block, the root of what it does (a CLI command); nothing when off."""
    if _provider is None:
        yield
        return
    with _provider.get_tracer("oms").start_as_current_span(name):
        yield


def client_interceptors() -> list[Interceptor]:
    """The Temporal client's interceptors: the SDK's TracingInterceptor when tracing. It spans the
    client's calls (the update-with-start that places an order) and carries the trace in their
    headers; being a worker interceptor too, the SDK adds it to every worker built on the client, where
    it spans the workflow (RunWorkflow, HandleUpdate, StartActivity: zero-length spans, no workflow
    commands) and each activity (RunActivity), the trace carried on from the workflow's headers."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer("temporalio"))]


def instrument_app(app: FastAPI) -> None:
    """A span per HTTP request (not the probes), the parent of what the request does."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        meter_provider=NoOpMeterProvider(),  # traces only: the metrics are not made here
        excluded_urls=UNTRACED_URLS,
        exclude_spans=["receive", "send"],  # one span per request, not one per body chunk as well
    )


def instrument_engine(engine: Engine) -> None:
    """A span per SQL statement made inside a trace (the statement's text, never its values)."""
    if _provider is None:
        return
    # Per engine, not SQLAlchemyInstrumentor().instrument(): that patches create_engine for the whole
    # process, once (a second call, for the API's read engine, is refused), with the global provider
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeterProvider

    connections = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections")
    EngineTracer(InsideTracesOnly(_provider.get_tracer("sqlalchemy")), engine, connections)


class InsideTracesOnly:
    """A tracer that starts a span only inside a trace. The statements made outside any request or step
    (the outbox dispatcher's poll every second, the API key cache's reads) would each be a trace of
    their own: noise that buries the orders' traces."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Span:
        from opentelemetry import trace

        if not trace.get_current_span(kwargs.get("context")).is_recording():
            return trace.INVALID_SPAN
        return self.tracer.start_span(name, *args, **kwargs)


class QuietExporter(_ExporterBase):
    """Sends through `exporter` and says so once when a collector stops taking spans, and once when it
    takes them again. The OTLP exporter logs every failed batch, each retry too, and the batch processor
    every twenty seconds that its queue is full: with the collector down, lines without end about
    something that does not stop an order. Those records are dropped (the first of a failure kept: the
    reason this warning gives); the spans made meanwhile are dropped too, and counted."""

    def __init__(self, exporter: SpanExporter, url: str) -> None:
        self.exporter, self.url = exporter, url
        self.failing = False
        self.dropped = 0
        self.stopping = False  # set by stop_tracing: a collector known down gets no last wait
        self.reasons = _FirstRecord()
        logging.getLogger(EXPORTER_LOGGER).addFilter(self.reasons)
        logging.getLogger(PROCESSOR_LOGGER).addFilter(self._queue_full_while_failing)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.failing and self.stopping:
            result = SpanExportResult.FAILURE
        else:
            if not self.failing:
                self.reasons.first = None
            result = self.exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.dropped += len(spans)
            if not self.failing:
                self.failing = True
                log.warning(
                    "cannot send spans to %s (%s); dropping them until it takes them again, "
                    "orders are not affected",
                    self.url,
                    self.reasons.first or "no answer",
                )
        elif self.failing:
            self.failing = False
            log.warning("%s takes spans again; %d were dropped meanwhile", self.url, self.dropped)
            self.dropped = 0
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()
        # the library's records are its own again (a test process goes on after its tracing stops)
        logging.getLogger(EXPORTER_LOGGER).removeFilter(self.reasons)
        logging.getLogger(PROCESSOR_LOGGER).removeFilter(self._queue_full_while_failing)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def _queue_full_while_failing(self, record: logging.LogRecord) -> bool:
        return not (self.failing and str(record.msg).startswith("Queue full"))


class _FirstRecord(logging.Filter):
    """Drops a logger's records, keeping the first one's message since `first` was reset: the cause
    (the retries' "Transient error ConnectionError(...)"), not the last ("... due to timeout")."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.first is None:
            self.first = " ".join(record.getMessage().split())[:300]
        return False
