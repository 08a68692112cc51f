"""Stock as the doors show it and take changes to it (HTTP bodies, CLI output)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from models.orders import Identifier, PlainText, Reason

Units = Annotated[int, Field(strict=True, gt=0, le=1_000_000)]
WarehouseCode = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9._-]+$")]


class StockLevel(BaseModel):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    available: int
    reorder_point: int | None = None  # replenish at or below this many available (None: no rule)
    reorder_qty: int | None = None
    count_requested_at: datetime | None = None  # a short pick here asked for a cycle count
    count_reason: str | None = None


class StockMovementView(BaseModel):
    """One line of the stock ledger, as the console shows a SKU's history."""

    id: int
    warehouse: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    order_id: str | None
    purchase_order_id: str | None
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class DoorRequest:
    """The HTTP request a stock change comes from, by its Idempotency-Key: `ref` names the caller, the
    key and the request's content. The change's movement carries it, so a retry of the request (its
    key given back after an error answer) moves nothing again; within `since` only, the key's lifetime
    (OMS_IDEMPOTENCY_TTL), after which the same key is a new request."""

    ref: str
    since: datetime


class StockChange(BaseModel):
    """A level after a change, and what followed: replenishments started, backorders now reserved."""

    level: StockLevel
    replenishing: list[str] = []
    backorders_served: list[str] = []


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class StockAdjustmentIn(_In):
    """A cycle-count correction: `delta` units more (or fewer) on hand than the books say."""

    sku: Identifier
    warehouse: WarehouseCode
    delta: Annotated[int, Field(strict=True, ge=-1_000_000, le=1_000_000)]
    reason: Reason


class StockReceiptIn(_In):
    """Goods booked in; with `purchase_order` the replenishment of that purchase order books them."""

    sku: Identifier
    warehouse: WarehouseCode
    quantity: Units
    purchase_order: Annotated[str, Field(min_length=1, max_length=80), PlainText] | None = None  # String(80)
