"""Demand forecasts and reorder-point recommendations as the doors show them (CLI output, JSON)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel

FORECAST_WORKFLOW = "ForecastWorkflow"
FORECAST_SCHEDULE_ID = "forecast-daily"
FORECAST_WORKFLOW_ID = "forecast"  # the schedule appends the time of each run


class ForecastModel(StrEnum):
    """The forecasting models (statsforecast aliases). The first six compete per series in the back-test;
    the last two are the baselines the back-test reports next to them, never chosen."""

    croston_sba = "croston_sba"  # Croston, Syntetos-Boylan bias correction: intermittent demand
    adida = "adida"  # aggregate-disaggregate intermittent demand approach
    imapa = "imapa"  # ADIDA over several aggregation levels, averaged
    tsb = "tsb"  # Teunter-Syntetos-Babai: demand probability decays between sales
    ses = "ses"  # simple exponential smoothing, alpha optimized
    weekly_window_average = "weekly_window_average"  # each weekday: the mean of its last 4 weeks
    naive = "naive_last_value"  # baseline: tomorrow sells what today sold
    moving_average = "moving_average_28"  # baseline: the mean of the last 28 days


CANDIDATES = [
    ForecastModel.croston_sba,
    ForecastModel.adida,
    ForecastModel.imapa,
    ForecastModel.tsb,
    ForecastModel.ses,
    ForecastModel.weekly_window_average,
]
BASELINES = [ForecastModel.naive, ForecastModel.moving_average]


class DemandHistory(BaseModel):
    first_day: date
    days: int
    total_units: int
    mean_per_day: float
    last_28_days: int


class SeriesForecast(BaseModel):
    """One (sku, warehouse): its history, the model its back-test chose, the forecast per day."""

    sku: str
    warehouse: str
    as_of: date  # the last day of demand read
    history: DemandHistory
    model: ForecastModel
    mae: float | None  # the chosen model's back-test MAE (units/day); None: too short to back-test
    naive_mae: float | None
    moving_average_mae: float | None
    demand_std: float  # sigma of the daily forecast error (see domain.forecast.forecast_series)
    forecast: list[float]  # units per day, from the day after as_of


class Recommendation(BaseModel):
    sku: str
    warehouse: str
    as_of: date
    model: ForecastModel
    mae: float | None
    naive_mae: float | None
    moving_average_mae: float | None
    mean_daily_demand: float
    demand_std: float
    lead_time_days: int
    service_level: float
    reorder_point: int
    reorder_qty: int
    computed_at: datetime | None = None
    applied_at: datetime | None = None


class ForecastView(BaseModel):
    """What `forecast` prints per pair: history, forecast, back-test and recommendation next to the
    stock row's current reorder point and quantity (None: no stock row, or no rule yet)."""

    forecast: SeriesForecast
    recommendation: Recommendation
    current_reorder_point: int | None
    current_reorder_qty: int | None


class AppliedPolicy(BaseModel):
    """A stock row whose reorder point and quantity were set from a recommendation."""

    sku: str
    warehouse: str
    reorder_point_before: int | None
    reorder_qty_before: int | None
    reorder_point: int
    reorder_qty: int


class ApplyResult(BaseModel):
    applied: list[AppliedPolicy]
    unchanged: int  # recommendations the stock row already followed
    skipped: list[str]  # "sku@warehouse: why" (no stock row, no demand to reorder for)
    replenishing: list[str]  # replenishment workflows started because a pair is now at its reorder point


class ForecastRequest(BaseModel):
    """One ForecastWorkflow run: refresh the recommendations as of a day, and apply them with `apply`."""

    apply: bool = False
    as_of: date | None = None  # None: the day before the run started


class ForecastRun(BaseModel):
    recommendations: int
    applied: int = 0
    replenishing: list[str] = []
