"""Throughput benchmark: real Olist orders through the real worker, against a same-run baseline.

It starts its own Temporal dev server and database (a temporary SQLite file, or a fresh PostgreSQL
database next to `--database-url`), loads a catalog built from the Olist sample, then times:

- baseline: N trivial workflows of one activity each, on their own worker (same server, same process);
- OMS: N orders placed at once, until every one has shipped (recorded, validated, authorized,
  screened, reserved, confirmed, picked, packed, shipped and captured), with the payload codec on as
  in production (AES-256-GCM, encryption/);
- OMS without the codec: the same orders again (new ids), the client and worker on plain JSON: the
  ratio of the two is what encryption costs.

It reports figures, never pass/fail: on a shared 2-core machine only the ratio OMS / baseline means
anything. Run `python -m bench.throughput --help`.
"""

from __future__ import annotations

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import argparse
    import asyncio
    import csv
    import json
    import os
    import shutil
    import sys
    import tempfile
    import time
    import uuid
    from collections import Counter
    from collections.abc import AsyncIterator, Awaitable, Iterator
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import asynccontextmanager, contextmanager
    from dataclasses import asdict, dataclass
    from datetime import timedelta
    from decimal import Decimal
    from pathlib import Path
    from typing import TextIO

    from sqlalchemy import create_engine, func, select, text
    from sqlalchemy.engine import make_url
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from config import PROJECT_DIR, SandboxMode, Settings
    from connection import ensure_search_attributes, exit_without_finalizing
    from db import SessionFactory, make_engine, make_session_factory, migrate
    from domain.catalog import load_catalog
    from domain.stock import check_stock
    from encryption.converter import data_converter
    from encryption.keys import KeyRing, next_key_id
    from models import tables as t
    from models.catalog import CatalogFile, ProductRow, StockRow, WarehouseRow
    from models.orders import Address, Channel, CustomerIn, LineIn, OrderInput, OrderStatus, PaymentIn
    from models.workflow_names import order_workflow_id as workflow_id
    from services.orders import place_order, policy_from
    from worker import build_worker, workflow_runner
    from workflows.options import RETRY_FOREVER, STEP_TIMEOUT

OLIST_DIR = PROJECT_DIR.parent / "shared" / "data" / "olist"  # ../shared/data/olist from the repository
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SHIPPED_OR_BEYOND = frozenset(
    {
        OrderStatus.shipped,
        OrderStatus.delivered,
        OrderStatus.partially_returned,
        OrderStatus.returned,
        OrderStatus.completed,
    }
)
# States an order does not leave without someone acting: the benchmark stops waiting for these.
STUCK = frozenset({OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.on_hold, OrderStatus.backordered})
SETTLED_FOR_BENCH = SHIPPED_OR_BEYOND | STUCK
SHUTDOWN_TIMEOUT = 30.0  # seconds, per thing to stop
POLL_INTERVAL = 0.25


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- the Olist sample: catalog and orders ----


@dataclass(frozen=True)
class Sample:
    catalog: CatalogFile
    orders: list[OrderInput]


def read_csv(name: str, data_dir: Path) -> list[dict[str, str]]:
    if not (data_dir / name).is_file():
        raise SystemExit(
            f"the Olist sample is missing: expected {name} in ../shared/data/olist next to the repository "
            f"({data_dir}); the benchmarks replay real orders from it"
        )
    with open(data_dir / name, newline="", encoding="utf-8") as f:  # quoted fields span lines
        return list(csv.DictReader(f))


def sku_of(product_id: str) -> str:
    return "OL-" + product_id[:10].upper()


def load_sample(count: int, data_dir: Path = OLIST_DIR) -> Sample:
    """The first `count` Olist orders that have items, and a catalog holding exactly their products."""
    items_by_order: dict[str, list[dict[str, str]]] = {}
    for item in read_csv("olist_order_items_dataset.csv", data_dir):
        items_by_order.setdefault(item["order_id"], []).append(item)
    chosen = [o for o in read_csv("olist_orders_dataset.csv", data_dir) if o["order_id"] in items_by_order]
    chosen = chosen[:count]
    if len(chosen) < count:
        raise SystemExit(f"the Olist sample has only {len(chosen)} orders with items")
    items = [item for o in chosen for item in items_by_order[o["order_id"]]]
    return Sample(
        catalog=build_catalog(items, read_csv("olist_products_dataset.csv", data_dir)),
        orders=build_orders(chosen, items_by_order, read_csv("olist_customers_dataset.csv", data_dir)),
    )


