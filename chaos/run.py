"""The scenarios, the planted bugs and what a run reports. A scenario starts its own system
(chaos.stack), places a mix of orders (chaos.orders) and drives them to their ends through both doors
(chaos.driver) while one fault loop (chaos.faults) hits it; then it checks the ledgers
(chaos.invariants) and reports its figures. A plant's run is a short scenario with a bug planted in
its workers (chaos.planted): it must be caught.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from chaos import faults
from chaos.driver import Driver
from chaos.faults import FaultLog, keep_workers_up
from chaos.invariants import invariant_of, outcomes, paths_covered, violations
from chaos.orders import Door, OrderSource, Role, api_settings_env, plan_orders
from chaos.planted import PLANTS
from chaos.stack import Options, Stack, open_stack


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
    return_window: timedelta  # of the return roles: time for the run to ask for the return
    fuzz_cases: int  # generated cases per door
    plant_orders: int  # orders of a plant's run
    plant_deadline: float


FULL = Size(
    orders=300, rate=8.0, workers=2, first_fault=3.0, kills=20, kill_every=4.0,
    restarts=3, restart_every=15.0, outages=2, outage_seconds=10.0, outage_every=20.0, deadline=900.0,
    return_window=timedelta(seconds=30), fuzz_cases=300, plant_orders=12, plant_deadline=240.0,
)  # fmt: skip
# `make test`'s part (tests/test_chaos.py): 24 orders are the fewest of the sample whose plan gives
# every role an order (tests/test_chaos.py checks it), so each scenario still takes every path
SHORT = Size(
    orders=24, rate=10.0, workers=2, first_fault=1.0, kills=3, kill_every=1.5,
    restarts=1, restart_every=10.0, outages=1, outage_seconds=10.0, outage_every=10.0, deadline=240.0,
    return_window=timedelta(seconds=20), fuzz_cases=30, plant_orders=9, plant_deadline=150.0,
)  # fmt: skip

Fault = Callable[[Stack, Size, FaultLog, asyncio.Event, float], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    prefix: str  # of its order ids
    what: str
    fault: Fault
    needs_postgres: bool = False


def _no_fault(st: Stack, sz: Size, fl: FaultLog, stop: asyncio.Event, t0: float) -> Awaitable[None]:
    return asyncio.sleep(0)


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("no-faults", "NF", "no fault: the same orders undisturbed, the yardstick for the others' times", _no_fault),
        Scenario(
            "worker-kills",
            "WK",
            "kill -9 a polling worker every few seconds, start a new one each time",
            lambda st, sz, fl, stop, t0: faults.kill_workers(st, fl, stop, t0, sz.first_fault, sz.kill_every, sz.kills),
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
            "cut the workers and the API off PostgreSQL (a TCP proxy closes and refuses connections), then restore",
            lambda st, sz, fl, stop, t0: faults.cut_database(
                st, fl, stop, t0, sz.first_fault, sz.outage_every, sz.outages, sz.outage_seconds
            ),
            needs_postgres=True,
        ),
    ]
}  # fmt: skip
NO_CONNECTION_TO_CUT = (
    "needs PostgreSQL: on SQLite the database is a file inside each worker's process, there is no "
    "connection to cut (set OMS_TEST_DATABASE_URL or --database-url to a PostgreSQL server)"
)


@dataclass
class Result:
    scenario: str
    database: str
    orders: int = 0
    http_orders: int = 0  # orders whose door is the HTTP API
    outcomes: dict[str, int] = field(default_factory=dict)
    paths: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (took its path, right; planned)
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
    offered_again: int = 0
    off_path: list[str] = field(default_factory=list)  # orders that could not take their path, and why
    retry_causes: dict[str, int] = field(default_factory=dict)
    cancels_too_late: int = 0
    api_requests: int = 0
    api_statuses: dict[str, int] = field(default_factory=dict)
    api_during_outage: dict[str, int] = field(default_factory=dict)  # the driver's and the prober's answers
    violations: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # worker log lines naming the orders found wrong
    fault_events: list[str] = field(default_factory=list)
    plant: str | None = None
    skipped: str | None = None
    run_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def caught_by(self) -> Counter[str]:
        return Counter(invariant_of(v) for v in self.violations)


async def run_scenario(
    scenario: Scenario,
    size: Size,
    source: OrderSource,
    admin_url: str | None,
    run_dir: Path,
    seed: int,
    plant: str | None = None,
) -> Result:
    database = make_url(admin_url).get_backend_name() if admin_url else "sqlite"
    name = f"plant-{plant}" if plant else scenario.name
    result = Result(name, database, run_dir=str(run_dir), plant=plant)
    if scenario.needs_postgres and database != "postgresql":
        result.skipped = NO_CONNECTION_TO_CUT
        return result
    rng = random.Random(f"{seed}-{name}")
    if plant:
        plan = plan_orders(
            source, f"PL{list(PLANTS).index(plant)}", rng, size.plant_orders, list(PLANTS[plant].roles)
        )
    else:
        plan = plan_orders(source, scenario.prefix, rng, size.orders)
    orders = plan.orders
    result.orders, result.http_orders = len(orders), sum(o.door == Door.http for o in orders)
    opening = time.monotonic()
    options = Options(
        workers=1 if plant else size.workers,
        via_proxy=scenario.needs_postgres,
        api_env=api_settings_env(plan.review_above),
        plant=plant,
        purchase_orders=tuple(plan.purchase_orders),
    )
    async with open_stack(name, run_dir, admin_url, plan.catalog, rng, options) as stack:
        started = time.monotonic()
        faults.log(
            f"{name}: system up in {started - opening:.1f}s; {len(orders)} orders at {size.rate:g}/s "
            f"on {database}; {scenario.what}"
        )
        driver = Driver(
            stack, plan, started + (size.plant_deadline if plant else size.deadline), size.return_window
        )
        stop, log = (
            asyncio.Event(),
            FaultLog(probe_order=orders[0].order_id, probe_sku=orders[0].order.lines[0].sku),
        )
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
            raise RuntimeError(f"the fault loop of {name} failed") from fault.exception()
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
        result.asked_again, result.offered_again = figures.asked_again, figures.offered_again
        result.off_path = [f"{o.order_id} ({o.role}): {'; '.join(o.notes)}" for o in orders if not o.on_path]
        result.worker_kills, result.worker_exits = log.worker_kills, stack.workers.exited
        result.server_restarts, result.outage_seconds = log.server_restarts, log.outage_seconds
        result.fault_events = log.events
        api_wrong: list[str] = []
        outage_answers: Counter[str] = Counter(log.api_outage)
        if driver.http_door is not None:
            api = driver.http_door.figures
            result.api_requests = api.requests
            result.api_statuses = {str(k): v for k, v in sorted(api.statuses.items())}
            api_wrong = [f"api: {w}" + (f" (x{n})" if n > 1 else "") for w, n in Counter(api.wrong).items()]
            outage_answers.update(api.during_outage)
        result.api_during_outage = dict(outage_answers.most_common())
        api_wrong += [f"api: during the outage {w}" for w in log.api_outage_wrong]
        found = violations(stack.sessions, plan)
        result.violations = figures.errors + api_wrong + found
        result.paths = paths_covered(orders, result.violations)
        result.outcomes = dict(sorted(outcomes(stack.sessions, orders).items()))
        result.evidence = evidence(stack, [o.order_id for o in orders], result.violations)
        closing = time.monotonic()
    faults.log(f"{name}: checked and stopped in {time.monotonic() - figures.drained_at:.1f}s "
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


async def run_plants(
    plants: list[str],
    size: Size,
    source: OrderSource,
    admin_url: str | None,
    base_dir: Path,
    seed: int,
    at_once: int = 3,
) -> list[Result]:
    """Each plant's run (no fault, one worker), `at_once` at a time."""
    limit = asyncio.Semaphore(at_once)

    async def one(plant: str) -> Result:
        async with limit:
            return await run_scenario(
                SCENARIOS["no-faults"], size, source, admin_url, base_dir / f"plant-{plant}", seed, plant
            )

    return list(await asyncio.gather(*(one(p) for p in plants)))


