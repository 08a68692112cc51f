"""The scenarios and what a run reports. A scenario starts its own system (chaos.stack), places a mix of
orders (chaos.orders) and drives them to their ends (chaos.driver) while one fault loop (chaos.faults)
hits it; then it checks the ledgers (chaos.invariants) and reports its figures.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from chaos import faults
from chaos.driver import Driver
from chaos.faults import FaultLog, keep_workers_up
from chaos.invariants import outcomes, violations
from chaos.orders import OrderSource, plan_orders
from chaos.stack import Stack, open_stack
from models.orders import OrderPolicy


@dataclass(frozen=True)
class Size:
    orders: int
    rate: float  # orders placed per second
    workers: int
    first_fault: float  # seconds after the first placement
    kills: int
    kill_every: float
    restarts: int
    restart_every: float
    outages: int
    outage_seconds: float
    outage_every: float
    deadline: float  # seconds from the first placement for everything to end


FULL = Size(
    orders=300, rate=8.0, workers=2, first_fault=3.0, kills=20, kill_every=4.0,
    restarts=3, restart_every=15.0, outages=2, outage_seconds=10.0, outage_every=20.0, deadline=900.0,
)  # fmt: skip
SHORT = Size(
    orders=30, rate=10.0, workers=2, first_fault=1.0, kills=3, kill_every=1.5,
    restarts=1, restart_every=10.0, outages=1, outage_seconds=10.0, outage_every=10.0, deadline=240.0,
)  # fmt: skip

Fault = Callable[[Stack, Size, FaultLog, asyncio.Event, float], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    prefix: str  # of its order ids
    what: str
    fault: Fault
    needs_postgres: bool = False


SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            "no-faults",
            "NF",
            "no fault: the same orders undisturbed, the yardstick for the others' times",
            lambda st, sz, fl, stop, t0: asyncio.sleep(0),
        ),
        Scenario(
            "worker-kills",
            "WK",
            "kill -9 a polling worker every few seconds, start a new one each time",
            lambda st, sz, fl, stop, t0: faults.kill_workers(
                st, fl, stop, t0, sz.first_fault, sz.kill_every, sz.kills
            ),
        ),
        Scenario(
            "server-restart",
            "SR",
            "kill -9 the Temporal dev server mid-flight, restart it on the same database file",
            lambda st, sz, fl, stop, t0: faults.restart_server(
                st, fl, stop, t0, sz.first_fault, sz.restart_every, sz.restarts
            ),
        ),
        Scenario(
            "database-outage",
            "DB",
            "cut the workers off PostgreSQL (a TCP proxy closes and refuses connections), then restore",
            lambda st, sz, fl, stop, t0: faults.cut_database(
                st, fl, stop, t0, sz.first_fault, sz.outage_every, sz.outages, sz.outage_seconds
            ),
            needs_postgres=True,
        ),
    ]
}
NO_CONNECTION_TO_CUT = (
    "needs PostgreSQL: on SQLite the database is a file inside each worker's process, there is no "
    "connection to cut (set OMS_TEST_DATABASE_URL or --database-url to a PostgreSQL server)"
)


@dataclass
class Result:
    scenario: str
    database: str
    orders: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    worker_kills: int = 0
    worker_exits: int = 0  # workers that exited by themselves (replaced)
    server_restarts: int = 0
    outage_seconds: float = 0.0
    placing_seconds: float = 0.0
    drain_seconds: float = 0.0  # first placement -> every order ended and its workflow closed
    after_last_fault_seconds: float | None = None  # the last fault's end -> drained
    client_retries: int = 0
    placed_again: int = 0
    took_effect_before: int = 0
    asked_again: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)
    cancels_too_late: int = 0
    violations: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # worker log lines naming the orders found wrong
    fault_events: list[str] = field(default_factory=list)
    skipped: str | None = None
    run_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


def policy(review_above: object) -> OrderPolicy:
    """Deliveries are confirmed by the harness, returns close after 2 s, nothing else times out; the
    shipments go to the (sandbox) warehouses at once."""
    return OrderPolicy(
        release_delay=timedelta(0),
        exception_timeout=timedelta(hours=1),
        delivery_sla=timedelta(hours=1),
        return_window=timedelta(seconds=2),
        hold_timeout=timedelta(hours=1),
        backorder_timeout=timedelta(hours=1),
        review_above=review_above,
    )


async def run_scenario(
    scenario: Scenario, size: Size, source: OrderSource, admin_url: str | None, run_dir: Path, seed: int
) -> Result:
    database = make_url(admin_url).get_backend_name() if admin_url else "sqlite"
    result = Result(scenario.name, database, run_dir=str(run_dir))
    if scenario.needs_postgres and database != "postgresql":
        result.skipped = NO_CONNECTION_TO_CUT
        return result
    rng = random.Random(f"{seed}-{scenario.name}")
    orders, limit = plan_orders(source, scenario.prefix, rng)
    orders = orders[: size.orders]
    result.orders = len(orders)
    opening = time.monotonic()
    async with open_stack(
        scenario.name,
        run_dir,
        admin_url,
        source.catalog,
        size.workers,
        rng,
        via_proxy=scenario.needs_postgres,
    ) as stack:
        started = time.monotonic()
        faults.log(
            f"{scenario.name}: system up in {started - opening:.1f}s; {len(orders)} orders at {size.rate:g}/s "
            f"on {database}; {scenario.what}"
        )
        driver = Driver(stack, orders, policy(limit), started + size.deadline)
        stop, log = asyncio.Event(), FaultLog()
        fault = asyncio.create_task(scenario.fault(stack, size, log, stop, started))
        keeper = asyncio.create_task(keep_workers_up(stack, stop))
        drive = asyncio.create_task(driver.run(size.rate))
        try:
            while not drive.done():  # a fault loop that fails (a server that will not restart) ends the run
                waiting = {drive} if fault.done() else {drive, fault}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if fault.done() and fault.exception() is not None:
                    break
        finally:
            stop.set()
            drive.cancel()  # done already, unless the fault loop failed or the run is interrupted
            await asyncio.gather(drive, fault, keeper, return_exceptions=True)
        if fault.exception() is not None:
            raise RuntimeError(f"the fault loop of {scenario.name} failed") from fault.exception()
        drive.result()  # an error of the harness itself surfaces here
        figures = driver.figures
        result.drain_seconds = figures.drained_at - started
        if log.last_fault_ended:
            result.after_last_fault_seconds = figures.drained_at - log.last_fault_ended
        result.placing_seconds = figures.placing_seconds
        result.client_retries, result.placed_again = figures.retries, figures.placed_again
        result.cancels_too_late, result.took_effect_before = (
            figures.cancels_too_late,
            figures.took_effect_before,
        )
        result.retry_causes = dict(figures.retry_causes.most_common())
        result.asked_again = figures.asked_again
        result.worker_kills, result.worker_exits = log.worker_kills, stack.workers.exited
        result.server_restarts, result.outage_seconds = log.server_restarts, log.outage_seconds
        result.fault_events = log.events
        result.violations = figures.errors + violations(stack.sessions, orders, source.catalog)
        result.outcomes = dict(sorted(outcomes(stack.sessions, orders).items()))
        result.evidence = evidence(stack, [o.order_id for o in orders], result.violations)
        closing = time.monotonic()
    faults.log(f"{scenario.name}: checked and stopped in {time.monotonic() - figures.drained_at:.1f}s "
               f"(stopping {time.monotonic() - closing:.1f}s)")  # fmt: skip
    return result


def evidence(stack: Stack, order_ids: list[str], found: list[str], per_order: int = 12) -> list[str]:
    """The workers' log lines that name an order found wrong (warnings and errors first)."""
    ids = sorted({oid for oid in order_ids if any(oid in line for line in found)})
    lines: list[str] = []
    for order_id in ids[:10]:
        hits = [
            f"{path.name}: {line}"
            for path in stack.workers.logs()
            for line in path.read_text(errors="replace").splitlines()
            if order_id in line
        ]
        hits.sort(key=lambda h: " WARNING " not in h and " ERROR " not in h)
        lines += [f"{order_id}: {h}" for h in hits[:per_order]] or [
            f"{order_id}: no worker log line names it"
        ]
    return lines


