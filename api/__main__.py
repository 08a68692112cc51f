"""`python -m api`: serve the HTTP API with uvicorn on OMS_API_HOST:OMS_API_PORT until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

import uvicorn

from api.app import create_app
from config import get_settings
from connection import exit_without_finalizing


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our logging format, one stream
        access_log=False,  # mutating requests get an audit line; reads are not logged one by one
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    exit_without_finalizing(0)


if __name__ == "__main__":
    main()