# ---- reports ----


def _table(header: list[str], rows: list[list[str]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def covered(result: Result) -> str:
    took = sum(1 for n, _ in result.paths.values() if n)
    return f"{took}/{len(Role)}"


def table(results: list[Result]) -> str:
    header = [
        "scenario", "database", "orders", "via API", "faults", "paths", "placing s", "drain s",
        "after last fault s", "retries", "API 503", "violations",
    ]  # fmt: skip
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.scenario, r.database, "skipped", *[""] * (len(header) - 3)])
            continue
        fault = (
            f"{r.worker_kills} kills" if r.worker_kills
            else f"{r.server_restarts} restarts" if r.server_restarts
            else f"{r.outage_seconds:.0f} s cut" if r.outage_seconds
            else "-"
        )  # fmt: skip
        rows.append(
            [
                r.scenario, r.database, str(r.orders), str(r.http_orders), fault, covered(r),
                f"{r.placing_seconds:.1f}", f"{r.drain_seconds:.1f}",
                "-" if r.after_last_fault_seconds is None else f"{r.after_last_fault_seconds:.1f}",
                str(r.client_retries), str(r.api_statuses.get("503", 0)), str(len(r.violations)),
            ]
        )  # fmt: skip
    return _table(header, rows)


def paths_table(results: list[Result]) -> str:
    """Per role: orders that took its path and were found right, of those planned, per scenario."""
    ran = [r for r in results if not r.skipped and not r.plant]
    rows = [[role.value, *[_cell(r.paths.get(role.value)) for r in ran]] for role in Role]
    return _table(["path (role)", *[r.scenario for r in ran]], rows)


