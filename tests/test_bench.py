"""The pure parts of `make bench`: the history cost counter on real histories from the test dev server,
the bare baselines' step counts, the percentiles (domain/percentiles.py), the Olist loader and the options."""

from __future__ import annotations

import gc
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.baseline import StepKind, baseline_worker, run_baseline
from bench.gc_pauses import gc_pauses
from bench.history_cost import history_cost
from bench.olist import OLIST_DIR, load_sample, read_csv
from bench.orders_run import summary_ms
from bench.throughput import parse_args
from domain.percentiles import nearest_rank
from models import search_attributes as sa

QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3)


@activity.defn
def flaky_once(n: int) -> int:
    """Fails its first attempt: the history shows one retry (ACTIVITY_TASK_STARTED attempt 2)."""
    if activity.info().attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return n


@activity.defn
def plain_step(n: int) -> int:
    return n


@workflow.defn(name="BenchCostProbe")
class CostProbe:
    """a patch, regular (retried once), local, upsert OrderStatus=shipped, regular, local, local."""

    @workflow.run
    async def run(self) -> None:
        timeout = timedelta(seconds=10)
        workflow.patched("bench-probe")  # a version marker, and the SDK's TemporalChangeVersion upsert
        await workflow.execute_activity(
            flaky_once, 1, start_to_close_timeout=timeout, retry_policy=QUICK_RETRY
        )
        await workflow.execute_local_activity(plain_step, 2, start_to_close_timeout=timeout)
        workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set("shipped")])
        await workflow.execute_activity(plain_step, 3, start_to_close_timeout=timeout)
        await workflow.execute_local_activity(plain_step, 4, start_to_close_timeout=timeout)
        await workflow.execute_local_activity(plain_step, 5, start_to_close_timeout=timeout)


@pytest.fixture(scope="module")
async def probe_history(client: Client):
    queue = f"bench-cost-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CostProbe],
        activities=[flaky_once, plain_step],
        activity_executor=ThreadPoolExecutor(max_workers=4),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(CostProbe.run, id=f"{queue}-run", task_queue=queue)
        await handle.result()
    return await handle.fetch_history()


async def test_history_cost_stops_at_the_upsert_that_sets_shipped(probe_history) -> None:
    cost = history_cost(probe_history.events)

    assert cost.reached
    # started, 3 workflow-task events, patch marker, version upsert, scheduled/started/completed,
    # 3 more, marker, upsert
    assert cost.events == 14
    assert (cost.other_markers, cost.version_upserts) == (1, 1)  # events, not actions
    assert cost.workflow_tasks == 2
    assert (cost.activities, cost.activity_retries) == (1, 1)
    assert (cost.local_activities, cost.local_activity_tasks) == (1, 1)
    assert (cost.upserts, cost.signals, cost.timers, cost.updates_accepted) == (1, 0, 0, 0)
    assert cost.steps == 2
    # started 1 + activity 1 + its retry 1 + one workflow task with a local activity 1 + upsert 1
    assert cost.actions == 5


async def test_history_cost_of_the_whole_run_counts_local_activities_once_per_workflow_task(
    probe_history,
) -> None:
    cost = history_cost(probe_history.events, until_status=None)

    assert not cost.reached
    assert cost.events == len(probe_history.events) == 23
    assert cost.workflow_tasks == 3
    assert (cost.activities, cost.activity_retries) == (2, 1)
    # the last two local activities ran in one workflow task: two markers, one action
    assert (cost.local_activities, cost.local_activity_tasks) == (3, 2)
    assert cost.steps == 5
    assert cost.actions == 1 + 2 + 1 + 2 + 1


async def test_a_status_never_upserted_counts_the_whole_history(probe_history) -> None:
    cost = history_cost(probe_history.events, until_status="delivered")

    assert not cost.reached
    assert cost.events == 23


