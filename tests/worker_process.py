"""`python worker.py` as a real process, for the tests of what only the process does: its log format,
its signals. On a task queue of its own, so the suite's in-process worker never takes its tasks."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from config import Settings
from devtools.processes import ChildProcess
from tests.api_server import START_TIMEOUT, process_env

READY = "worker polling task queue"  # its log line once it polls (worker.py, run_worker)
DRAIN_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL: the worker gives its activities 10


async def start_worker(
    settings: Settings, log_path: Path, python: str = sys.executable, **environment: str
) -> ChildProcess:
    """Start an order worker on `settings` (its task queue included) with `python` (default: this
    venv's); return once its log says it polls."""
    started_before = _ready_lines(log_path)
    worker = ChildProcess.start(
        "worker",
        [python, "worker.py"],
        log_path,
        process_env(settings, **environment),
        stop_timeout=DRAIN_TIMEOUT,
        append_log=True,  # a second worker after the first: one log of both
        die_with_parent=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while _ready_lines(log_path) == started_before:
        if not worker.alive() or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"the worker did not start polling:\n{worker.tail(40)}")
        await asyncio.sleep(0.1)
    return worker


def _ready_lines(log_path: Path) -> int:
    return log_path.read_text(errors="replace").count(READY) if log_path.exists() else 0


@asynccontextmanager
async def running_worker(
    suite_settings: Settings, log_path: Path, python: str = sys.executable, **environment: str
) -> AsyncIterator[tuple[Settings, ChildProcess]]:
    """An order worker process on a task queue of its own for the block (its settings, and the
    process), stopped (SIGTERM) after it. Its start updates the `forecast-daily` schedule to the
    suite's settings: the forecast's queue is the suite's, not a queue of its own."""
    queue = f"{suite_settings.task_queue}-process-{uuid.uuid4().hex[:6]}"
    settings = suite_settings.model_copy(update={"task_queue": queue})
    worker = await start_worker(settings, log_path, python, **environment)
    try:
        yield settings, worker
    finally:
        await asyncio.to_thread(worker.stop)
