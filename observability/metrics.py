"""The business metrics a process counts itself, in prometheus-client's default registry.

Process-local: each worker or API replica counts what it did, so a sum over replicas is the system's
total (`sum by (...)`). What is read from the database instead (orders by outcome, the outbox, orders
needing attention) is in database_collector.py and only the API exports it.

Names start with `oms_`; labels take bounded values only (step names, route templates, enums), never
an order id or a raw path.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `_created` series next to every counter and histogram: twice the series, and Prometheus' text
# format has no use for them
disable_created_metrics()


class StepOutcome(StrEnum):
    """How one attempt of a step (an activity) ended."""

    completed = "completed"
    refused = "refused"  # a business refusal (a BENIGN ApplicationError): an expected answer
    failed = "failed"  # anything else: it will be retried, or the retries gave up


class CodecOutcome(StrEnum):
    """How one call of the codec server ended."""

    ok = "ok"
    refused = "refused"  # not a Payloads message: nothing opened
    undecryptable = "undecryptable"  # a payload under a key this server does not hold


# Steps range from a local database write (milliseconds) to a payment gateway's call (seconds).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# ?wait=true holds a request up to OMS_API_WAIT_TIMEOUT (30 s): the top buckets see those.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The worker: every attempt of every step, local activities included (step_timings.py). An attempt,
# not a step: a step retried three times is three observations, which is what its latency is made of.
STEP_DURATION = Histogram(
    "oms_step_duration_seconds",
    "How long one attempt of an order's step (an activity) took, by step and outcome.",
    ["step", "outcome"],
    buckets=STEP_BUCKETS,
)

# The API: every request, by the route's template (`/orders/{order_id}`, never the raw path) or
# `unmatched` for a path no route serves (a scanner's guesses stay one series).
API_REQUESTS = Counter(
    "oms_api_requests",
    "HTTP requests the API answered, by method, route template and status code.",
    ["method", "route", "status"],
)
API_REQUEST_DURATION = Histogram(
    "oms_api_request_duration_seconds",
    "How long the API took to answer a request, by method and route template.",
    ["method", "route"],
    buckets=REQUEST_BUCKETS,
)
UNMATCHED_ROUTE = "unmatched"
# A method outside these is counted as `other`: a client choosing the method must not choose a series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    method = method if method in KNOWN_METHODS else "other"
    route = route or UNMATCHED_ROUTE
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_REQUEST_DURATION.labels(method, route).observe(seconds)


# The API's codec server (api/routes/codec.py): the Web UI's and CLI's decodes and encodes.
CODEC_REQUESTS = Counter(
    "oms_codec_requests",
    "Calls of the codec server (/codec/decode, /codec/encode), by operation and outcome.",
    ["operation", "outcome"],
)
CODEC_PAYLOADS = Counter(
    "oms_codec_payloads",
    "Payloads the codec server opened (decode) or sealed (encode).",
    ["operation"],
)


def count_codec_call(operation: str, outcome: CodecOutcome, payloads: int) -> None:
    CODEC_REQUESTS.labels(operation, outcome.value).inc()
    if outcome == CodecOutcome.ok:
        CODEC_PAYLOADS.labels(operation).inc(payloads)