@pytest.mark.parametrize(
    ("kind", "activities", "local", "local_tasks"), [("regular", 3, 0, 0), ("local", 0, 3, 1)]
)
async def test_the_bare_baselines_have_the_steps_asked_for(
    client: Client, kind: str, activities: int, local: int, local_tasks: int
) -> None:
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    async with baseline_worker(client, queue, threads=4):
        run = await run_baseline(client, queue, StepKind(kind), steps=3, count=2, prefix=queue)
    assert (run.workflows, run.steps) == (2, 3)
    assert run.per_second > 0

    history = await client.get_workflow_handle(f"{queue}-1").fetch_history()
    cost = history_cost(history.events)
    assert (cost.activities, cost.local_activities, cost.local_activity_tasks) == (
        activities,
        local,
        local_tasks,
    )
    assert cost.steps == 3


def test_gc_pauses_are_recorded_while_the_block_runs_and_only_then() -> None:
    gc.disable()  # only the collections asked for here
    try:
        with gc_pauses() as pauses:
            gc.collect()  # a full collection
            gc.collect(0)
    finally:
        gc.enable()
    assert [generation for generation, _ in pauses.seconds] == [2, 0]
    summary = pauses.summary()
    assert (summary["collections"], summary["full_collections"]) == (2, 1)
    assert summary["full_max_ms"] <= summary["total_ms"]
    gc.collect()
    assert len(pauses.seconds) == 2  # the block has ended: no longer recorded


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [nearest_rank(values, p) for p in (7, 50, 90, 99, 100)] == [7.0, 50.0, 90.0, 99.0, 100.0]
    assert nearest_rank([0.2], 99) == 0.2
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    assert summary_ms([0.010, 0.020, 0.030, 0.400]) == {"p50": 20.0, "p90": 400.0, "p99": 400.0, "max": 400.0}
    assert summary_ms([]) == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}


def test_the_olist_loader_says_what_is_missing_and_where(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as missing:
        load_sample(3, tmp_path / "olist")
    message = str(missing.value)
    assert "the Olist sample is missing" in message
    assert "olist_order_items_dataset.csv" in message
    assert str(tmp_path / "olist") in message


@pytest.mark.skipif(not OLIST_DIR.is_dir(), reason=f"the Olist sample is not at {OLIST_DIR}")
def test_the_olist_sample_becomes_orders_the_catalog_can_serve() -> None:
    sample = load_sample(5)

    assert len(sample.orders) == 5
    skus = {p.sku for p in sample.catalog.products}
    assert {line.sku for order in sample.orders for line in order.lines} <= skus
    assert {s.sku for s in sample.catalog.stock} == skus
    # issue 26: each order's freight is its shipping, so a replay captures what the customer paid for it
    items = read_csv("olist_order_items_dataset.csv", OLIST_DIR)
    for order in sample.orders:
        own = [x for x in items if "OL-" + x["order_id"][:12].upper() == order.order_id]
        freight = sum((Decimal(x["freight_value"]) for x in own), Decimal(0))
        assert sum((s.price for s in order.shipping_lines), Decimal(0)) == freight
        assert all(line.unit_price is not None for line in order.lines)


def test_quick_and_the_defaults() -> None:
    full, json_to = parse_args([])
    assert (full.orders, full.latency_orders, full.hot_orders, full.hot_stock, full.scale_orders) == (
        150,
        100,
        100,
        60,
        10_000,
    )
    assert json_to is None
    quick, json_to = parse_args(["--quick", "--orders", "7", "--json", "out.json"])
    assert (quick.orders, quick.latency_orders, quick.scale_orders) == (7, 20, 500)
    assert json_to == "out.json"
    assert parse_args(["--json"])[1] == "-"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--orders", "0"], "--orders must be at least 1"),
        (["--rate", "0"], "--rate must be more than 0"),
        (["--scale-orders", "50"], "--scale-orders must be more than 100"),
        (["--database-url", "sqlite:///x.db"], "names a PostgreSQL server"),
        (
            ["--database-url", "postgresql+psycopg2://postgres@db.example.org/test"],
            "only one on this machine",
        ),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_args(argv)
    assert refused.value.code == 2
    assert message in capsys.readouterr().err
