"""The outbox dispatcher as the worker runs it: every poll interval, send what the outbox holds
(domain/outbox.py), in a thread so the worker's event loop never waits on the database or mailer. A
message that failed for a passing reason waits one poll interval, then twice that, and so on."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
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
        while not self._stop.is_set():
            try:
                sent = await asyncio.to_thread(self._dispatch)
            except Exception:  # noqa: BLE001 - the database is away: the messages wait in the outbox
                log.warning("outbox dispatch failed; retrying in %.1f s", self._poll, exc_info=True)
                sent = 0
            if sent:
                continue  # more may be waiting: no pause while there is a backlog
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll)

    def stop(self) -> None:
        self._stop.set()


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
