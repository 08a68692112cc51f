"""The Temporal SDK's own metrics (workflow task failures, schedule-to-start latency, activity latency,
slots, pollers...), from the SDK's Prometheus exporter.

The SDK's exporter is a server of its own, in its native core; it cannot be handed our registry nor
tell us the port it bound. So the worker runs it on a free port of the loopback interface, unreachable
from outside, and its `/metrics` (observability/endpoint.py) appends that text to the business
metrics': one port, one scrape per worker.
"""

from __future__ import annotations

import socket
import urllib.request

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from observability.endpoint import MetricsPortUnavailable

SCRAPE_TIMEOUT = 5.0  # seconds: the exporter is in this process, a slow answer means trouble


class SdkMetrics:
    """A Temporal runtime exporting its metrics on an internal port; `text()` reads them."""

    def __init__(self) -> None:
        self.port = _free_loopback_port()
        try:
            self.runtime = self._runtime()
        except ValueError as exc:  # the SDK's "Failed starting Prometheus exporter: ..."
            raise MetricsPortUnavailable(
                f"OMS_METRICS_PORT: the Temporal SDK's metrics exporter cannot start on internal port"
                f" {self.port}: {exc} (start the worker again)"
            ) from None

    def _runtime(self) -> Runtime:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=f"127.0.0.1:{self.port}",
                    # Prometheus' conventions: counters end in _total, durations in seconds
                    counters_total_suffix=True,
                    unit_suffix=True,
                    durations_as_seconds=True,
                ),
            )
        )

    def text(self) -> bytes:
        """The SDK's metrics in Prometheus' text format (empty before the first worker polls)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as answer:  # noqa: S310 - our loopback
            body: bytes = answer.read()
        return body


def _free_loopback_port() -> int:
    # Another process could take it between this close and the SDK's bind: the SDK then refuses to
    # start (the worker's start fails loudly, and a restart picks another port).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
