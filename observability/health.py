"""What a process's /healthz answers (observability/endpoint.py), and the watch on its event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

# An event loop that has not run a 1-second tick for this long is wedged (a blocking call on it, a
# deadlock): the worker's /healthz fails, so that the orchestrator restarts it. Far above the longest
# pause seen (a full garbage collection, ~0.1 s; see worker.freeze_startup_heap).
STALL_SECONDS = 30.0
TICK_SECONDS = 1.0


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def always_healthy() -> Health:
    return Health(True, "up")


class LoopHeartbeat:
    """Ticks on the event loop it runs on (`async with`); `age()`, from any thread: seconds since the
    last tick."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def age(self) -> float:
        return time.monotonic() - self._last

    async def _tick(self) -> None:
        while True:
            self._last = time.monotonic()
            await asyncio.sleep(TICK_SECONDS)

    async def __aenter__(self) -> LoopHeartbeat:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
