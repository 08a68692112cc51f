"""The demand forecast as the CLI and ForecastWorkflow run it: read the demand, forecast, store the
recommendations; apply them to the stock rows and start the replenishments they call for; and the
Temporal schedule that does it every day."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)

from config import Settings
from db import SessionFactory
from domain import reorder_policy
from extras import Extra, require
from models.forecast import (
    FORECAST_SCHEDULE_ID,
    FORECAST_WORKFLOW,
    FORECAST_WORKFLOW_ID,
    ApplyResult,
    ForecastRequest,
    ForecastView,
)
from models.steps import StockKey
from services import replenishment


def last_complete_day() -> date:
    """The day a forecast reads demand up to by default: yesterday (UTC), the last complete day (a
    part of today would read as a slow day). Plain date arithmetic: the command line asks for it
    before anything of the forecast's own (pandas, statsforecast) is loaded."""
    return datetime.now(UTC).date() - timedelta(days=1)


def refresh(
    sessions: SessionFactory, settings: Settings, sku: str | None = None, as_of: date | None = None
) -> list[ForecastView]:
    """Forecast every pair with shipped demand (or one SKU's) and store the recommendations.
    Raises reorder_policy.ForecastError for an unknown SKU (nothing stored), extras.ExtraMissing
    without the `analytics` extra."""
    require(Extra.analytics, "the demand forecast")
    # pandas (1.5 s to import) loads when a forecast runs, not with every command and worker start
    from domain.demand import daily_demand
    from domain.forecast import forecast_series, lead_time_days, recommend

    reorder_policy.require_sku(sessions, sku)
    as_of = as_of or last_complete_day()
    demand = daily_demand(sessions, as_of, settings.forecast_history_days, sku)
    lead_days = lead_time_days(settings.supplier_lead_time)
    forecasts = forecast_series(demand, horizon=lead_days + settings.forecast_review_days)
    recommendations = [
        recommend(f, lead_days, settings.forecast_review_days, settings.service_level) for f in forecasts
    ]
    reorder_policy.save_recommendations(sessions, recommendations, replace_all=sku is None)
    current = reorder_policy.current_policies(sessions, sku)
    return [
        ForecastView(
            forecast=f,
            recommendation=r,
            current_reorder_point=current.get((f.sku, f.warehouse), (None, None))[0],
            current_reorder_qty=current.get((f.sku, f.warehouse), (None, None))[1],
        )
        for f, r in zip(forecasts, recommendations, strict=True)
    ]


async def apply(
    client: Client, sessions: SessionFactory, settings: Settings, sku: str | None = None
) -> ApplyResult:
    """Write the stored recommendations to the stock rows, then replenish the pairs now at or below
    their new reorder point (at most one replenishment runs per pair)."""
    await asyncio.to_thread(reorder_policy.require_sku, sessions, sku)
    result = await asyncio.to_thread(reorder_policy.apply_recommendations, sessions, sku)
    # every pair following a recommendation, not only those changed now: a retry after a failure
    # between the write and the replenishment still starts the replenishment
    followed = await asyncio.to_thread(reorder_policy.recommendations, sessions, sku)
    keys = [StockKey(sku=r.sku, warehouse=r.warehouse) for r in followed if r.applied_at is not None]
    result.replenishing = await replenishment.replenish_if_low(
        client, sessions, settings.task_queue, settings.supplier_lead_time, keys
    )
    return result


async def ensure_schedule(client: Client, settings: Settings) -> None:
    """Create the `forecast-daily` schedule, or bring an existing one up to the current settings
    (interval, task queue, auto-apply): idempotent, called at every worker start (worker.run_worker)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            FORECAST_WORKFLOW,
            ForecastRequest(apply=settings.auto_apply_forecast),
            id=FORECAST_WORKFLOW_ID,
            task_queue=settings.analytics_task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.forecast_every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),  # a slow run is never doubled
    )
    try:
        await client.create_schedule(FORECAST_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(FORECAST_SCHEDULE_ID).update(
            lambda _: ScheduleUpdate(schedule=schedule)
        )
