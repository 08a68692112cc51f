"""`starter.py forecast`: daily shipped demand -> a forecast chosen per series by a back-test -> reorder
point and quantity; `--apply` writes them to the stock rows (audited in the ledger) and replenishment
uses them; the `forecast-daily` Temporal schedule runs ForecastWorkflow."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleIntervalSpec

from config import Settings
from db import SessionFactory
from domain import stock
from domain.demand import daily_demand
from domain.forecast import evaluate, forecast_series, lead_time_days, reorder_policy
from domain.history_import import HistoryFormat, import_history
from domain.reorder_policy import REORDER_POLICY
from models import tables as t
from models.forecast import FORECAST_SCHEDULE_ID, FORECAST_WORKFLOW, ForecastRequest, ForecastRun
from models.workflow_names import replenishment_workflow_id
from services.forecast import ensure_schedule
from tests.helpers import (
    RETAIL_YEAR,
    add_order_row,
    add_products,
    add_warehouse,
    assert_stock_check_clean,
    cli,
    eventually,
    fresh_database,
    set_stock,
    unique,
)

RETAIL_LAST_DAY = date(2011, 12, 9)
AS_OF = date(2026, 10, 31)  # a past day: the suite's live orders (shipped today) are not in its demand


def ship_daily(
    sessions: SessionFactory, sku: str, warehouse: str, quantities: list[int], last_day: date
) -> None:
    """Shipped demand as live orders leave it: one shipment a day (at noon UTC) with a picked
    reservation of that day's units; the last quantity ships on `last_day`. Zeros ship nothing."""
    order_id = unique("FC")
    first_day = last_day - timedelta(days=len(quantities) - 1)
    with sessions.begin() as session:
        add_order_row(
            session,
            order_id,
            "C-FORECAST",
            status="completed",
            payment_status="captured",
            placed_at=datetime.combine(first_day, clock.min, tzinfo=UTC),
            total=Decimal("0.00"),
        )
        for i, quantity in enumerate(quantities):
            if quantity == 0:
                continue
            at = datetime.combine(first_day + timedelta(days=i), clock(12), tzinfo=UTC)
            shipment_id = f"{order_id}-S{i}"
            session.add(
                t.Shipment(
                    id=shipment_id,
                    order_id=order_id,
                    warehouse=warehouse,
                    status="shipped",
                    picked_at=at,
                    packed_at=at,
                    shipped_at=at,
                )
            )
            session.add(
                t.Reservation(
                    order_id=order_id,
                    shipment_id=shipment_id,
                    sku=sku,
                    warehouse=warehouse,
                    quantity=quantity,
                    status="picked",
                )
            )


