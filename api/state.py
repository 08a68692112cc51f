"""What the application holds while it runs, and the FastAPI dependencies that hand it to routes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Engine
from temporalio.client import Client

from config import Settings
from db import SessionFactory


@dataclass
class AppState:
    settings: Settings
    client: Client  # lazy: connects on first use, so the API starts (and says 503) while Temporal is down
    engine: Engine
    sessions: SessionFactory
    # reads (keys, stock, imports' progress): on SQLite they need not queue behind the worker's writes
    reads: SessionFactory
    background: set[asyncio.Task[object]] = field(default_factory=set)  # imports in progress

    def spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        """Run a coroutine in the background, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def app_state(request: Request) -> AppState:
    return request.app.state.oms