def _cell(tally: tuple[int, int] | None) -> str:
    return "-" if tally is None else f"{tally[0]}/{tally[1]}"


def outage_table(results: list[Result]) -> str:
    rows = [
        [r.scenario, r.database, ", ".join(f"{k} x{n}" for k, n in r.api_during_outage.items()) or "-"]
        for r in results
        if r.outage_seconds
    ]
    return _table(["scenario", "database", "API answers while the database was cut"], rows) if rows else ""


def plant_table(results: list[Result]) -> str:
    rows = [
        [
            r.plant or "", PLANTS[r.plant].what if r.plant else "", str(r.orders),
            "yes" if r.violations else "NO", ", ".join(f"{k} ({n})" for k, n in r.caught_by.most_common()) or "-",
        ]
        for r in results
    ]  # fmt: skip
    return _table(["planted bug", "what", "orders", "caught", "by (violations)"], rows)


def details(results: list[Result]) -> str:
    out = []
    for r in results:
        if r.skipped:
            out.append(f"{r.scenario}: skipped: {r.skipped}")
            continue
        statuses = ", ".join(f"{n} {s}" for s, n in r.outcomes.items())
        api = ", ".join(f"{k} x{n}" for k, n in r.api_statuses.items())
        out.append(
            f"{r.scenario}: {statuses}; {r.cancels_too_late} cancellations came too late (shipped instead), "
            f"{r.placed_again} placements retried across a fault found their order, {r.took_effect_before} "
            "calls given up on had taken effect (their retry was refused), "
            f"{r.asked_again} refused although the tables showed the order ready (asked again), "
            f"{r.offered_again} goods offered again, {r.worker_exits} workers exited by themselves; "
            f"API: {r.api_requests} requests ({api})"
        )
        if r.retry_causes:
            out.append("  retried: " + ", ".join(f"{cause} x{n}" for cause, n in r.retry_causes.items()))
        out += [f"    {e}" for e in r.fault_events]
        out += [f"  off its path: {o}" for o in r.off_path]
        out += [f"  VIOLATION {v}" for v in r.violations[:50]]
        out += [f"    log {e}" for e in r.evidence]
        if r.violations and not r.plant:
            out.append(f"  logs kept in {r.run_dir}")
    return "\n".join(out)


def as_dicts(results: list[Result]) -> list[dict[str, object]]:
    return [asdict(r) | {"caught_by": dict(r.caught_by)} for r in results]


def base_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="oms-chaos-"))


def clean_up(base_dir: Path, keep: bool) -> None:
    """Remove the run's folder unless asked to keep it (something was found: its logs are evidence)."""
    if not keep:
        shutil.rmtree(base_dir, ignore_errors=True)
