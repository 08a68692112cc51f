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
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from chaos import bad_inputs
from chaos.orders import load_orders
from chaos.run import FULL, SCENARIOS, SHORT, as_dicts, base_directory, clean_up, details, run, table
from connection import exit_without_finalizing

T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__import__("chaos").__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--short",
        action="store_true",
        help="the short version (30 orders, fewer faults) that `make test` runs",
    )
    parser.add_argument("--orders", type=int, help="orders per scenario (default 300, short 30)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this one (repeatable); default all",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OMS_TEST_DATABASE_URL"),
        help="a PostgreSQL server on this machine to create scratch databases on (default: "
        "$OMS_TEST_DATABASE_URL, else SQLite files); the database outage needs PostgreSQL",
    )
    parser.add_argument(
        "--parallel", action="store_true", help="run the scenarios at once (each on its own system)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="roles, placement order and kill timing (default 1)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (logs, databases) even when all is well"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.orders is not None and args.orders < 1:
        parser.error("--orders must be at least 1")
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url names a PostgreSQL server (SQLite is the default)")
    return args


async def stoppable(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; SIGTERM stops it as Ctrl-C does (asyncio.run's own handling): cancelled, and what it
    started stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = SHORT if args.short else FULL
    if args.orders:
        size = type(size)(**{**size.__dict__, "orders": args.orders})
    names = args.scenario or list(SCENARIOS)
    load_before = os.getloadavg()
    started = time.monotonic()
    source = load_orders(size.orders)
    base_dir = base_directory()
    print(f"[chaos] {source.origin} orders; logs and databases in {base_dir}", file=sys.stderr, flush=True)
    try:
        results = asyncio.run(
            stoppable(run(names, size, source, args.database_url, base_dir, args.seed, args.parallel))
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"[chaos] interrupted; what it started is stopped, logs in {base_dir}", file=sys.stderr)
        exit_without_finalizing(130)
    let_through = bad_inputs.let_through()
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"results": as_dicts(results), "bad_inputs_let_through": let_through,
                          "load_average": [load_before[0], load_after[0]]}, indent=2))  # fmt: skip
    else:
        print(table(results))
        print(details(results))
        refused = len(bad_inputs.BAD_INPUTS) - len(let_through)
        print(f"bad inputs refused at the door: {refused} of {len(bad_inputs.BAD_INPUTS)}")
        for case in let_through:
            print(f"  LET THROUGH {case}")
        print(
            f"{time.monotonic() - started:.0f} s in all; load average {load_before[0]:.2f} before, "
            f"{load_after[0]:.2f} after"
        )
    clean_up(base_dir, results, args.keep)
    failed = any(not r.ok for r in results) or bool(let_through)
    exit_without_finalizing(1 if failed else 0)


if __name__ == "__main__":
    main()