def build_catalog(items: list[dict[str, str]], products: list[dict[str, str]]) -> CatalogFile:
    """One product per Olist product at its first price; 1000 units each in SP, none in RJ."""
    info = {p["product_id"]: p for p in products}
    rows: dict[str, ProductRow] = {}
    for item in items:
        sku = sku_of(item["product_id"])
        if sku in rows:
            continue  # a later item at another price: the catalog keeps the first
        product = info.get(item["product_id"], {})
        category = product.get("product_category_name") or "product"
        rows[sku] = ProductRow(
            sku=sku,
            name=f"Olist {category} {sku}",
            price=Decimal(item["price"]).quantize(Decimal("0.01")),
            currency="BRL",
            weight_g=int(float(product.get("product_weight_g") or 500)),
        )
    return CatalogFile(
        warehouses=[
            WarehouseRow(code="SP", name="São Paulo", priority=10),
            WarehouseRow(code="RJ", name="Rio de Janeiro", priority=20),
        ],
        products=list(rows.values()),
        stock=[StockRow(sku=sku, warehouse="SP", on_hand=1000) for sku in rows],
    )


def build_orders(
    orders: list[dict[str, str]],
    items_by_order: dict[str, list[dict[str, str]]],
    customers: list[dict[str, str]],
) -> list[OrderInput]:
    by_id = {c["customer_id"]: c for c in customers}
    numbers: dict[str, int] = {}  # customer_unique_id -> n, in order of first appearance
    built = []
    for order in orders:
        customer = by_id[order["customer_id"]]
        n = numbers.setdefault(customer["customer_unique_id"], len(numbers) + 1)
        built.append(to_order_input(order["order_id"], items_by_order[order["order_id"]], customer, n))
    return built


def to_order_input(
    order_id: str, items: list[dict[str, str]], customer: dict[str, str], n: int
) -> OrderInput:
    """One marketplace order; a line per sku, its quantity the number of item rows (catalog price)."""
    quantities = Counter(sku_of(item["product_id"]) for item in items)
    name = f"Olist customer {n}"
    return OrderInput(
        order_id="OL-" + order_id[:12].upper(),
        channel=Channel.marketplace,
        customer=CustomerIn(id=customer["customer_unique_id"][:16], name=name, email=f"c{n}@example.com"),
        shipping_address=Address(
            name=name,
            line1="Rua Exemplo 1",
            city=customer["customer_city"],
            postal_code=customer["customer_zip_code_prefix"].zfill(5) + "-000",
            country="BR",
        ),
        lines=[LineIn(sku=sku, quantity=qty) for sku, qty in quantities.items()],
        currency="BRL",
        payment=PaymentIn(token="tok_visa"),
    )


# ---- the baseline: one trivial activity per workflow ----


@activity.defn
def baseline_step(n: int) -> int:
    return n


@workflow.defn
class BaselineWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(
            baseline_step, n, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY_FOREVER
        )