def ledger_lines(sessions: SessionFactory, sku: str) -> list[tuple[str, int, int, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(
                t.StockMovement.kind,
                t.StockMovement.on_hand_delta,
                t.StockMovement.reserved_delta,
                t.StockMovement.reason,
            )
            .where(t.StockMovement.sku == sku, t.StockMovement.kind == REORDER_POLICY)
            .order_by(t.StockMovement.id)
        ).all()
    return [tuple(r) for r in rows]


def recommendation_rows(sessions: SessionFactory, sku: str) -> list[t.ReorderRecommendation]:
    with sessions() as session:
        return list(
            session.scalars(select(t.ReorderRecommendation).where(t.ReorderRecommendation.sku == sku))
        )


async def forecast_json(settings: Settings, *argv: str) -> dict:
    status, out = await cli(settings, "forecast", "--json", *argv)
    assert status == 0, out
    return json.loads(out)


# ---- the formula ----


def test_the_reorder_point_covers_the_lead_time_demand_plus_safety_stock() -> None:
    z = NormalDist().inv_cdf(0.95)  # 1.645
    # d=4/day over L=4 days: 16, plus z * sigma 3 * sqrt(4) = 9.87 -> 25.87, rounded up
    assert reorder_policy(4.0, 3.0, 4, 14, 0.95) == (math.ceil(16 + z * 3 * 2), 56) == (26, 56)
    assert reorder_policy(5.0, 0.0, 2, 14, 0.95) == (10, 70)  # no uncertainty: exactly the lead-time demand
    assert reorder_policy(0.01, 0.0, 2, 14, 0.95) == (1, 1)  # a trickle still reorders one unit
    assert reorder_policy(0.0, 2.0, 2, 14, 0.95) == (0, 0)  # no demand forecast: nothing to reorder
    assert lead_time_days(timedelta(days=2)) == 2
    assert lead_time_days(timedelta(hours=30)) == 2  # whole days, rounded up
    assert lead_time_days(timedelta(seconds=5)) == 1  # at least one


# ---- a hand-made series ----


async def test_constant_demand_gives_the_hand_computed_reorder_point(
    settings: Settings, sessions: SessionFactory
) -> None:
    sku = add_products(sessions, {"CONST": 0})["CONST"]
    ship_daily(sessions, sku, "W1", [5] * 120, AS_OF)

    (view,) = (await forecast_json(settings, "--sku", sku, "--as-of", AS_OF.isoformat()))["forecasts"]
    forecast, recommendation = view["forecast"], view["recommendation"]
    assert forecast["history"] == {
        "first_day": (AS_OF - timedelta(days=119)).isoformat(),
        "days": 120,
        "total_units": 600,
        "mean_per_day": 5.0,
        "last_28_days": 140,
    }
    assert forecast["mae"] == 0.0  # a model that forecasts 5 a day makes no error
    assert forecast["forecast"] == pytest.approx([5.0] * 16)  # lead time 2 days + review 14 days
    lead = lead_time_days(settings.supplier_lead_time)
    assert recommendation["mean_daily_demand"] == pytest.approx(5.0)
    assert recommendation["demand_std"] == pytest.approx(0.0, abs=1e-6)
    assert (recommendation["reorder_point"], recommendation["reorder_qty"]) == (5 * lead, 5 * 14) == (10, 70)
    assert view["current_reorder_point"] is None  # the stock row has no rule yet
    (row,) = recommendation_rows(sessions, sku)
    assert (row.reorder_point, row.reorder_qty, row.as_of, row.applied_at) == (10, 70, AS_OF, None)

    status, out = await cli(settings, "forecast", "--sku", sku, "--as-of", AS_OF.isoformat())
    assert status == 0
    assert f"forecast as of {AS_OF:%Y-%m-%d}: 1 sku/warehouse pair(s); lead time 2 d" in out
    assert "- -> 10" in out and "- -> 70" in out
    assert f"{sku}@W1 forecast per day: {AS_OF + timedelta(days=1):%m-%d} 5.0" in out


async def test_weekly_demand_is_forecast_by_weekday_and_beats_the_baselines(
    settings: Settings, sessions: SessionFactory
) -> None:
    """Sales on weekdays only (the Online Retail shop never trades on Saturdays): the weekday model
    forecasts the pattern exactly, the naive and moving-average baselines cannot."""
    sku = add_products(sessions, {"WEEKLY": 0})["WEEKLY"]
    days = [AS_OF - timedelta(days=139 - i) for i in range(140)]
    ship_daily(sessions, sku, "W1", [0 if d.weekday() >= 5 else 10 for d in days], AS_OF)
    (view,) = (await forecast_json(settings, "--sku", sku, "--as-of", AS_OF.isoformat()))["forecasts"]
    forecast = view["forecast"]
    assert forecast["model"] == "weekly_window_average"
    assert forecast["mae"] == pytest.approx(0.0)
    assert forecast["naive_mae"] > 1 and forecast["moving_average_mae"] > 1
    upcoming = [AS_OF + timedelta(days=i + 1) for i in range(16)]
    assert forecast["forecast"] == pytest.approx([0.0 if d.weekday() >= 5 else 10.0 for d in upcoming])


# ---- the Online Retail year ----


@pytest.mark.skipif(not RETAIL_YEAR.is_file(), reason=f"the Online Retail year is not at {RETAIL_YEAR}")
def test_the_online_retail_back_test_beats_the_naive_and_moving_average_forecasts(
    tmp_path: Path, record_property
) -> None:
    with fresh_database(tmp_path, "retail_year") as (_, sessions):
        retail_year_back_test(sessions, record_property)


def retail_year_back_test(sessions: SessionFactory, record_property: Any) -> None:
    started = time.perf_counter()
    summary = import_history(sessions, RETAIL_YEAR, HistoryFormat.online_retail)
    imported = time.perf_counter()
    demand = daily_demand(sessions, RETAIL_LAST_DAY, 730)
    read = time.perf_counter()
    result = evaluate(demand)
    evaluated = time.perf_counter()
    forecasts = forecast_series(demand, horizon=16)
    forecast_done = time.perf_counter()

    figures = {
        "import_seconds": round(imported - started, 1),
        "demand_read_seconds": round(read - imported, 1),
        "back_test_seconds": round(evaluated - read, 1),  # includes statsforecast's first import
        "forecast_seconds": round(forecast_done - evaluated, 1),
        "series": result.series,
        "chosen_mae_sum": result.chosen_mae,
        "naive_mae_sum": result.naive_mae,
        "moving_average_mae_sum": result.moving_average_mae,
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"\nOnline Retail year, {summary.lines} lines: {figures}; chosen models {result.chosen_models}")

    assert demand.groupby(["sku", "warehouse"]).ngroups == len(forecasts) >= 290
    assert int(demand["y"].sum()) == summary.units  # every shipped unit is demand, once
    assert result.holdout_days == 56 and result.series >= 290
    # out of sample: the choice was made on the 8 weeks before the held-out 8 weeks
    assert result.chosen_mae < result.naive_mae
    assert result.chosen_mae < result.moving_average_mae
    assert len(result.chosen_models) >= 3  # the choice is per series, not one model for all


# ---- apply ----


async def test_apply_sets_the_reorder_points_and_replenishment_uses_them(
    settings: Settings, sessions: SessionFactory, client: Client, worker: None
) -> None:
    warehouse = add_warehouse(sessions, priority=900)  # last choice: no other test's orders land here
    sku = add_products(sessions, {"APPLY": 0}, warehouse=warehouse)["APPLY"]
    set_stock(sessions, sku, warehouse, on_hand=8, reorder_point=5, reorder_qty=10)  # 8 > 5: not low
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    ship_daily(sessions, sku, warehouse, [5] * 90, yesterday)

    status, out = await cli(settings, "forecast", "--sku", sku, "--apply")
    assert status == 0, out
    assert f"{sku}@{warehouse}: reorder point 5 -> 10, qty 10 -> 70" in out
    assert f"replenishment: {replenishment_workflow_id(sku, warehouse)}" in out

    (level,) = stock.stock_levels(sessions, sku)
    assert (level.on_hand, level.reorder_point, level.reorder_qty) == (8, 10, 70)
    assert ledger_lines(sessions, sku) == [
        (
            REORDER_POLICY,
            0,
            0,
            f"forecast {yesterday:%Y-%m-%d} (adida, MAE 0.0): reorder point 5 -> 10, qty 10 -> 70",
        )
    ]
    (row,) = recommendation_rows(sessions, sku)
    assert row.applied_at is not None
    # 8 available is now at or below the new point 10: a purchase order for the new quantity, 70
    (po,) = await eventually(
        lambda: _purchase_orders(sessions, sku), lambda pos: len(pos) == 1 and pos[0].status == "open"
    )
    assert (po.warehouse, po.quantity) == (warehouse, 70)
    await assert_stock_check_clean(settings, sku)

    # the ledger shows it in the SKU's history, and applying again changes nothing
    assert [m.kind for m in stock.stock_movements(sessions, sku, 10)][0] == REORDER_POLICY
    status, out = await cli(settings, "forecast", "--sku", sku, "--apply")
    assert status == 0 and "applied 0 recommendation(s) (1 already in place, 0 skipped)" in out
    assert len(ledger_lines(sessions, sku)) == 1
    assert len(await _purchase_orders(sessions, sku)) == 1  # one replenishment per pair


async def _purchase_orders(sessions: SessionFactory, sku: str) -> list:
    return [po for po in stock.purchase_orders(sessions) if po.sku == sku]


async def test_stock_json_shows_each_rows_reorder_point_and_quantity(
    settings: Settings, sessions: SessionFactory
) -> None:
    sku = add_products(sessions, {"SHOWN": 12})["SHOWN"]
    set_stock(sessions, sku, "W1", on_hand=12, reorder_point=4, reorder_qty=30)
    status, out = await cli(settings, "stock", "--sku", sku, "--json")
    assert status == 0
    assert json.loads(out) == [
        {
            "sku": sku,
            "warehouse": "W1",
            "on_hand": 12,
            "reserved": 0,
            "available": 12,
            "reorder_point": 4,
            "reorder_qty": 30,
            "count_requested_at": None,
            "count_reason": None,
        }
    ]
    status, out = await cli(settings, "stock", "--sku", sku)
    assert out.splitlines()[-1].split() == [sku, "W1", "12", "0", "12", "4", "30"]


# ---- bad input ----


async def test_an_unknown_sku_or_day_is_refused_and_nothing_changes(
    settings: Settings, sessions: SessionFactory
) -> None:
    sku = add_products(sessions, {"KEEP": 8})["KEEP"]
    set_stock(sessions, sku, "W1", on_hand=8, reorder_point=5, reorder_qty=10)
    ship_daily(sessions, sku, "W1", [5] * 60, AS_OF)
    before = stock.stock_levels(sessions, sku)

    status, out = await cli(settings, "forecast", "--sku", "NO-SUCH-SKU", "--apply")
    assert (status, out) == (2, "")
    status, out = await cli(settings, "forecast", "--sku", sku, "--as-of", "31/10/2026", "--apply")
    assert (status, out) == (2, "")
    assert stock.stock_levels(sessions, sku) == before
    assert ledger_lines(sessions, sku) == [] and recommendation_rows(sessions, sku) == []


async def test_the_error_messages_name_the_problem(settings: Settings, capsys) -> None:
    await cli(settings, "forecast", "--sku", "NO-SUCH-SKU")
    assert "error: unknown SKU NO-SUCH-SKU" in capsys.readouterr().err
    await cli(settings, "forecast", "--as-of", "yesterday")
    assert "error: --as-of must be a day written YYYY-MM-DD, not 'yesterday'" in capsys.readouterr().err


@pytest.mark.parametrize("level", ["0.5", "1", "1.2", "-0.9"])
def test_a_service_level_out_of_range_is_refused(monkeypatch, level: str) -> None:
    monkeypatch.setenv("OMS_SERVICE_LEVEL", level)
    with pytest.raises(ValueError, match=r"OMS_SERVICE_LEVEL must be between 0.5 and 1 \(e.g. 0.95\)"):
        Settings()


def test_the_service_level_raises_the_safety_stock(monkeypatch) -> None:
    monkeypatch.setenv("OMS_SERVICE_LEVEL", "0.99")
    level = Settings().service_level
    assert level == 0.99
    assert reorder_policy(4.0, 3.0, 4, 14, level)[0] > reorder_policy(4.0, 3.0, 4, 14, 0.95)[0]


# ---- the schedule ----


async def test_the_daily_schedule_runs_the_forecast_workflow(
    settings: Settings, sessions: SessionFactory, client: Client, worker: None
) -> None:
    sku = add_products(sessions, {"SCHED": 0})["SCHED"]
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    ship_daily(sessions, sku, "W1", [3] * 90, yesterday)

    await ensure_schedule(client, settings)
    await ensure_schedule(client, settings)  # a second worker start: updated, not duplicated
    handle = client.get_schedule_handle(FORECAST_SCHEDULE_ID)
    described = await handle.describe()
    assert described.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(days=1))]
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    # the analytics worker's queue: the order worker has no forecast to run
    assert (action.workflow, action.task_queue) == (FORECAST_WORKFLOW, settings.analytics_task_queue)

    before = {w.id async for w in client.list_workflows(f"WorkflowType='{FORECAST_WORKFLOW}'")}
    await handle.trigger()

    async def completed_runs() -> list[str]:
        return [
            w.id
            async for w in client.list_workflows(
                f"WorkflowType='{FORECAST_WORKFLOW}' AND ExecutionStatus='Completed'"
            )
            if w.id not in before
        ]

    (run_id,) = await eventually(completed_runs, lambda ids: len(ids) == 1, timeout=120)
    result = await client.get_workflow_handle(run_id, result_type=ForecastRun).result()
    assert result.recommendations >= 1 and result.applied == 0  # OMS_AUTO_APPLY_FORECAST is off
    (row,) = recommendation_rows(sessions, sku)
    assert (row.as_of, row.reorder_point, row.reorder_qty, row.applied_at) == (yesterday, 6, 42, None)

    # with auto-apply (the schedule's request says so), the same workflow writes them to the stock row
    set_stock(sessions, sku, "W1", on_hand=100)
    applied = await client.execute_workflow(
        FORECAST_WORKFLOW,
        ForecastRequest(apply=True),
        id=unique("forecast-apply"),
        task_queue=settings.analytics_task_queue,
        result_type=ForecastRun,
    )
    assert applied.applied >= 1
    (level,) = stock.stock_levels(sessions, sku)
    assert (level.reorder_point, level.reorder_qty) == (6, 42)
