"""The HTTP endpoint a process serves on OMS_METRICS_PORT: `GET /metrics` for Prometheus and
`GET /healthz` for probes (200 while the process does its work, 503 otherwise; the worker's says
whether its pollers run).

A port of its own, not a route of the API: the probes and the scraper reach it inside the cluster,
and it is never published (compose) or routed (an ingress) the way the API's port is. It holds
aggregate counts only, no order id, no customer data; OMS_METRICS_TOKEN, where set, makes /metrics
want `Authorization: Bearer <token>` (/healthz stays open: probes carry no credentials, and it says
nothing but up or down).

Served from threads (the standard library's server), not the process's event loop: a scrape never
waits on the worker's asyncio loop, and the health check can notice that loop stalling.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import CollectorRegistry

from config import Settings
from observability.health import Health, always_healthy

log = logging.getLogger("oms.metrics")

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"


class MetricsPortUnavailable(Exception):
    """The endpoint cannot listen as configured: one line naming the setting, printed without a traceback."""


def metrics_endpoint(
    settings: Settings,
    *,
    health: Callable[[], Health] = always_healthy,
    extra: Callable[[], bytes] | None = None,
) -> MetricsEndpoint:
    """The endpoint OMS_METRICS_HOST, _PORT and _TOKEN ask for (not started); the port must be set."""
    assert settings.metrics_port is not None, "OMS_METRICS_PORT is unset: no endpoint"
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    return MetricsEndpoint(
        settings.metrics_host, settings.metrics_port, token=token, health=health, extra=extra
    )


class MetricsEndpoint:
    """Serves `registry` (plus what `extra` returns, e.g. the SDK's metrics) at /metrics and what
    `health` says at /healthz, on host:port. `start()` binds and serves from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        health: Callable[[], Health] = always_healthy,
        extra: Callable[[], bytes] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host, self.requested_port = host, port
        self._token, self._health, self._extra, self._registry = token, health, extra, registry
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the requested one; the system's choice for 0)."""
        assert self._server is not None, "not started"
        port: int = self._server.server_address[1]
        return port

    def start(self) -> MetricsEndpoint:
        try:
            server = ThreadingHTTPServer((self.host, self.requested_port), _handler(self))
        except OSError as exc:
            raise MetricsPortUnavailable(_why(self.host, self.requested_port, exc)) from None
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="oms-metrics", daemon=True).start()
        log.info(
            "metrics and health on http://%s:%d (%s, %s)", self.host, self.port, METRICS_PATH, HEALTH_PATH
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self._token}".encode())

    def metrics(self) -> bytes:
        text = generate_latest(self._registry)
        if self._extra is not None:
            try:
                text += self._extra()
            except OSError as exc:  # the SDK's exporter did not answer: serve ours, say why in the log
                log.warning("metrics: the Temporal SDK's metrics are unavailable: %s", exc)
        return text

    def health(self) -> Health:
        return self._health()


def _why(host: str, port: int, exc: OSError) -> str:
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"OMS_METRICS_PORT: {where} is already in use (another process listens there; pick another port)"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"OMS_METRICS_HOST: cannot listen on {where}: not an address of this machine"
    return f"OMS_METRICS_PORT: cannot listen on {where}: {exc.strerror or exc}"


def _handler(endpoint: MetricsEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "oms-metrics"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            path = self.path.split("?", 1)[0]
            if path == METRICS_PATH:
                if not endpoint.authorized(self.headers.get("Authorization")):
                    self._answer(
                        HTTPStatus.UNAUTHORIZED, _error("unauthorized", "a bearer token is required")
                    )
                    return
                self._answer(HTTPStatus.OK, endpoint.metrics(), CONTENT_TYPE_PLAIN_0_0_4)
            elif path == HEALTH_PATH:
                health = endpoint.health()
                status = HTTPStatus.OK if health.ok else HTTPStatus.SERVICE_UNAVAILABLE
                body = {"status": "ok" if health.ok else "unavailable", "detail": health.detail}
                self._answer(status, json.dumps(body).encode())
            else:
                detail = f"this port serves {METRICS_PATH} and {HEALTH_PATH} only"
                self._answer(HTTPStatus.NOT_FOUND, _error("not_found", detail))

        def _answer(self, status: HTTPStatus, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
            pass  # a scrape every few seconds and a probe every few more: not worth a log line each

    return Handler


def _error(error: str, detail: str) -> bytes:
    """The API's error shape (api/errors.py)."""
    return json.dumps({"error": error, "detail": detail, "problems": []}).encode()