def baseline_worker(client: Client, task_queue: str, threads: int) -> Worker:
    """Built like the OMS worker: same runner, same sync-activity thread pool."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BaselineWorkflow],
        activities=[baseline_step],
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-activity"),
        max_concurrent_activities=threads,
        workflow_runner=workflow_runner(),
    )


async def run_baseline(client: Client, task_queue: str, count: int) -> float:
    """Seconds to start `count` baseline workflows at once and get all their results."""
    prefix = f"bench-baseline-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client.execute_workflow(BaselineWorkflow.run, n, id=f"{prefix}-{n}", task_queue=task_queue)
            for n in range(count)
        )
    )
    return time.perf_counter() - started


# ---- the OMS run ----


async def run_orders(
    client: Client, settings: Settings, sessions: SessionFactory, orders: list[OrderInput], timeout: float
) -> tuple[float, Counter[str]]:
    """Seconds to place every order at once until each has shipped (or stopped); final status counts."""
    policy = policy_from(settings)
    ids = [o.order_id for o in orders if o.order_id is not None]
    started = time.perf_counter()
    placed = await asyncio.gather(*(place_order(client, settings, o, policy) for o in orders))
    if not all(p.created for p in placed):
        raise RuntimeError("some order ids were placed before: the database is not fresh")
    statuses = await wait_until_shipped(sessions, ids, started + timeout)
    return time.perf_counter() - started, statuses


async def wait_until_shipped(sessions: SessionFactory, ids: list[str], deadline: float) -> Counter[str]:
    """Poll the orders table (one grouped query) until every order has shipped or is stuck."""
    while True:
        statuses = await asyncio.to_thread(status_counts, sessions, ids)
        if sum(n for s, n in statuses.items() if s in SETTLED_FOR_BENCH) == len(ids):
            return statuses
        if time.perf_counter() > deadline:
            raise TimeoutError(f"orders still on their way at the deadline: {dict(statuses)}")
        await asyncio.sleep(POLL_INTERVAL)


def status_counts(sessions: SessionFactory, ids: list[str]) -> Counter[str]:
    """Orders per status; orders not recorded yet count as `unrecorded`."""
    with sessions() as session:
        rows = session.execute(
            select(t.Order.status, func.count()).where(t.Order.id.in_(ids)).group_by(t.Order.status)
        ).all()
    counts = Counter({status: int(n) for status, n in rows})
    counts["unrecorded"] = len(ids) - sum(counts.values())
    return +counts  # drop zero counts


async def activities_of(client: Client, order_id: str) -> tuple[int, int]:
    """(activities scheduled, local activities recorded) in one order's history so far."""
    history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    kinds = Counter(e.event_type for e in history.events)
    local = sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    return kinds[EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED], local


# ---- what the benchmark starts, and stops ----


