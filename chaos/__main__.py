"""`python -m chaos` (`make chaos`): the fault-injection run. See chaos/__init__.py and `--help`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from chaos import bad_inputs
from chaos.fuzz import FuzzResult, door_table, run_fuzz, summary
from chaos.orders import OrderSource, load_orders
from chaos.planted import PLANTS
from chaos.run import (
    FULL,
    SCENARIOS,
    SHORT,
    Result,
    Size,
    as_dicts,
    base_directory,
    clean_up,
    details,
    outage_table,
    paths_table,
    plant_table,
    run,
    run_plants,
    table,
)
from connection import exit_without_finalizing
from devtools.scratch_database import admin_url_problem

T = TypeVar("T")
FUZZ = "fuzz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__import__("chaos").__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--short", action="store_true", help="the short version (40 orders, fewer faults, 30 cases a door)"
    )
    parser.add_argument("--orders", type=int, help="orders per scenario (default 300, short 40)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*sorted(SCENARIOS), FUZZ],
        help="run only this one (repeatable); default all, the fuzz and every plant",
    )
    parser.add_argument(
        "--plant",
        action="append",
        choices=[*PLANTS, "all"],
        help="run a short scenario with this bug planted (repeatable, or `all`); it must be caught: the run "
        "then reports its violations and exits 1 (in the default run, a plant NOT caught exits 1)",
    )
    parser.add_argument("--no-plants", action="store_true", help="skip the planted bugs of the default run")
    parser.add_argument("--fuzz-cases", type=int, help="generated cases per door (default 300, short 30)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OMS_TEST_DATABASE_URL"),
        help="a PostgreSQL server on this machine to create scratch databases on (default: "
        "$OMS_TEST_DATABASE_URL, else SQLite files); the database outage needs PostgreSQL",
    )
    parser.add_argument(
        "--parallel", action="store_true", help="run the scenarios at once (each on its own system)"
    )
    parser.add_argument("--seed", type=int, default=1, help="placement order and kill timing (default 1)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (logs, databases) even when all is well"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.orders is not None and args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.fuzz_cases is not None and args.fuzz_cases < 1:
        parser.error("--fuzz-cases must be at least 1")
    if args.database_url and (problem := admin_url_problem(args.database_url)):
        parser.error(f"--database-url {problem}")
    return args


async def stoppable(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; SIGTERM stops it as Ctrl-C does (asyncio.run's own handling): cancelled, and what it
    started stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGUSR1, where_it_waits)  # `kill -USR1 <pid>`: what every task waits for
    return await work


def where_it_waits() -> None:
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        print(f"[chaos] task {task.get_name()}: {where}", file=sys.stderr, flush=True)


async def everything(
    args: argparse.Namespace, size: Size, source: OrderSource, base_dir: Path, plants: list[str]
) -> tuple[list[Result], FuzzResult | None, list[Result]]:
    # the scenarios' reads, receipts and lookups run on threads (asyncio.to_thread): more than the 6 the
    # default executor has on 2 cores, so that a slow one does not hold up the others
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="chaos")
    )
    default = not args.scenario and not args.plant
    names = [n for n in (args.scenario or (list(SCENARIOS) if default else [])) if n != FUZZ]
    fuzzing = default or FUZZ in (args.scenario or [])
    cases = args.fuzz_cases or size.fuzz_cases
    jobs: list[Coroutine[Any, Any, Any]] = [
        run(names, size, source, args.database_url, base_dir, args.seed, args.parallel)
    ]
    if fuzzing:
        jobs.append(run_fuzz(cases, args.database_url, base_dir / FUZZ, args.seed))
    if plants:
        jobs.append(run_plants(plants, size, source, args.database_url, base_dir, args.seed))
    if args.parallel:
        done = await asyncio.gather(*jobs)
    else:
        done = [await job for job in jobs]
    results = done.pop(0)
    fuzz = done.pop(0) if fuzzing else None
    planted = done.pop(0) if plants else []
    return results, fuzz, planted


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = SHORT if args.short else FULL
    if args.orders:
        size = type(size)(**{**size.__dict__, "orders": args.orders})
    default = not args.scenario and not args.plant
    plants = (
        list(PLANTS)
        if (default and not args.no_plants) or "all" in (args.plant or [])
        else list(args.plant or [])
    )
    load_before = os.getloadavg()
    started = time.monotonic()
    source = load_orders(max(size.orders, size.plant_orders))
    base_dir = base_directory()
    print(f"[chaos] {source.origin} orders; logs and databases in {base_dir}", file=sys.stderr, flush=True)
    try:
        results, fuzz, planted = asyncio.run(stoppable(everything(args, size, source, base_dir, plants)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"[chaos] interrupted; what it started is stopped, logs in {base_dir}", file=sys.stderr)
        exit_without_finalizing(130)
    let_through = bad_inputs.let_through()
    load_after = os.getloadavg()
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({
            "results": as_dicts(results), "plants": as_dicts(planted),
            "fuzz": None if fuzz is None else {**fuzz.__dict__, "doors": {d: {"cases": t.cases, **t.kinds, "stuck": t.stuck, "tracebacks": t.tracebacks} for d, t in fuzz.doors.items()}},
            "bad_inputs_let_through": let_through, "load_average": [load_before[0], load_after[0]], "seconds": elapsed,
        }, indent=2, default=str))  # fmt: skip
    else:
        if results:
            print(table(results), paths_table(results), outage_table(results), details(results), sep="\n\n")
        if fuzz is not None:
            print("\n" + door_table(fuzz) + "\n" + summary(fuzz))
        if planted:
            print("\n" + plant_table(planted))
            if args.plant:  # asked for: show what caught it
                print(details(planted))
        refused = len(bad_inputs.BAD_INPUTS) - len(let_through)
        print(f"\nbad inputs refused by parse_order: {refused} of {len(bad_inputs.BAD_INPUTS)}")
        for case in let_through:
            print(f"  LET THROUGH {case}")
        print(f"{elapsed:.0f} s in all; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    found = any(not r.ok for r in results) or (fuzz is not None and not fuzz.ok) or bool(let_through)
    if default:  # the plants are proof the invariants work: one not caught fails the run
        found = found or any(r.ok for r in planted)
    elif args.plant:  # asked for plants: their violations are the run's
        found = found or any(not r.ok for r in planted)
    clean_up(base_dir, keep=args.keep or (found and not (args.plant and not default)))
    exit_without_finalizing(1 if found else 0)


if __name__ == "__main__":
    main()
