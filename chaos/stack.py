"""One scenario's own system: an application database (a SQLite file, or a fresh PostgreSQL database
created next to the one named and dropped after), a Temporal dev server on a database file, worker
subprocesses on a task queue of their own (`python -m chaos.worker_process`: worker.py with the manual
warehouse MN, and a planted bug if asked) and the HTTP API (`python -m api`, with an API key per role);
with `via_proxy`, the workers and the API reach PostgreSQL through a TCP proxy the scenario can cut.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from temporalio.client import Client

from chaos.orders import MANUAL, PurchaseOrderRow
from chaos.processes import PYTHON, ApiServer, TemporalServer, Workers, polling_pids, wait_until
from chaos.proxy import TcpProxy
from connection import ensure_search_attributes
from db import SessionFactory, make_engine, make_session_factory, migrate
from devtools.scratch_database import scratch_database
from domain.api_keys import Role as KeyRole
from domain.api_keys import create_key
from domain.catalog import load_catalog
from domain.stock import raise_purchase_order
from encryption.keys import format_keys
from models.catalog import CatalogFile

_ALEMBIC = threading.Lock()  # Alembic keeps its migration context in module globals: one at a time
WORKER_THREADS = 8  # activity threads per worker: bounds each worker's database connections
# Scenarios run at once against one PostgreSQL (max_connections 100 by default): each process keeps a
# pool of this many connections and opens as many again at a peak (db.make_engine), so that five
# stacks of two workers and an API (and the harness's own engines) stay under it, next to the suite's
# other test processes. It ran out once ("too many clients") at 20 + 20.
POOL_SIZE = 4  # and as many again at a peak: the 8 activity threads never wait for a connection


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
    writes: SessionFactory  # the harness's own writes (none but the fuzz's set-up)
    api: ApiServer | None = None
    api_keys: dict[KeyRole, str] | None = None
    outage: asyncio.Event = field(default_factory=asyncio.Event)  # set while the database is cut

    @property
    def database_kind(self) -> str:
        return make_url(self.database_url).get_backend_name()


@dataclass(frozen=True)
class Options:
    workers: int = 2
    via_proxy: bool = False  # the workers and the API reach PostgreSQL through a proxy the run can cut
    api_env: dict[str, str] | None = None  # start the API with these settings (None: no API)
    plant: str | None = None  # a bug of chaos.planted to plant in the workers
    purchase_orders: tuple[PurchaseOrderRow, ...] = ()  # open purchase orders (for backorders)


def worker_env(
    server: TemporalServer, database_url: str, task_queue: str, plant: str | None = None
) -> dict[str, str]:
    """The environment of the workers: ours, without any OMS_* or CHAOS_* setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMS_", "CHAOS_"))}
    return (
        env
        | ({"CHAOS_PLANT": plant} if plant else {})
        | {
            "CHAOS_MANUAL_WAREHOUSES": MANUAL,
            "OMS_TEMPORAL_ADDRESS": server.address,
            "OMS_DATABASE_URL": database_url,
            "OMS_TASK_QUEUE": task_queue,
            "OMS_CODEC_KEYS": format_keys(server.codec_keys),
            # the sandbox warehouse works quickly; deliveries are the harness's to confirm (no sandbox carrier)
            "OMS_SANDBOX_PICK_TIME": "200ms",
            "OMS_SANDBOX_PACK_TIME": "200ms",
            "OMS_SANDBOX_CARRIER": "manual",
            "OMS_SANDBOX_SHORT_PICK_RATE": "0",
            "OMS_WORKER_ACTIVITY_THREADS": str(WORKER_THREADS),
            "OMS_DATABASE_POOL_SIZE": str(POOL_SIZE),
            "PYTHONUNBUFFERED": "1",
        }
    )


@asynccontextmanager
async def open_stack(
    name: str,
    run_dir: Path,
    admin_url: str | None,
    catalog: CatalogFile,
    rng: random.Random,
    options: Options,
) -> AsyncIterator[Stack]:
    run_dir.mkdir(parents=True, exist_ok=True)
    # not migrated yet: _prepare migrates while the workers start up
    with scratch_database(admin_url, run_dir, f"oms_chaos_{name}", migrated=False) as url:
        proxy: TcpProxy | None = None
        server = TemporalServer(run_dir)
        pool: Workers | None = None
        api: ApiServer | None = None
        reader, writer = (
            make_engine(url, read_only=True, pool_size=POOL_SIZE),
            make_engine(url, pool_size=POOL_SIZE),
        )
        try:
            worker_url = url
            if options.via_proxy:
                target = make_url(url)
                proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
                port = proxy.start()
                worker_url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
            await server.start()
            client = await server.connect()
            await ensure_search_attributes(client)
            task_queue = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
            env = worker_env(server, worker_url, task_queue, options.plant)
            pool = Workers(run_dir, env, options.workers, [PYTHON, "-m", "chaos.worker_process"])
            pool.start()  # they take seconds to start: migrate and load the catalog meanwhile
            keys = await asyncio.to_thread(_prepare, url, catalog, options.purchase_orders)
            if options.api_env is not None:
                api = ApiServer(run_dir, api_env(env, options.api_env))
                await api.start()
            await wait_until(lambda: _polling(client, task_queue), "a worker to poll its task queue")
            yield Stack(
                name, run_dir, url, worker_url, make_session_factory(reader), server, client, task_queue,
                pool, proxy, rng, make_session_factory(writer), api, keys if api else None,
            )  # fmt: skip
        finally:  # on a thread: scenarios running at once share this event loop
            await asyncio.to_thread(_stop, pool, server, proxy, api)
            reader.dispose()
            writer.dispose()


def api_env(worker: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    """The API's environment: the workers' database, Temporal and queue, and the policy `settings`."""
    keep = (
        "OMS_TEMPORAL_ADDRESS",
        "OMS_DATABASE_URL",
        "OMS_TASK_QUEUE",
        "OMS_CODEC_KEYS",
        "OMS_DATABASE_POOL_SIZE",
    )
    env = {k: v for k, v in worker.items() if not k.startswith(("OMS_", "CHAOS_")) or k in keep}
    # its own console session secret: else it would write one into the project's .data folder
    return env | {"OMS_SESSION_SECRET": uuid.uuid4().hex + uuid.uuid4().hex} | settings


def _prepare(
    url: str, catalog: CatalogFile, purchase_orders: tuple[PurchaseOrderRow, ...]
) -> dict[KeyRole, str]:
    with _ALEMBIC:
        migrate(url)
    engine = make_engine(url, pool_size=1)
    try:
        sessions = make_session_factory(engine)
        load_catalog(sessions, catalog)
        for po in purchase_orders:
            expected_at = datetime.now(UTC) + timedelta(days=30)
            raise_purchase_order(sessions, po.po_id, po.sku, po.warehouse, po.quantity, expected_at, "chaos")
        return {role: create_key(sessions, f"chaos-{role.value}", role).key for role in KeyRole}
    finally:
        engine.dispose()


def _stop(
    workers: Workers | None, server: TemporalServer, proxy: TcpProxy | None, api: ApiServer | None
) -> None:
    if api is not None:
        api.stop()
    if workers is not None:
        workers.stop()
    server.stop()
    if proxy is not None:
        proxy.stop()


async def _polling(client: Client, task_queue: str) -> bool:
    return bool(await polling_pids(client, task_queue))