async def run(
    names: list[str],
    size: Size,
    source: OrderSource,
    admin_url: str | None,
    base_dir: Path,
    seed: int,
    parallel: bool,
) -> list[Result]:
    """Run the scenarios, one after the other or all at once (each on its own system)."""
    jobs = [run_scenario(SCENARIOS[n], size, source, admin_url, base_dir / n, seed) for n in names]
    if parallel:
        return list(await asyncio.gather(*jobs))
    return [await job for job in jobs]


def table(results: list[Result]) -> str:
    header = [
        "scenario", "database", "orders", "kills", "restarts", "outage s",
        "placing s", "drain s", "after last fault s", "retries", "violations",
    ]  # fmt: skip
    rows = [header]
    for r in results:
        if r.skipped:
            rows.append([r.scenario, r.database, "skipped", *[""] * (len(header) - 3)])
            continue
        rows.append(
            [
                r.scenario,
                r.database,
                str(r.orders),
                str(r.worker_kills),
                str(r.server_restarts),
                f"{r.outage_seconds:.1f}",
                f"{r.placing_seconds:.1f}",
                f"{r.drain_seconds:.1f}",
                "-" if r.after_last_fault_seconds is None else f"{r.after_last_fault_seconds:.1f}",
                str(r.client_retries),
                str(len(r.violations)),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(results: list[Result]) -> str:
    out = []
    for r in results:
        if r.skipped:
            out.append(f"{r.scenario}: skipped: {r.skipped}")
            continue
        statuses = ", ".join(f"{n} {s}" for s, n in r.outcomes.items())
        out.append(
            f"{r.scenario}: {statuses}; {r.cancels_too_late} cancellations came too late (shipped instead), "
            f"{r.placed_again} placements retried across a fault found their order, {r.took_effect_before} "
            "support or carrier calls given up on had taken effect (their retry was refused), "
            f"{r.asked_again} refused although the orders table showed the order ready (asked again), "
            f"{r.worker_exits} workers exited by themselves"
        )
        if r.retry_causes:
            out.append("  retried: " + ", ".join(f"{cause} x{n}" for cause, n in r.retry_causes.items()))
        out += [f"    {e}" for e in r.fault_events]
        out += [f"  VIOLATION {v}" for v in r.violations[:50]]
        out += [f"    log {e}" for e in r.evidence]
        if r.violations:
            out.append(f"  logs kept in {r.run_dir}")
    return "\n".join(out)


def as_dicts(results: list[Result]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]


def base_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="oms-chaos-"))


def clean_up(base_dir: Path, results: list[Result], keep: bool) -> None:
    """Remove the run's folder unless asked to keep it or something was found (its logs are evidence)."""
    if not keep and all(r.ok for r in results):
        shutil.rmtree(base_dir, ignore_errors=True)
