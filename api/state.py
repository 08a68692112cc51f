"""What the application holds while it runs, and the FastAPI dependencies that hand it to routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import Engine
from temporalio.client import Client

from config import Settings
from connection import TemporalTarget
from db import SessionFactory
from domain.api_keys import Principal, hash_key
from encryption.codec import EncryptionCodec


class KeyCache:
    """Keys seen in the last `ttl` seconds and who they belong to, by the key's hash (bearer calls). The
    database lookup is a third of a request's CPU; the price is that a revoked key keeps working for up
    to `ttl` in a running API. (Console sessions keep a cache of their own: api/console_session.py.)"""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str | int, tuple[float, Principal]] = {}

    def get(self, key: str) -> Principal | None:
        return self._get(hash_key(key))

    def put(self, key: str, who: Principal) -> None:
        self._put(hash_key(key), who)

    def _get(self, entry_key: str | int) -> Principal | None:
        entry = self._entries.get(entry_key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _put(self, entry_key: str | int, who: Principal) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[entry_key] = (time.monotonic() + self._ttl, who)


@dataclass
class AppState:
    settings: Settings
    client: Client  # lazy: connects on first use, so the API starts (and says 503) while Temporal is down
    temporal_target: TemporalTarget  # where `client` connects, as /readyz shows it (never the API key)
    engine: Engine
    sessions: SessionFactory
    # reads (keys, stock, imports' progress): on SQLite they need not queue behind the worker's writes
    reads: SessionFactory
    keys: KeyCache
    codec: EncryptionCodec  # the codec server's: the same keys as every worker and client
    background: set[asyncio.Task[object]] = field(default_factory=set)  # imports in progress

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def app_state(request: Request) -> AppState:
    return request.app.state.oms
