"""The HTTP API as a real process: `python -m api` on a free port, for the tests to call with httpx."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from config import PROJECT_DIR, Settings

START_TIMEOUT = 180.0  # a loaded 2-core machine can take over 60 s (importing the app alone: 6.6 s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ApiServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def api_env(settings: Settings, port: int, **overrides: str) -> dict[str, str]:
    return process_env(settings, OMS_API_HOST="127.0.0.1", OMS_API_PORT=str(port), **overrides)


def process_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of an OMS process (the API, a worker) on the suite's dev server and database."""
    return {
        **os.environ,
        "OMS_DATABASE_URL": settings.database_url,
        "OMS_TEMPORAL_ADDRESS": settings.temporal_address,
        "OMS_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "OMS_TASK_QUEUE": settings.task_queue,
        "OMS_ANALYTICS_TASK_QUEUE": settings.analytics_task_queue,
        "OMS_DELIVERY_SLA": f"{settings.delivery_sla.total_seconds():.0f}s",
        "OMS_RETURN_WINDOW": f"{settings.return_window.total_seconds():.0f}s",
        # the order's policy is the placing door's: the API places orders as the suite's worker expects
        "OMS_RELEASE_DELAY": f"{settings.release_delay.total_seconds():.0f}s",
        "OMS_EXCEPTION_TIMEOUT": f"{settings.exception_timeout.total_seconds():.0f}s",
        "OMS_SHORT_PICK_POLICY": settings.short_pick_policy.value,
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@contextmanager
def running_api(
    settings: Settings, log_dir: Path, ready: bool = True, python: str = sys.executable, **overrides: str
) -> Iterator[ApiServer]:
    """Start the API with `python` (default: this venv's); wait until it answers /readyz (or, with
    ready=False, /healthz); stop it after."""
    port = free_port()
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python, "-m", "api"],
            cwd=PROJECT_DIR,
            env=api_env(settings, port, **overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", log_path, process)
    try:
        _wait_until_up(server, "/readyz" if ready else "/healthz")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: ApiServer, probe: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the API exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not answer {probe} within {START_TIMEOUT}s:\n{server.log()}")
        time.sleep(0.1)
