"""Daily demand per (sku, warehouse): the units that left a warehouse, by UTC day of shipping.

Demand is what was shipped, not what was ordered: picked reservations whose shipment has a
`shipped_at` (live orders and imported history write them the same way). Cancelled or short-picked
units never shipped, so they are not demand. Days without a shipment are zeros: each series is dense
from its first shipped day (within the history window) to the as-of date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
from sqlalchemy import func, select

from db import SessionFactory
from models import tables as t

PICKED = "picked"  # reservations.status of units taken off the shelf
COLUMNS = ["sku", "warehouse", "ds", "y"]


def daily_demand(
    sessions: SessionFactory,
    as_of: date,
    history_days: int,
    sku: str | None = None,
) -> pd.DataFrame:
    """Columns sku, warehouse, ds (midnight of the UTC day), y (units shipped that day, float).

    Only the `history_days` days up to and including `as_of` are read; shipments after it are ignored
    (so a forecast "as of" a past date sees only what was known then)."""
    start = as_of - timedelta(days=history_days - 1)
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    # Summed per shipment time in SQL (one row per shipment and sku), bucketed into UTC days here:
    # a date() of a timestamp is spelled differently by every database and depends on its time zone.
    query = (
        select(
            t.Reservation.sku,
            t.Reservation.warehouse,
            t.Shipment.shipped_at,
            func.sum(t.Reservation.quantity),
        )
        .join(t.Shipment, t.Shipment.id == t.Reservation.shipment_id)
        .where(
            t.Reservation.status == PICKED,
            t.Shipment.shipped_at.is_not(None),
            t.Shipment.shipped_at >= since,
            t.Shipment.shipped_at < until,
        )
        .group_by(t.Reservation.sku, t.Reservation.warehouse, t.Shipment.shipped_at)
    )
    if sku is not None:
        query = query.where(t.Reservation.sku == sku)
    with sessions() as session:
        rows = session.execute(query).all()
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(COLUMNS, _DTYPES, strict=True)})
    shipped = pd.DataFrame(rows, columns=["sku", "warehouse", "shipped_at", "y"])
    shipped["ds"] = pd.to_datetime(shipped["shipped_at"], utc=True).dt.tz_localize(None).dt.normalize()
    per_day = shipped.groupby(["sku", "warehouse", "ds"], as_index=False)["y"].sum()
    return densify(per_day, as_of)


_DTYPES = ["object", "object", "datetime64[ns]", "float64"]


def densify(per_day: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Fill the days without sales with zeros, from each pair's first day to `as_of`."""
    end = pd.Timestamp(as_of)
    frames = []
    for (sku, warehouse), series in per_day.groupby(["sku", "warehouse"], sort=True):
        days = pd.date_range(series["ds"].min(), end, freq="D")
        y = series.set_index("ds")["y"].reindex(days, fill_value=0).astype(float)
        frames.append(pd.DataFrame({"sku": sku, "warehouse": warehouse, "ds": days, "y": y.to_numpy()}))
    return pd.concat(frames, ignore_index=True)
