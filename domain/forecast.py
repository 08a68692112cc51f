"""Demand forecast per (sku, warehouse) and the reorder point and quantity it recommends.

Method (docs/analytics.md, "Demand forecast and reorder points"):
- Each series is the dense daily demand of a pair (domain/demand.py).
- Back-test, one origin: the last HOLDOUT_DAYS (8 weeks) are held out, every model forecasts them
  from the days before, and each model's mean absolute error (MAE, units/day) is measured. The pair's
  model is the candidate (models.forecast.CANDIDATES, statsforecast's intermittent-demand models and
  two smoothers) with the lowest MAE; the two baselines (naive last value, 28-day moving average)
  are measured for comparison only. A series with fewer than MIN_TRAIN_DAYS before the hold-out is
  too short to back-test: it gets Croston SBA, the usual choice for sparse demand.
- The chosen model is refitted on the whole series and forecasts the lead time plus review period.
- sigma (the daily forecast error) is the root mean squared back-test error of the chosen model (its
  spread and any bias); for a series too short to back-test, the standard deviation of its demand.
- reorder point = ceil(d * L + z * sigma * sqrt(L)), with d the mean daily forecast, L the supplier
  lead time in whole days (at least 1) and z the standard normal quantile of the service level;
  reorder quantity = ceil(d * review days), at least 1 when d > 0; no demand forecast: 0 and 0
  (nothing to reorder, never applied).

All series go through one StatsForecast call per fit (statsforecast is imported lazily: its first
import compiles with numba for seconds, which the worker and the CLI must not pay at start-up).
"""

from __future__ import annotations

import math
from datetime import timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from models.forecast import (
    BASELINES,
    CANDIDATES,
    DemandHistory,
    ForecastModel,
    Recommendation,
    SeriesForecast,
)

HOLDOUT_DAYS = 56  # the back-test's held-out weeks
MIN_TRAIN_DAYS = 28  # days a series needs before the hold-out to be back-tested
SHORT_SERIES_MODEL = ForecastModel.croston_sba
MOVING_AVERAGE_DAYS = 28
_ROUNDING = 6  # decimals kept before ceil(): 5.0000000001 units is 5, not 6


class Evaluation(BaseModel):
    """An out-of-sample back-test: summed over the series, the MAE of the chosen-per-series forecast and
    of the two baselines on the last `holdout` days, which none of them (nor the choice) saw."""

    series: int
    holdout_days: int
    chosen_mae: float
    naive_mae: float
    moving_average_mae: float
    chosen_models: dict[str, int]


def lead_time_days(lead_time: timedelta) -> int:
    """The supplier lead time in whole days, rounded up, at least one."""
    return max(1, math.ceil(lead_time.total_seconds() / 86400))


def reorder_policy(
    mean_daily: float, sigma: float, lead_days: int, review_days: int, service_level: float
) -> tuple[int, int]:
    """(reorder point, reorder quantity) for a daily demand forecast `mean_daily` with error `sigma`."""
    if mean_daily <= 0:
        return 0, 0
    z = NormalDist().inv_cdf(service_level)
    point = math.ceil(round(mean_daily * lead_days + z * sigma * math.sqrt(lead_days), _ROUNDING))
    quantity = max(1, math.ceil(round(mean_daily * review_days, _ROUNDING)))
    return max(0, point), quantity


def forecast_series(demand: pd.DataFrame, horizon: int, holdout: int = HOLDOUT_DAYS) -> list[SeriesForecast]:
    """Back-test, choose and forecast `horizon` days for every series of `demand` (domain.demand columns;
    every series ends on the same as-of day)."""
    if demand.empty:
        return []
    frame, keys = _with_ids(demand)
    choice = _choose(frame, holdout)
    refit = _statsforecast(frame, horizon)
    as_of = frame["ds"].max().date()
    result = []
    for uid, series in frame.groupby("unique_id", sort=True):
        sku, warehouse = keys[uid]
        chosen = choice.get(uid)
        model = chosen["model"] if chosen else SHORT_SERIES_MODEL
        y = series["y"].to_numpy()
        values = refit.loc[refit["unique_id"] == uid, model.value].to_numpy()
        result.append(
            SeriesForecast(
                sku=sku,
                warehouse=warehouse,
                as_of=as_of,
                history=DemandHistory(
                    first_day=series["ds"].min().date(),
                    days=len(y),
                    total_units=int(y.sum()),
                    mean_per_day=float(y.mean()),
                    last_28_days=int(y[-28:].sum()),
                ),
                model=model,
                mae=chosen["mae"] if chosen else None,
                naive_mae=chosen["naive_mae"] if chosen else None,
                moving_average_mae=chosen["moving_average_mae"] if chosen else None,
                demand_std=chosen["sigma"] if chosen else float(y.std()),
                forecast=[max(0.0, float(v)) for v in values],
            )
        )
    return sorted(result, key=lambda f: (f.sku, f.warehouse))


def recommend(
    forecast: SeriesForecast, lead_days: int, review_days: int, service_level: float
) -> Recommendation:
    """The reorder point and quantity from a series' forecast over the lead time plus review period."""
    window = forecast.forecast[: lead_days + review_days] or [0.0]
    mean_daily = float(np.mean(window))
    point, quantity = reorder_policy(mean_daily, forecast.demand_std, lead_days, review_days, service_level)
    return Recommendation(
        sku=forecast.sku,
        warehouse=forecast.warehouse,
        as_of=forecast.as_of,
        model=forecast.model,
        mae=forecast.mae,
        naive_mae=forecast.naive_mae,
        moving_average_mae=forecast.moving_average_mae,
        mean_daily_demand=round(mean_daily, _ROUNDING),
        demand_std=round(forecast.demand_std, _ROUNDING),
        lead_time_days=lead_days,
        service_level=service_level,
        reorder_point=point,
        reorder_qty=quantity,
    )


