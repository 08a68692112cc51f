"""Reorder recommendations kept per (sku, warehouse), and their application to the stock rows.

Applying one is an audited change: the stock row's reorder point and quantity are set and a
`reorder_policy` movement (zero deltas, so the ledger sums are untouched) records what changed and
why in the stock ledger, where the SKU's history shows it.
"""

from __future__ import annotations

from sqlalchemy import select

from db import SessionFactory
from domain.stock_ledger import move
from models import tables as t
from models.forecast import AppliedPolicy, ApplyResult, ForecastModel, Recommendation

REORDER_POLICY = "reorder_policy"  # stock_movements.kind of a reorder point/quantity change


class ForecastError(ValueError):
    """A forecast request that cannot be served (an unknown SKU): nothing was changed."""


def require_sku(sessions: SessionFactory, sku: str | None) -> None:
    if sku is None:
        return
    with sessions() as session:
        if session.get(t.Product, sku) is None:
            raise ForecastError(f"unknown SKU {sku}")


def save_recommendations(
    sessions: SessionFactory, recommendations: list[Recommendation], replace_all: bool = False
) -> None:
    """Insert or replace each pair's recommendation (a refresh of the same data writes the same rows).
    `replace_all` (a refresh of every SKU) also drops pairs without demand any more."""
    with sessions.begin() as session:
        if replace_all:
            keep = {(r.sku, r.warehouse) for r in recommendations}
            for row in session.scalars(select(t.ReorderRecommendation)):
                if (row.sku, row.warehouse) not in keep:
                    session.delete(row)
        for rec in recommendations:
            stored = session.get(t.ReorderRecommendation, (rec.sku, rec.warehouse))
            if stored is None:
                stored = t.ReorderRecommendation(sku=rec.sku, warehouse=rec.warehouse)
                session.add(stored)
            for field, value in rec.model_dump(
                exclude={"sku", "warehouse", "computed_at", "applied_at"}
            ).items():
                setattr(stored, field, value)
            stored.computed_at = t.utcnow()


def recommendations(sessions: SessionFactory, sku: str | None = None) -> list[Recommendation]:
    query = select(t.ReorderRecommendation).order_by(
        t.ReorderRecommendation.sku, t.ReorderRecommendation.warehouse
    )
    if sku is not None:
        query = query.where(t.ReorderRecommendation.sku == sku)
    with sessions() as session:
        return [_view(row) for row in session.scalars(query)]


def current_policies(
    sessions: SessionFactory, sku: str | None = None
) -> dict[tuple[str, str], tuple[int | None, int | None]]:
    """(reorder point, reorder quantity) of each stock row."""
    query = select(t.Stock.sku, t.Stock.warehouse, t.Stock.reorder_point, t.Stock.reorder_qty)
    if sku is not None:
        query = query.where(t.Stock.sku == sku)
    with sessions() as session:
        return {(s, w): (p, q) for s, w, p, q in session.execute(query)}


def apply_recommendations(sessions: SessionFactory, sku: str | None = None) -> ApplyResult:
    """Write the recommendations to their stock rows (one transaction). Idempotent: a row that already
    has the recommended values is left alone and gets no ledger line."""
    applied: list[AppliedPolicy] = []
    skipped: list[str] = []
    unchanged = 0
    with sessions.begin() as session:
        query = select(t.ReorderRecommendation).order_by(
            t.ReorderRecommendation.sku, t.ReorderRecommendation.warehouse
        )
        if sku is not None:
            query = query.where(t.ReorderRecommendation.sku == sku)
        for rec in session.scalars(query):
            where = f"{rec.sku}@{rec.warehouse}"
            if rec.reorder_qty < 1:
                skipped.append(f"{where}: no demand forecast, nothing to reorder")
                continue
            stock = session.get(t.Stock, (rec.sku, rec.warehouse), with_for_update=True)
            if stock is None:
                skipped.append(f"{where}: no stock row")
                continue
            rec.applied_at = t.utcnow()
            if (stock.reorder_point, stock.reorder_qty) == (rec.reorder_point, rec.reorder_qty):
                unchanged += 1
                continue
            change = AppliedPolicy(
                sku=rec.sku,
                warehouse=rec.warehouse,
                reorder_point_before=stock.reorder_point,
                reorder_qty_before=stock.reorder_qty,
                reorder_point=rec.reorder_point,
                reorder_qty=rec.reorder_qty,
            )
            # the ledger line first (move locks the row and writes zero deltas), then the policy
            move(session, rec.sku, rec.warehouse, REORDER_POLICY, reason=_reason(rec, change))
            stock.reorder_point, stock.reorder_qty = rec.reorder_point, rec.reorder_qty
            applied.append(change)
    return ApplyResult(applied=applied, unchanged=unchanged, skipped=skipped, replenishing=[])


def _reason(rec: t.ReorderRecommendation, change: AppliedPolicy) -> str:
    mae = f", MAE {rec.mae:.1f}" if rec.mae is not None else ""
    return (
        f"forecast {rec.as_of:%Y-%m-%d} ({rec.model}{mae}): reorder point "
        f"{_shown(change.reorder_point_before)} -> {change.reorder_point}, "
        f"qty {_shown(change.reorder_qty_before)} -> {change.reorder_qty}"
    )


def _shown(value: int | None) -> str:
    return "none" if value is None else str(value)


def _view(row: t.ReorderRecommendation) -> Recommendation:
    return Recommendation(
        sku=row.sku,
        warehouse=row.warehouse,
        as_of=row.as_of,
        model=ForecastModel(row.model),
        mae=row.mae,
        naive_mae=row.naive_mae,
        moving_average_mae=row.moving_average_mae,
        mean_daily_demand=row.mean_daily_demand,
        demand_std=row.demand_std,
        lead_time_days=row.lead_time_days,
        service_level=row.service_level,
        reorder_point=row.reorder_point,
        reorder_qty=row.reorder_qty,
        computed_at=row.computed_at,
        applied_at=row.applied_at,
    )
