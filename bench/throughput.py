"""The performance benchmark (issue 12): real Olist orders through the real worker, next to bare-engine
baselines of the same number of steps, on one dev server and one database of its own, in one run.

Phases, in this order (`python -m bench.throughput --help` for the options):

1. probe: one order placed -> shipped alone; its history gives the events, workflow tasks, steps S
   (activities + local activities) and Temporal Cloud actions of one order up to `shipped`;
2. baselines before: N workflows of S no-op regular activities, then N of S no-op local activities;
3. OMS: N orders placed at once until each has shipped (orders/s, ratio to each baseline);
4. baselines after (the figure used is the mean of before and after);
5. latency: M orders placed open-loop at half the measured OMS rate, placed -> confirmed p50..max;
6. hot SKU: orders of one unit each racing for fewer units of one SKU (reservations/s, no oversell);
7. codec off: the N orders again with the client and worker on plain JSON (what encryption costs);
8. two workers: the N orders again through two `python worker.py` processes on one task queue;
9. scale: on a fresh server, status and list times with 100 orders in the system and with 10,000.

It reports figures, never pass/fail: on a shared machine only the ratios mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.baseline import BaselineRun, StepKind, baseline_worker, run_baseline
from bench.gc_pauses import gc_pauses
from bench.history_cost import HistoryCost, history_cost
from bench.hot_sku import HotSkuRun, run_hot_sku, with_hot_sku
from bench.olist import (  # noqa: F401 (OLIST_DIR, build_catalog, read_csv, to_order_input: for bench.api_load)
    OLIST_DIR,
    Sample,
    build_catalog,
    load_sample,
    read_csv,
    to_order_input,
)
from bench.orders_run import LatencyRun, latency_to_confirmed, run_to_shipped
from bench.scale import ScaleRun, run_scale
from bench.two_workers import worker_processes
from config import SandboxMode, Settings
from connection import ensure_search_attributes, exit_without_finalizing
from db import SessionFactory, make_engine, make_session_factory
from devtools.scratch_database import admin_url_problem, scratch_database
from domain.catalog import load_catalog
from domain.stock import check_stock
from encryption.converter import data_converter
from encryption.keys import KeyRing, next_key_id
from models.orders import OrderInput
from models.workflow_names import order_workflow_id
from worker import Workers, build_worker, freeze_startup_heap

SHUTDOWN_TIMEOUT = 30.0  # seconds, per thing to stop
FILL_SECONDS_PER_ORDER = 0.2  # the scale run's filling may take this long per order (5/s) before giving up
LOADED_SAMPLES = 5  # throughput orders whose histories are also counted (under load)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- what the benchmark starts, and stops ----


def bench_database(admin_url: str | None) -> AbstractContextManager[str]:
    """A migrated, empty database: a temporary SQLite file, or a fresh PostgreSQL database on this
    machine (dropped after)."""
    return scratch_database(admin_url, None, "oms_bench")


@asynccontextmanager
async def temporal_server() -> AsyncIterator[tuple[WorkflowEnvironment, KeyRing]]:
    """A dev server of our own on a free port of 127.0.0.1, and the run's throwaway payload key. Its state
    is in a database file with WAL, as `make run` starts it (in memory it would flatter the server)."""
    keys = KeyRing(((next_key_id([]), os.urandom(32)),))
    with tempfile.TemporaryDirectory(prefix="oms-bench-temporal-") as folder:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            data_converter=data_converter(keys),
            dev_server_log_level="error",
            dev_server_extra_args=[
                *("--db-filename", str(Path(folder) / "temporal.db")),
                *("--sqlite-pragma", "journal_mode=wal"),
            ],
        )
        try:
            yield env, keys
        finally:
            await bounded(env.shutdown(), "the dev server")


@asynccontextmanager
async def running(worker: Worker | Workers) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
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


def bench_settings(client: Client, url: str, queue: str) -> Settings:
    return Settings(
        temporal_address=client.service_client.config.target_host,
        database_url=url,
        task_queue=queue,
        # placed -> shipped measures the system, not the parties: released at once, and the sandbox
        # warehouse reports as soon as it can (its reports are still real updates); no carrier
        release_delay=timedelta(0),
        sandbox_pick_time=timedelta(0),
        sandbox_pack_time=timedelta(0),
        sandbox_carrier=SandboxMode.manual,
    )


def renamed(orders: list[OrderInput], suffix: str) -> list[OrderInput]:
    return [o.model_copy(update={"order_id": f"{o.order_id}-{suffix}"}) for o in orders]


async def order_cost(client: Client, order_id: str) -> HistoryCost:
    history = await client.get_workflow_handle(order_workflow_id(order_id)).fetch_history()
    return history_cost(history.events)


# ---- the options and the report ----


@dataclass(frozen=True)
class Options:
    orders: int = 150
    latency_orders: int = 100
    rate: float | None = None  # orders/s for the latency run; default half the measured OMS rate
    hot_orders: int = 100
    hot_stock: int = 60
    scale_orders: int = 10_000
    scale_small: int = 100
    scale_calls: int = 20
    skip_scale: bool = False
    skip_codec_off: bool = False
    skip_two_workers: bool = False
    database_url: str | None = None
    timeout: float = 600.0


@dataclass
class Report:
    started_at: str
    machine: dict[str, Any]
    database: str
    orders: int
    probe: dict[str, Any] = field(default_factory=dict)  # one order's history up to shipped, alone
    loaded: dict[str, Any] = field(default_factory=dict)  # the same, most of LOADED_SAMPLES under load
    baselines: dict[str, Any] = field(default_factory=dict)
    oms: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    hot_sku: dict[str, Any] = field(default_factory=dict)
    codec_off: dict[str, Any] = field(default_factory=dict)
    two_workers: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)
    ledger_problems: list[str] = field(default_factory=list)


def baseline_figures(before: BaselineRun, after: BaselineRun) -> dict[str, Any]:
    mean = (before.per_second + after.per_second) / 2
    return {
        "steps": before.steps,
        "workflows": before.workflows,
        "before_per_s": round(before.per_second, 2),
        "after_per_s": round(after.per_second, 2),
        "mean_per_s": round(mean, 2),
    }


def machine_facts() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "load_avg_before": [round(x, 2) for x in os.getloadavg()]}


# ---- the run ----


async def benchmark(opts: Options) -> Report:
    sample = load_sample(1 + opts.orders + opts.latency_orders)
    log(f"{len(sample.orders)} orders, {len(sample.catalog.products)} products from the Olist sample")
    report = Report(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine_facts(),
        database="",
        orders=opts.orders,
    )
    with bench_database(opts.database_url) as url:
        report.database = make_url(url).get_backend_name()
        engine = make_engine(url)
        try:
            sessions = make_session_factory(engine)
            load_catalog(sessions, with_hot_sku(sample.catalog, opts.hot_stock))
            freeze_startup_heap()  # as `python worker.py` does once it has started
            await benchmark_on(sample, url, sessions, opts, report)
            if not opts.skip_scale:
                await scale_on(sample.orders[0], url, sessions, opts, report)
            report.ledger_problems = check_stock(sessions)
        finally:
            engine.dispose()
    report.machine["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


async def benchmark_on(
    sample: Sample, url: str, sessions: SessionFactory, opts: Options, report: Report
) -> None:
    probe, rest = sample.orders[0], sample.orders[1:]
    orders, latency_orders = rest[: opts.orders], rest[opts.orders :]
    n = len(orders)
    async with temporal_server() as (env, keys):
        client = env.client
        await ensure_search_attributes(client)
        settings = bench_settings(client, url, f"oms-bench-{uuid.uuid4().hex[:6]}")
        threads = settings.worker_activity_threads
        bare_queue = f"{settings.task_queue}-bare"

        log("probe: one order to shipped, alone")
        async with running(build_worker(client, sessions, settings)):
            await run_to_shipped(client, settings, sessions, [probe], opts.timeout)
        assert probe.order_id is not None
        cost = await order_cost(client, probe.order_id)
        report.probe = cost.as_dict()
        steps = cost.steps
        log(f"probe: {cost.events} events, {steps} steps, {cost.actions} actions to shipped")

        async def baselines() -> tuple[BaselineRun, BaselineRun]:
            async with running(baseline_worker(client, bare_queue, threads)):
                regular = await asyncio.wait_for(
                    run_baseline(client, bare_queue, StepKind.regular, steps, n), opts.timeout
                )
                local = await asyncio.wait_for(
                    run_baseline(client, bare_queue, StepKind.local, steps, n), opts.timeout
                )
            return regular, local

        log(f"baselines before: {n} workflows of {steps} regular, then local, no-op steps")
        regular_before, local_before = await baselines()

        log(f"OMS: {n} orders placed at once, to shipped")
        async with running(build_worker(client, sessions, settings)):
            seconds, statuses = await run_to_shipped(client, settings, sessions, orders, opts.timeout)
            oms_rate = n / seconds
            loaded = [await order_cost(client, o.order_id) for o in orders[:LOADED_SAMPLES] if o.order_id]
            report.loaded = {
                "orders": len(loaded),
                "events_max": max(c.events for c in loaded),
                "workflow_tasks_max": max(c.workflow_tasks for c in loaded),
                "actions_max": max(c.actions for c in loaded),
            }

        log("baselines after")
        regular_after, local_after = await baselines()
        report.baselines = {
            "regular": baseline_figures(regular_before, regular_after),
            "local": baseline_figures(local_before, local_after),
        }
        report.oms = {
            "seconds": round(seconds, 2),
            "orders_per_s": round(oms_rate, 2),
            "ratio_to_regular": round(oms_rate / report.baselines["regular"]["mean_per_s"], 2),
            "ratio_to_local": round(oms_rate / report.baselines["local"]["mean_per_s"], 2),
            "final_statuses": dict(statuses),
        }

        async with running(build_worker(client, sessions, settings)):
            if latency_orders:
                rate = opts.rate or oms_rate / 2
                log(f"latency: {len(latency_orders)} orders open-loop at {rate:.2f}/s, placed -> confirmed")
                with gc_pauses() as pauses:
                    run: LatencyRun = await latency_to_confirmed(
                        client, settings, sessions, latency_orders, rate, opts.timeout
                    )
                report.latency = asdict(run) | {"gc": pauses.summary()}
            if opts.hot_orders:
                log(f"hot SKU: {opts.hot_orders} orders for {opts.hot_stock} units of one SKU, at once")
                hot: HotSkuRun = await run_hot_sku(
                    client, settings, sessions, opts.hot_orders, opts.hot_stock, opts.timeout
                )
                report.hot_sku = asdict(hot)

        if not opts.skip_codec_off:
            log(f"codec off: {n} orders on plain JSON")
            plain = Client(
                client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
            )
            plain_settings = settings.model_copy(update={"task_queue": f"{settings.task_queue}-plain"})
            async with running(build_worker(plain, sessions, plain_settings)):
                plain_seconds, _ = await run_to_shipped(
                    plain, plain_settings, sessions, renamed(orders, "P"), opts.timeout
                )
            report.codec_off = {
                "seconds": round(plain_seconds, 2),
                "orders_per_s": round(n / plain_seconds, 2),
                "time_codec_on_to_off": round(seconds / plain_seconds, 2),
            }

        if not opts.skip_two_workers:
            log(f"two workers: {n} orders through two `python worker.py` processes")
            two_settings = settings.model_copy(update={"task_queue": f"{settings.task_queue}-two"})
            async with worker_processes(client, two_settings, keys, 2, opts.timeout) as pids:
                two_seconds, two_statuses = await run_to_shipped(
                    client, two_settings, sessions, renamed(orders, "W2"), opts.timeout
                )
            report.two_workers = {
                "processes": len(pids),
                "seconds": round(two_seconds, 2),
                "orders_per_s": round(n / two_seconds, 2),
                "ratio_to_one_worker": round((n / two_seconds) / oms_rate, 2),
                "final_statuses": dict(two_statuses),
            }


async def scale_on(
    probe: OrderInput, url: str, sessions: SessionFactory, opts: Options, report: Report
) -> None:
    """On a fresh server (so `small` is what the system holds): one order shipped, fillers rejected."""
    async with temporal_server() as (env, _):
        client = env.client
        await ensure_search_attributes(client)
        settings = bench_settings(client, url, f"oms-bench-scale-{uuid.uuid4().hex[:6]}")
        live = renamed([probe], "S")
        live_id = live[0].order_id
        assert live_id is not None
        log(f"scale: status and list with {opts.scale_small} then {opts.scale_orders} orders in the system")
        async with running(build_worker(client, sessions, settings)):
            await run_to_shipped(client, settings, sessions, live, opts.timeout)
            run: ScaleRun = await run_scale(
                client,
                settings,
                sessions,
                live_id,
                opts.scale_small,
                opts.scale_orders,
                opts.scale_calls,
                max(opts.timeout, opts.scale_orders * FILL_SECONDS_PER_ORDER),
            )
        report.scale = {
            "small": asdict(run.small),
            "large": asdict(run.large),
            "ratio_large_to_small": run.ratios,
            "fill_orders": run.fill_orders,
            "fill_seconds": run.fill_seconds,
            "fill_orders_per_s": round(run.fill_orders / run.fill_seconds, 1) if run.fill_seconds else 0.0,
        }


# ---- the table ----


def render(r: Report) -> str:
    rows: list[tuple[str, str]] = [
        ("run", f"{r.started_at}, {r.machine['cores']} cores, database {r.database}, {r.orders} orders"),
        ("load average", f"{r.machine['load_avg_before']} -> {r.machine.get('load_avg_after')}"),
    ]
    p = r.probe
    if p:
        rows += [
            (
                "one order to shipped",
                f"{p['events']} events, {p['workflow_tasks']} workflow tasks, {p['actions']} actions",
            ),
            (
                "  its steps",
                f"{p['steps']} = {p['activities']} activities + {p['local_activities']} local activities "
                f"(in {p['local_activity_tasks']} workflow tasks); {p['upserts']} upserts, "
                f"{p['updates_accepted']} updates, {p['signals']} signals, {p['timers']} timers, "
                f"{p['other_markers']} patch markers",
            ),
        ]
    if r.loaded:
        rows.append(
            (
                "  under load (max)",
                f"{r.loaded['events_max']} events, {r.loaded['workflow_tasks_max']} workflow tasks, "
                f"{r.loaded['actions_max']} actions (of {r.loaded['orders']} orders)",
            )
        )
    for kind, b in r.baselines.items():
        rows.append(
            (
                f"bare {kind} ({b['steps']} steps)",
                f"{b['mean_per_s']:.2f} workflows/s (before {b['before_per_s']:.2f}, after {b['after_per_s']:.2f})",
            )
        )
    if r.oms:
        o = r.oms
        rows += [
            ("OMS placed -> shipped", f"{o['orders_per_s']:.2f} orders/s ({o['seconds']:.1f} s)"),
            (
                "  ratio to bare",
                f"{o['ratio_to_regular']:.2f}x regular, {o['ratio_to_local']:.2f}x local (higher is better)",
            ),
            ("  final statuses", ", ".join(f"{n} {s}" for s, n in sorted(o["final_statuses"].items()))),
        ]
    if r.latency:
        lat = r.latency
        ms = lat["confirmed_ms"]
        rows.append(
            (
                "placed -> confirmed",
                f"p50 {ms['p50']:.0f} / p90 {ms['p90']:.0f} / p99 {ms['p99']:.0f} / max {ms['max']:.0f} ms "
                f"({lat['orders']} orders at {lat['rate']:.2f}/s; {lat['settled']})",
            )
        )
        if "gc" in lat:
            gc_ = lat["gc"]
            rows.append(
                (
                    "  GC pauses meanwhile",
                    f"{gc_['full_collections']} full, the longest {gc_['full_max_ms']:.0f} ms; "
                    f"{gc_['collections']} in all, {gc_['total_ms']:.0f} ms",
                )
            )
    if r.hot_sku:
        h = r.hot_sku
        ledger = "clean" if not h["ledger_problems"] else f"{len(h['ledger_problems'])} problems"
        rows.append(
            (
                "hot SKU",
                f"{h['reservations_per_s']:.2f} reservations/s; {h['confirmed']} of {h['orders']} confirmed for "
                f"{h['stock']} units, oversold {h['oversold']}; {h['settled']}; on hand {h['on_hand']}, "
                f"reserved {h['reserved']}; ledger {ledger}",
            )
        )
    if r.codec_off:
        c = r.codec_off
        rows.append(
            (
                "codec off",
                f"{c['orders_per_s']:.2f} orders/s (codec on takes {c['time_codec_on_to_off']:.2f}x the time)",
            )
        )
    if r.two_workers:
        w = r.two_workers
        rows.append(
            (
                "two worker processes",
                f"{w['orders_per_s']:.2f} orders/s, {w['ratio_to_one_worker']:.2f}x one worker",
            )
        )
    if r.scale:
        s, ratio = r.scale, r.scale["ratio_large_to_small"]
        small, large = s["small"], s["large"]
        for name, label in (
            ("status_live_ms", "status (running order)"),
            ("status_closed_ms", "status (closed order)"),
            ("list_page_ms", "list, first page of 50"),
            ("list_all_ms", "list, every page"),
        ):
            rows.append(
                (
                    label,
                    f"{small[name]:.1f} ms at {small['orders_in_system']} orders, {large[name]:.1f} ms at "
                    f"{large['orders_in_system']} ({ratio[name]:.2f}x)",
                )
            )
        rows.append(("  listed", f"{small['listed']} then {large['listed']} orders by the full listings"))
        rows.append(
            (
                "  filling",
                f"{s['fill_orders']} orders in {s['fill_seconds']:.0f} s ({s['fill_orders_per_s']}/s)",
            )
        )
    ledger = "clean" if not r.ledger_problems else f"{len(r.ledger_problems)} PROBLEMS"
    rows.append(("stock ledger check", ledger))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines + [f"  {p}" for p in r.ledger_problems[:20]])


# ---- main ----

QUICK = {"orders": 20, "latency_orders": 20, "hot_orders": 40, "hot_stock": 24, "scale_orders": 500}


def parse_args(argv: list[str] | None = None) -> tuple[Options, str | None]:
    """The options, and where the JSON goes: None (the table), "-" (stdout) or a file name."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a small run: {QUICK}")
    parser.add_argument("--orders", type=int, help="N: Olist orders placed at once (default 150)")
    parser.add_argument(
        "--latency-orders", type=int, help="M: orders of the latency run (default 100; 0 skips)"
    )
    parser.add_argument(
        "--rate", type=float, help="orders/s of the latency run (default: half the measured rate)"
    )
    parser.add_argument("--hot-orders", type=int, help="orders racing for the hot SKU (default 100; 0 skips)")
    parser.add_argument("--hot-stock", type=int, help="units of the hot SKU (default 60)")
    parser.add_argument(
        "--scale-orders", type=int, help="orders in the system for the large scale point (10000)"
    )
    parser.add_argument("--skip-scale", action="store_true", help="no status/list scale run")
    parser.add_argument("--skip-codec-off", action="store_true", help="no run without the payload codec")
    parser.add_argument("--skip-two-workers", action="store_true", help="no run with two worker processes")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server on this machine to create a scratch database on "
        "(e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/test); default: a temporary SQLite file",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds allowed per phase (default 600)"
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the figures as JSON to FILE (no FILE: stdout)",
    )
    args = parser.parse_args(argv)
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k in Options.__dataclass_fields__ and k not in ("timeout", "database_url")
    }
    opts = Options(
        **((QUICK if args.quick else {}) | given),
        database_url=args.database_url,
        timeout=args.timeout,
    )
    if opts.orders < 1:
        parser.error("--orders must be at least 1")
    if min(opts.latency_orders, opts.hot_orders, opts.hot_stock) < 0:
        parser.error("--latency-orders, --hot-orders and --hot-stock cannot be negative")
    if opts.rate is not None and opts.rate <= 0:
        parser.error("--rate must be more than 0")
    if not opts.skip_scale and opts.scale_orders <= opts.scale_small:
        parser.error(f"--scale-orders must be more than {opts.scale_small}")
    if opts.timeout <= 0:
        parser.error("--timeout must be more than 0")
    if args.database_url and (problem := admin_url_problem(args.database_url)):
        parser.error(f"--database-url {problem}")
    return opts, args.json


def reserve_stdout() -> TextIO:
    """Keep stdout for the report alone: from now on whatever writes to file descriptor 1 (the dev
    server's banner, the SDK core's warnings) lands on stderr."""
    sys.stdout.flush()
    report = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    opts, json_to = parse_args(argv)
    out = reserve_stdout()
    status = 0
    try:
        report = asyncio.run(benchmark(opts))
        figures = json.dumps(asdict(report), indent=2)
        if json_to == "-":
            print(figures, file=out, flush=True)
        else:
            print(render(report), file=out, flush=True)
            if json_to:
                Path(json_to).write_text(figures + "\n", encoding="utf-8")
                log(f"figures written to {json_to}")
    except (TimeoutError, RuntimeError) as exc:
        log(f"benchmark did not complete: {exc}")
        status = 1
    exit_without_finalizing(status)


if __name__ == "__main__":
    main()