def evaluate(demand: pd.DataFrame, holdout: int = HOLDOUT_DAYS) -> Evaluation:
    """Hold out the last `holdout` days, run the whole method (back-test and choice included) on the
    days before, and score its forecasts and the baselines' on the held-out days."""
    frame, _ = _with_ids(demand)
    cutoff = frame["ds"].max() - pd.Timedelta(days=holdout)
    past, future = frame[frame["ds"] <= cutoff], frame[frame["ds"] > cutoff]
    past = past[past.groupby("unique_id")["ds"].transform("size") >= MIN_TRAIN_DAYS]
    choice = _choose(past, holdout)
    predicted = _statsforecast(past, holdout).merge(future, on=["unique_id", "ds"])
    chosen_model = {
        uid: (choice[uid]["model"] if uid in choice else SHORT_SERIES_MODEL).value
        for uid in predicted["unique_id"].unique()
    }
    picked = predicted.apply(lambda row: row[chosen_model[row["unique_id"]]], axis=1)
    errors = pd.DataFrame(
        {
            "unique_id": predicted["unique_id"],
            "chosen": (picked - predicted["y"]).abs(),
            "naive": (predicted[ForecastModel.naive.value] - predicted["y"]).abs(),
            "moving_average": (predicted[ForecastModel.moving_average.value] - predicted["y"]).abs(),
        }
    )
    per_series = errors.groupby("unique_id").mean()
    counts = pd.Series(chosen_model).value_counts()
    return Evaluation(
        series=len(per_series),
        holdout_days=holdout,
        chosen_mae=round(float(per_series["chosen"].sum()), 1),
        naive_mae=round(float(per_series["naive"].sum()), 1),
        moving_average_mae=round(float(per_series["moving_average"].sum()), 1),
        chosen_models={str(model): int(n) for model, n in counts.items()},
    )


def _with_ids(demand: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    """statsforecast's frame (unique_id, ds, y) and what each id stands for (ids, not "sku@warehouse":
    a sku may contain any separator)."""
    codes, pairs = pd.factorize(pd.MultiIndex.from_frame(demand[["sku", "warehouse"]]))
    ids = np.char.add("s", codes.astype(str))
    frame = pd.DataFrame({"unique_id": ids, "ds": demand["ds"].to_numpy(), "y": demand["y"].to_numpy()})
    return frame, {f"s{i}": (str(s), str(w)) for i, (s, w) in enumerate(pairs)}


def _choose(frame: pd.DataFrame, holdout: int) -> dict[str, dict[str, Any]]:
    """Per series long enough: the candidate with the lowest back-test MAE, its sigma, the baselines' MAE."""
    cutoff = frame["ds"].max() - pd.Timedelta(days=holdout)
    train, test = frame[frame["ds"] <= cutoff], frame[frame["ds"] > cutoff]
    train = train[train.groupby("unique_id")["ds"].transform("size") >= MIN_TRAIN_DAYS]
    if train.empty:
        return {}
    predicted = _statsforecast(train, holdout).merge(test, on=["unique_id", "ds"])
    names = [m.value for m in CANDIDATES + BASELINES]
    signed = predicted[names].sub(predicted["y"], axis=0)
    signed["unique_id"] = predicted["unique_id"]
    grouped = signed.groupby("unique_id")
    mae = grouped[names].agg(lambda e: float(np.abs(e).mean()))
    rmse = grouped[names].agg(lambda e: float(np.sqrt(np.mean(np.square(e)))))
    candidates = [m.value for m in CANDIDATES]
    result = {}
    for uid, row in mae.iterrows():
        scores = row[candidates].dropna()
        if scores.empty:
            continue
        best = str(scores.idxmin())  # ties: the first in CANDIDATES order
        result[str(uid)] = {
            "model": ForecastModel(best),
            "mae": round(float(row[best]), 4),
            "naive_mae": round(float(row[ForecastModel.naive.value]), 4),
            "moving_average_mae": _or_none(row[ForecastModel.moving_average.value]),
            "sigma": float(rmse.loc[uid, best]),
        }
    return result


def _or_none(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value), 4)


def _statsforecast(frame: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Every model's forecast of every series, `horizon` days on (one call, one process: on two cores
    the fits are faster than the start-up of worker processes)."""
    from statsforecast import StatsForecast  # lazily: seconds of numba compilation on first import
    from statsforecast.models import (
        ADIDA,
        IMAPA,
        TSB,
        CrostonSBA,
        Naive,
        SeasonalWindowAverage,
        SimpleExponentialSmoothingOptimized,
        WindowAverage,
    )

    models = [
        CrostonSBA(alias=ForecastModel.croston_sba.value),
        ADIDA(alias=ForecastModel.adida.value),
        IMAPA(alias=ForecastModel.imapa.value),
        TSB(alpha_d=0.1, alpha_p=0.1, alias=ForecastModel.tsb.value),
        SimpleExponentialSmoothingOptimized(alias=ForecastModel.ses.value),
        SeasonalWindowAverage(
            season_length=7, window_size=4, alias=ForecastModel.weekly_window_average.value
        ),
        Naive(alias=ForecastModel.naive.value),
        WindowAverage(window_size=MOVING_AVERAGE_DAYS, alias=ForecastModel.moving_average.value),
    ]
    return StatsForecast(models=models, freq="D", n_jobs=1).forecast(df=frame, h=horizon)
