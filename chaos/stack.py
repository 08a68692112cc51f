"""One scenario's own system: an application database (a SQLite file, or a fresh PostgreSQL database
created next to the one named and dropped after), a Temporal dev server on a database file, and worker
subprocesses on a task queue of their own; with `via_proxy`, the workers reach PostgreSQL through a
TCP proxy the scenario can cut.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from temporalio.client import Client

from chaos.processes import TemporalServer, Workers, polling_pids, wait_until
from chaos.proxy import TcpProxy
from connection import ensure_search_attributes
from db import SessionFactory, make_engine, make_session_factory, migrate
from domain.catalog import load_catalog
from encryption.keys import format_keys
from models.catalog import CatalogFile

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ALEMBIC = threading.Lock()  # Alembic keeps its migration context in module globals: one at a time
WORKER_THREADS = 8  # activity threads per worker: bounds each worker's database connections


@dataclass
class Stack:
    name: str
    run_dir: Path
    database_url: str  # what the harness uses (direct)
    worker_database_url: str  # what the workers use (through the proxy when there is one)
    sessions: SessionFactory  # the harness's reads, directly (SQLite: without taking the write lock)
    server: TemporalServer
    client: Client
    task_queue: str
    workers: Workers
    proxy: TcpProxy | None
    rng: random.Random  # for the faults' timing

    @property
    def database_kind(self) -> str:
        return make_url(self.database_url).get_backend_name()


@contextmanager
def scratch_database(admin_url: str | None, run_dir: Path, name: str) -> Iterator[str]:
    """A new database, not migrated yet: a SQLite file in the run's folder, or a fresh PostgreSQL
    database next to `admin_url` (dropped afterwards), as tests/conftest.py does."""
    if not admin_url:
        yield f"sqlite:///{run_dir / 'oms.db'}"
        return
    admin = make_url(admin_url)
    if admin.get_backend_name() != "postgresql":
        raise ValueError(f"{admin_url}: name a PostgreSQL server (SQLite is the default)")
    if admin.host not in LOOPBACK:
        raise ValueError(f"the fault-injection run only talks to this machine; {admin.host} is not loopback")
    database = f"oms_chaos_{name}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield admin.set(database=database).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        engine.dispose()


def worker_env(server: TemporalServer, database_url: str, task_queue: str) -> dict[str, str]:
    """The environment of `python worker.py`: ours, without any OMS_* setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    return env | {
        "OMS_TEMPORAL_ADDRESS": server.address,
        "OMS_DATABASE_URL": database_url,
        "OMS_TASK_QUEUE": task_queue,
        "OMS_CODEC_KEYS": format_keys(server.codec_keys),
        # the sandbox warehouse works quickly; deliveries are the harness's to confirm (no sandbox carrier)
        "OMS_SANDBOX_PICK_TIME": "200ms",
        "OMS_SANDBOX_PACK_TIME": "200ms",
        "OMS_SANDBOX_CARRIER": "manual",
        "OMS_WORKER_ACTIVITY_THREADS": str(WORKER_THREADS),
        "PYTHONUNBUFFERED": "1",
    }


@asynccontextmanager
async def open_stack(
    name: str,
    run_dir: Path,
    admin_url: str | None,
    catalog: CatalogFile,
    workers: int,
    rng: random.Random,
    via_proxy: bool = False,
) -> AsyncIterator[Stack]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with scratch_database(admin_url, run_dir, name) as url:
        proxy: TcpProxy | None = None
        server = TemporalServer(run_dir)
        pool: Workers | None = None
        reader = make_engine(url, read_only=True)
        try:
            worker_url = url
            if via_proxy:
                target = make_url(url)
                proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
                port = proxy.start()
                worker_url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
            await server.start()
            client = await server.connect()
            await ensure_search_attributes(client)
            task_queue = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
            pool = Workers(run_dir, worker_env(server, worker_url, task_queue), workers)
            pool.start()  # they take seconds to start: migrate and load the catalog meanwhile
            await asyncio.to_thread(_prepare, url, catalog)
            await wait_until(lambda: _polling(client, task_queue), "a worker to poll its task queue")
            sessions = make_session_factory(reader)
            yield Stack(
                name, run_dir, url, worker_url, sessions, server, client, task_queue, pool, proxy, rng
            )
        finally:  # on a thread: scenarios running at once share this event loop
            await asyncio.to_thread(_stop, pool, server, proxy)
            reader.dispose()


def _prepare(url: str, catalog: CatalogFile) -> None:
    with _ALEMBIC:
        migrate(url)
    engine = make_engine(url)
    try:
        load_catalog(make_session_factory(engine), catalog)
    finally:
        engine.dispose()


def _stop(workers: Workers | None, server: TemporalServer, proxy: TcpProxy | None) -> None:
    if workers is not None:
        workers.stop()
    server.stop()
    if proxy is not None:
        proxy.stop()


async def _polling(client: Client, task_queue: str) -> bool:
    return bool(await polling_pids(client, task_queue))