@contextmanager
def bench_database(admin_url: str | None) -> Iterator[str]:
    """A migrated, empty database: a temporary SQLite file, or a fresh PostgreSQL database (dropped after)."""
    if not admin_url:
        folder = tempfile.mkdtemp(prefix="oms-bench-")
        try:
            url = f"sqlite:///{folder}/oms.db"
            migrate(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    admin = make_url(admin_url)
    if admin.host not in LOOPBACK:
        raise SystemExit(f"the benchmark only talks to this machine; {admin.host} is not a loopback address")
    name = f"oms_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin.set(database=name).render_as_string(hide_password=False)
        migrate(url)
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@asynccontextmanager
async def temporal_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of our own on a free port of 127.0.0.1."""
    bench_keys = KeyRing(((next_key_id([]), os.urandom(32)),))  # a throwaway key for this run
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=data_converter(bench_keys),
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await bounded(env.shutdown(), "the dev server")


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await bounded(worker.shutdown(), f"the worker on {worker.task_queue}")
        await bounded(task, f"the worker on {worker.task_queue}")


async def bounded(awaitable: Awaitable[object], what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log(f"gave up waiting for {what} to stop after {SHUTDOWN_TIMEOUT:.0f}s")
    except Exception as exc:  # cleanup reports and moves on
        log(f"stopping {what}: {exc!r}")


# ---- the report ----


@dataclass(frozen=True)
class Report:
    orders: int
    database: str
    baseline_seconds: float
    baseline_workflows_per_s: float
    oms_seconds: float
    oms_orders_per_s: float
    ratio_oms_to_baseline: float
    oms_without_codec_seconds: float
    ratio_codec_on_to_off: float
    activities_per_order: int
    local_activities_per_order: int
    final_statuses: dict[str, int]
    ledger_check_passed: bool
    ledger_problems: list[str]

    def text(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.final_statuses.items()))
        ledger = "passed" if self.ledger_check_passed else f"FAILED ({len(self.ledger_problems)} problems)"
        lines = [
            f"orders                 {self.orders} (Olist sample), database {self.database}",
            f"baseline               {self.baseline_seconds:8.2f} s  {self.baseline_workflows_per_s:8.1f} workflows/s"
            "  (1 activity each)",
            f"OMS, placed -> shipped {self.oms_seconds:8.2f} s  {self.oms_orders_per_s:8.1f} orders/s",
            f"ratio OMS / baseline   {self.ratio_oms_to_baseline:8.2f}",
            f"OMS, codec off         {self.oms_without_codec_seconds:8.2f} s"
            f"  (codec on / off: {self.ratio_codec_on_to_off:.2f}x the time)",
            f"activities per order   {self.activities_per_order + self.local_activities_per_order}"
            f" ({self.activities_per_order} activities + {self.local_activities_per_order} local activities)",
            f"final statuses         {statuses}",
            f"stock ledger check     {ledger}",
        ]
        return "\n".join(lines + [f"  {p}" for p in self.ledger_problems[:20]])


def database_kind(url: str) -> str:
    return make_url(url).get_backend_name()


# ---- main ----


async def benchmark(count: int, admin_url: str | None, timeout: float) -> Report:
    sample = load_sample(count)
    log(f"{len(sample.orders)} orders, {len(sample.catalog.products)} products from the Olist sample")
    with bench_database(admin_url) as url:
        engine = make_engine(url)
        try:
            sessions = make_session_factory(engine)
            load_catalog(sessions, sample.catalog)
            return await benchmark_on(sample, url, sessions, timeout)
        finally:
            engine.dispose()


async def benchmark_on(sample: Sample, url: str, sessions: SessionFactory, timeout: float) -> Report:
    count = len(sample.orders)
    async with temporal_server() as env:
        client = env.client
        await ensure_search_attributes(client)
        settings = Settings(
            temporal_address=client.service_client.config.target_host,
            database_url=url,
            task_queue=f"oms-bench-{uuid.uuid4().hex[:6]}",
            # placed -> shipped measures the system, not the parties: released at once, and the sandbox
            # warehouse reports as soon as it can (its reports are still real updates); no carrier
            release_delay=timedelta(0),
            sandbox_pick_time=timedelta(0),
            sandbox_pack_time=timedelta(0),
            sandbox_carrier=SandboxMode.manual,
        )
        threads = settings.worker_activity_threads
        log(f"baseline: {count} workflows")
        async with running(baseline_worker(client, f"{settings.task_queue}-baseline", threads)):
            baseline = await asyncio.wait_for(
                run_baseline(client, f"{settings.task_queue}-baseline", count), timeout
            )
        log(f"OMS: {count} orders")
        async with running(build_worker(client, sessions, settings)):
            oms, statuses = await run_orders(client, settings, sessions, sample.orders, timeout)
            first = sample.orders[0].order_id
            assert first is not None
            scheduled, local = await activities_of(client, first)
        log(f"OMS without the codec: {count} orders")
        plain = Client(
            client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
        )
        plain_settings = settings.model_copy(update={"task_queue": f"{settings.task_queue}-plain"})
        again = [o.model_copy(update={"order_id": f"{o.order_id}-P"}) for o in sample.orders]
        async with running(build_worker(plain, sessions, plain_settings)):
            oms_plain, _ = await run_orders(plain, plain_settings, sessions, again, timeout)
    problems = check_stock(sessions)
    return Report(
        orders=count,
        database=database_kind(url),
        baseline_seconds=round(baseline, 3),
        baseline_workflows_per_s=round(count / baseline, 2),
        oms_seconds=round(oms, 3),
        oms_orders_per_s=round(count / oms, 2),
        ratio_oms_to_baseline=round(oms / baseline, 2),
        oms_without_codec_seconds=round(oms_plain, 3),
        ratio_codec_on_to_off=round(oms / oms_plain, 2),
        activities_per_order=scheduled,
        local_activities_per_order=local,
        final_statuses=dict(statuses),
        ledger_check_passed=not problems,
        ledger_problems=problems,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200, help="Olist orders to place (default 200)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server on this machine to create a scratch database on "
        "(e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test); default: a temporary SQLite file",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds allowed per phase (default 600)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url names a PostgreSQL server (SQLite is the default)")
    return args


def reserve_stdout() -> TextIO:
    """Keep stdout for the report alone: from now on whatever writes to file descriptor 1 (the dev
    server's banner, the SDK core's warnings) lands on stderr."""
    sys.stdout.flush()
    report = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = reserve_stdout()
    status = 0
    try:
        report = asyncio.run(benchmark(args.orders, args.database_url, args.timeout))
        print(json.dumps(asdict(report), indent=2) if args.json else report.text(), file=out, flush=True)
    except (TimeoutError, RuntimeError) as exc:
        log(f"benchmark did not complete: {exc}")
        status = 1
    exit_without_finalizing(status)


if __name__ == "__main__":
    main()
