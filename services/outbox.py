"""The outbox dispatcher as the worker runs it: every poll interval, send what the outbox holds
(domain/outbox.py), in a thread so the worker's event loop never waits on the database or mailer. A
message that failed for a passing reason waits one poll interval, then twice that, and so on."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from adapters.mailer import Mailer
from db import SessionFactory
from domain.outbox import Retry, dispatch_pending

log = logging.getLogger("oms.outbox")


class OutboxDispatcher:
    def __init__(self, sessions: SessionFactory, mailer: Mailer, poll: float) -> None:
        self._poll = poll
        self._dispatch = functools.partial(
            dispatch_pending, sessions, mailer, retry=Retry(first=timedelta(seconds=poll))
        )
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await poll_until_stopped(self._stop, self._poll, lambda: asyncio.to_thread(self._dispatch), "outbox")

    def stop(self) -> None:
        self._stop.set()


async def poll_until_stopped(
    stop: asyncio.Event, poll: float, round_: Callable[[], Awaitable[int]], what: str
) -> None:
    """A dispatcher's loop: a round, again at once while it found work (a backlog), else after `poll`
    seconds or at `stop`. A round that fails (the database away) is logged and tried again after
    `poll`: the work waits in its outbox."""
    while not stop.is_set():
        try:
            done = await round_()
        except Exception:  # noqa: BLE001 - whatever failed, the outbox keeps the work for the next round
            log.warning("%s dispatch failed; retrying in %.1f s", what, poll, exc_info=True)
            done = 0
        if done:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)


class Dispatcher(Protocol):
    """What the worker runs beside its Temporal workers: a loop until stopped."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Dispatchers:
    """Several dispatchers run and stopped as one (the notification outbox's and the webhooks'), so the
    worker holds one (worker.Workers)."""

    def __init__(self, *dispatchers: Dispatcher) -> None:
        self._dispatchers = dispatchers

    async def run(self) -> None:
        await asyncio.gather(*(d.run() for d in self._dispatchers))

    def stop(self) -> None:
        for dispatcher in self._dispatchers:
            dispatcher.stop()
