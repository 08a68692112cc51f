"""Stock: levels, corrections and receipts (warehouses), purchase orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api.auth import Principal, Role, Warehouse, allow
from api.errors import ApiError, ErrorBody, Responses
from api.idempotency import IDEMPOTENT, door_request
from api.routes import JSON_BODY, StrictJsonRoute
from api.state import AppState, app_state
from domain import stock
from models.steps import PurchaseOrderView
from models.stock import StockAdjustmentIn, StockChange, StockLevel, StockReceiptIn
from services import stock as stock_changes

router = APIRouter(tags=["stock"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]
Reader = Annotated[Principal, Depends(allow(Role.warehouse, Role.support))]
_changes: Responses = {
    404: {"model": ErrorBody, "description": "unknown purchase order"},
    409: {"model": ErrorBody, "description": "refused: the purchase order is closed"},
    422: {"model": ErrorBody, "description": "invalid: unknown SKU or warehouse, or below what is reserved"},
}


@router.get("/stock", summary="Stock levels per SKU and warehouse")
async def stock_levels(
    who: Reader, state: State, sku: Annotated[str | None, Query(max_length=64)] = None
) -> list[StockLevel]:
    return await run_in_threadpool(stock.stock_levels, state.reads, sku)


@router.post(
    "/stock/adjustments",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_changes,
    summary="A cycle-count correction",
)
async def adjust(body: StockAdjustmentIn, who: Warehouse, state: State, request: Request) -> StockChange:
    """A movement row with the reason; a replenishment starts when the pair falls to its reorder point,
    and added units are offered to backordered orders."""
    if body.delta == 0:
        raise ApiError(
            422, "invalid_request", "an adjustment needs a non-zero delta", ["delta: must not be 0"]
        )
    reason = f"{body.reason} (by {who.name})"
    return await stock_changes.adjust(
        state.client,
        state.sessions,
        state.settings,
        body.sku,
        body.warehouse,
        body.delta,
        reason,
        door_request(request),
    )


@router.post(
    "/stock/receipts",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_changes | {202: {"model": PurchaseOrderView, "description": "passed to the purchase order"}},
    summary="Goods booked in",
)
async def receive(
    body: StockReceiptIn, who: Warehouse, state: State, request: Request, response: Response
) -> StockChange | PurchaseOrderView:
    """Without `purchase_order`: the units are on the shelf now (200). With it: the purchase order's
    replenishment books them in and serves backorders (202; follow it in GET /purchase-orders)."""
    if body.purchase_order is None:
        return await stock_changes.receive(
            state.client, state.sessions, body.sku, body.warehouse, body.quantity, door_request(request)
        )
    try:
        po = await stock_changes.receive_purchase_order(
            state.client,
            state.sessions,
            body.purchase_order,
            body.sku,
            body.warehouse,
            body.quantity,
            wait=False,
        )
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    response.status_code = status.HTTP_202_ACCEPTED
    return po


@router.get("/purchase-orders", summary="Replenishment purchase orders")
async def purchase_orders(who: Reader, state: State) -> list[PurchaseOrderView]:
    return await run_in_threadpool(stock.purchase_orders, state.reads)
