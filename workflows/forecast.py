"""ForecastWorkflow: refresh the reorder-point recommendations from the demand forecast and, when the
schedule's request says so (OMS_AUTO_APPLY_FORECAST), apply them to the stock rows. Started by the
`forecast-daily` Temporal schedule (services/forecast.ensure_schedule)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.forecast import ForecastActivities
    from models.forecast import FORECAST_WORKFLOW, ForecastRequest, ForecastRun
    from workflows.options import RETRY_FOREVER, STEP_TIMEOUT

# Several hundred series through statsforecast take seconds, its first import in a worker a few more.
FORECAST_TIMEOUT = timedelta(minutes=15)


@workflow.defn(name=FORECAST_WORKFLOW)
class ForecastWorkflow:
    @workflow.run
    async def run(self, request: ForecastRequest) -> ForecastRun:
        # the last complete day: the day before the run started (deterministic on replay)
        as_of = request.as_of or (workflow.now() - timedelta(days=1)).date()
        count = await workflow.execute_activity_method(
            ForecastActivities.refresh_recommendations,
            as_of,
            start_to_close_timeout=FORECAST_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=f"forecast demand as of {as_of:%Y-%m-%d}",
        )
        if not request.apply:
            return ForecastRun(recommendations=count)
        applied = await workflow.execute_activity_method(
            ForecastActivities.apply_recommendations,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary="apply the recommendations to the stock rows",
        )
        return ForecastRun(
            recommendations=count, applied=len(applied.applied), replenishing=applied.replenishing
        )
