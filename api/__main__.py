"""`python -m api`: serve the HTTP API with uvicorn on OMS_API_HOST:OMS_API_PORT until SIGINT/SIGTERM."""

from __future__ import annotations

import json
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.app import create_app
from config import get_settings
from connection import TemporalUnavailable, check_temporal_settings, exit_without_finalizing
from logs import configure_logging
from observability.api_endpoint import start_api_metrics
from observability.endpoint import MetricsPortUnavailable
from observability.tracing import SERVICE_API, TracingMisconfigured, start_tracing

# What uvicorn answers, before the application sees anything, to a request that is not valid HTTP (a
# control character in a header, such as an Idempotency-Key): the API's error shape, not plain text.
_NOT_HTTP = json.dumps(
    {
        "error": "invalid_http",
        "detail": "the request is not valid HTTP: a header or the request line holds a character HTTP "
        "does not allow there (a control character?)",
        "problems": [],
    }
).encode()


class JsonErrorsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(_NOT_HTTP)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + _NOT_HTTP)
        self.transport.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format)
    try:
        # its Temporal client connects lazily (it serves 503 while Temporal is down), so a certificate
        # file that is not there would only show in /readyz: stop here instead, with the setting named
        check_temporal_settings(settings)
        # OMS_METRICS_PORT: before uvicorn, so that a port in use stops it here with one line
        start_api_metrics(settings)
        start_tracing(SERVICE_API)  # before create_app, which instruments itself when tracing
    except (TemporalUnavailable, MetricsPortUnavailable, TracingMisconfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_without_finalizing(1)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        http=JsonErrorsProtocol,
        log_config=None,  # our logging format, one stream
        access_log=False,  # mutating requests get an audit line; reads are not logged one by one
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    exit_without_finalizing(0)


if __name__ == "__main__":
    main()
