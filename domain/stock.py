"""Stock as warehouse and support staff see it: levels, corrections, receipts, purchase orders, and
the ledger check (levels equal the sum of movements; no reservation left behind)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import SessionFactory
from domain import webhook_outbox
from domain.stock_ledger import ensure_stock_row, move
from models import tables as t
from models.choices import WebhookEventType
from models.steps import PurchaseOrderView, StockKey
from models.stock import DoorRequest, StockLevel, StockMovementView

ENDED_ORDER_STATUSES = ("rejected", "cancelled", "completed")


class StockError(ValueError):
    pass


class LowStock(BaseModel):
    """A pair that calls for a purchase order: its available stock, less the units backordered orders
    want from it (`backordered`), is at or below its reorder point."""

    sku: str
    warehouse: str
    available: int
    reorder_point: int
    reorder_qty: int
    backordered: int = 0  # units backordered orders want that no other warehouse has or has on order

    @property
    def order_quantity(self) -> int:
        """The purchase order's quantity: the reorder quantity, plus what the backorders want beyond the
        stock the pair has (`reorder_qty + max(0, backordered - available)`).

        One purchase order thus serves every order waiting for the pair, and the stock left once they
        have taken theirs is what a reorder from an empty shelf leaves (`reorder_qty`, or more when the
        pair had more than they want). With nothing backordered it is the reorder quantity, as ever.
        """
        return self.reorder_qty + max(0, self.backordered - self.available)


def stock_levels(sessions: SessionFactory, sku: str | None = None) -> list[StockLevel]:
    query = select(t.Stock).order_by(t.Stock.sku, t.Stock.warehouse)
    if sku:
        query = query.where(t.Stock.sku == sku)
    with sessions() as session:
        return [
            StockLevel(
                sku=s.sku,
                warehouse=s.warehouse,
                on_hand=s.on_hand,
                reserved=s.reserved,
                available=s.on_hand - s.reserved,
                reorder_point=s.reorder_point,
                reorder_qty=s.reorder_qty,
                count_requested_at=s.count_requested_at,
                count_reason=s.count_reason,
            )
            for s in session.scalars(query)
        ]


def stock_movements(sessions: SessionFactory, sku: str, limit: int) -> list[StockMovementView]:
    """A SKU's latest ledger lines, newest first."""
    with sessions() as session:
        rows = session.scalars(
            select(t.StockMovement)
            .where(t.StockMovement.sku == sku)
            .order_by(t.StockMovement.created_at.desc(), t.StockMovement.id.desc())
            .limit(limit)
        )
        return [
            StockMovementView(
                id=m.id,
                warehouse=m.warehouse,
                kind=m.kind,
                on_hand_delta=m.on_hand_delta,
                reserved_delta=m.reserved_delta,
                order_id=m.order_id,
                purchase_order_id=m.purchase_order_id,
                reason=m.reason,
                created_at=m.created_at,
            )
            for m in rows
        ]


def adjust_stock(
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    delta: int,
    reason: str,
    request: DoorRequest | None = None,
) -> StockLevel:
    """A cycle-count correction of on-hand stock; it answers a count a short pick asked for. A delta of
    0 is such a count finding the books right: no movement, the request cleared."""
    if delta == 0:
        with sessions.begin() as session:
            stock = session.get(t.Stock, (sku, warehouse))
            if stock is None or stock.count_requested_at is None:
                raise StockError(
                    "an adjustment needs a non-zero delta (0 only confirms a count a short pick asked for)"
                )
            stock.count_requested_at = stock.count_reason = None
        return next(level for level in stock_levels(sessions, sku) if level.warehouse == warehouse)
    return _change(sessions, sku, warehouse, "adjust", delta, reason=reason, request=request)


def request_count(session: Session, sku: str, warehouse: str, reason: str) -> None:
    """Ask for a cycle count of a pair whose shelf count was found wrong (in the caller's transaction).
    The first request's time stays; the reason is the latest."""
    stock = ensure_stock_row(session, sku, warehouse)
    if stock.count_requested_at is None:
        stock.count_requested_at = t.utcnow()
    stock.count_reason = reason[:200]


def write_off_stock(
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    quantity: int,
    reason: str,
    request: DoorRequest | None = None,
) -> StockLevel:
    """Damaged, lost or expired units leave the shelf."""
    if quantity <= 0:
        raise StockError("a write-off needs a positive quantity")
    return _change(sessions, sku, warehouse, "write_off", -quantity, reason=reason, request=request)


def receive_stock(
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    quantity: int,
    po_id: str | None = None,
    request: DoorRequest | None = None,
) -> StockLevel:
    if quantity <= 0:
        raise StockError("a receipt needs a positive quantity")
    return _change(sessions, sku, warehouse, "receive", quantity, po_id=po_id, request=request)


def _moved_for(session: Session, request: DoorRequest) -> bool:
    """Whether this door request (by its Idempotency-Key) already moved stock, within the key's life."""
    moved = session.scalar(
        select(t.StockMovement.id)
        .where(t.StockMovement.request_ref == request.ref, t.StockMovement.created_at >= request.since)
        .limit(1)
    )
    return moved is not None


def _change(
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    kind: str,
    delta: int,
    reason: str | None = None,
    po_id: str | None = None,
    request: DoorRequest | None = None,
) -> StockLevel:
    with sessions.begin() as session:
        if session.get(t.Product, sku) is None:
            raise StockError(f"unknown SKU {sku}")
        if session.get(t.Warehouse, warehouse) is None:
            raise StockError(f"unknown warehouse {warehouse}")
        stock = ensure_stock_row(session, sku, warehouse)
        # a retry of a request whose change was made (its answer was an error after it) moves nothing
        retried = request is not None and _moved_for(session, request)
        ref = request.ref if request is not None else None
        if not retried and not move(
            session,
            sku,
            warehouse,
            kind,
            on_hand=delta,
            reason=reason,
            purchase_order_id=po_id,
            request_ref=ref,
        ):
            raise StockError(
                f"{sku} in {warehouse}: on hand {stock.on_hand} {delta:+d} would fall below the "
                f"{stock.reserved} units reserved"
            )
        if kind == "adjust":  # a person counted the shelf
            stock.count_requested_at = stock.count_reason = None
    return next(level for level in stock_levels(sessions, sku) if level.warehouse == warehouse)


def low_stock(sessions: SessionFactory, keys: list[StockKey]) -> list[LowStock]:
    """The given sku/warehouse pairs whose available stock is at or below their reorder point."""
    if not keys:
        return []
    with sessions() as session:
        return low_stock_in(session, keys)


def stock_keys(sessions: SessionFactory, skus: list[str]) -> list[StockKey]:
    """Every sku/warehouse pair that stocks one of `skus`."""
    with sessions() as session:
        rows = session.execute(
            select(t.Stock.sku, t.Stock.warehouse)
            .where(t.Stock.sku.in_(skus))
            .order_by(t.Stock.sku, t.Stock.warehouse)
        )
        return [StockKey(sku=sku, warehouse=warehouse) for sku, warehouse in rows]


def low_stock_in(session: Session, keys: list[StockKey]) -> list[LowStock]:
    """low_stock, in the caller's transaction (a reservation sees its own change).

    A pair is low when its available stock less the units backordered orders want from it is at or
    below its reorder point: orders waiting for stock are demand, and a receipt that leaves the pair
    above its reorder point but short of what they want must still order again (else they wait, their
    authorizations held, until the backorder timeout cancels them).

    Backordered orders wait for a SKU, not a warehouse (any warehouse may serve them): a pair counts
    what they want (`backordered_demand`) beyond the stock available in the SKU's other warehouses and
    on order there. Pairs of one SKU asked together are decided in warehouse preference order (priority,
    code), each counting what the ones before it are to order, so one purchase order covers a shortfall.
    """
    if not keys:
        return []
    wanted = {(k.sku, k.warehouse) for k in keys}
    skus = {k.sku for k in keys}
    demand = backordered_demand(session, skus)
    query = select(t.Stock).where(t.Stock.sku.in_(skus))
    if not demand:  # the usual case: only the pairs' own rows matter
        query = query.where(t.Stock.reorder_point.is_not(None), t.Stock.reorder_qty.is_not(None))
    rows = session.scalars(
        query.execution_options(populate_existing=True)  # the levels now, not rows the session loaded before
    ).all()
    on_order: dict[tuple[str, str], int] = {}
    supply: dict[str, int] = {}  # what each SKU's pairs can give backordered orders: available and on order
    if demand:
        priority = dict(session.execute(select(t.Warehouse.code, t.Warehouse.priority)).tuples().all())
        rows = sorted(rows, key=lambda s: (priority.get(s.warehouse, 0), s.warehouse, s.sku))
        on_order = _on_order_by_pair(session, set(demand))
        for s in rows:
            supply[s.sku] = supply.get(s.sku, 0) + max(0, s.on_hand - s.reserved)
        for (sku, _), qty in on_order.items():
            supply[sku] = supply.get(sku, 0) + qty
    low = []
    for s in rows:
        if (s.sku, s.warehouse) not in wanted or s.reorder_point is None or s.reorder_qty is None:
            continue
        available = s.on_hand - s.reserved
        backordered = 0
        if demand.get(s.sku):
            elsewhere = supply[s.sku] - max(0, available) - on_order.get((s.sku, s.warehouse), 0)
            backordered = max(0, demand[s.sku] - elsewhere)
        if available - backordered > s.reorder_point:
            continue
        pair = LowStock(
            sku=s.sku,
            warehouse=s.warehouse,
            available=available,
            reorder_point=s.reorder_point,
            reorder_qty=s.reorder_qty,
            backordered=backordered,
        )
        if backordered:  # the later pairs of this SKU count this one's purchase order as on order
            supply[s.sku] += pair.order_quantity
        low.append(pair)
    return low


def backordered_demand(session: Session, skus: Iterable[str]) -> dict[str, int]:
    """Units of each SKU that backordered orders still want: per order, its lines less the units it
    holds (reservations of any status but `short`, i.e. reserved, picked, or no longer needed).

    An order waiting for its stock (`orders.status` `backordered`) holds none of it; one whose short
    pick is backordered (a `-B<n>` placeholder shipment, which has no `shipments` row) holds what was
    picked, and the units not found are its demand. Imported orders (no workflow to serve) never count.
    """
    skus = list(skus)
    lines = session.execute(
        select(t.OrderLine.order_id, t.OrderLine.sku, func.sum(t.OrderLine.quantity))
        .join(t.Order, t.Order.id == t.OrderLine.order_id)
        .where(
            t.Order.status == "backordered",
            t.Order.imported_from.is_(None),
            t.OrderLine.sku.in_(skus),
        )
        .group_by(t.OrderLine.order_id, t.OrderLine.sku)
    ).all()
    if not lines:
        return {}
    held = {
        (order_id, sku): int(qty)
        for order_id, sku, qty in session.execute(
            select(t.Reservation.order_id, t.Reservation.sku, func.sum(t.Reservation.quantity))
            .where(
                t.Reservation.order_id.in_({order_id for order_id, _, _ in lines}),
                t.Reservation.sku.in_(skus),
                t.Reservation.status != "short",
            )
            .group_by(t.Reservation.order_id, t.Reservation.sku)
        )
    }
    demand: dict[str, int] = {}
    for order_id, sku, qty in lines:
        short = int(qty) - held.get((order_id, sku), 0)
        if short > 0:
            demand[sku] = demand.get(sku, 0) + short
    return demand


def _on_order_by_pair(session: Session, skus: set[str]) -> dict[tuple[str, str], int]:
    rows = session.execute(
        select(t.PurchaseOrder.sku, t.PurchaseOrder.warehouse, func.sum(t.PurchaseOrder.quantity))
        .where(t.PurchaseOrder.sku.in_(skus), t.PurchaseOrder.status == "open")
        .group_by(t.PurchaseOrder.sku, t.PurchaseOrder.warehouse)
    ).all()
    return {(sku, warehouse): int(qty) for sku, warehouse, qty in rows}


def reorder_quantity(sessions: SessionFactory, sku: str, warehouse: str) -> int | None:
    """What a purchase order raised for the pair now should order (`LowStock.order_quantity`, counting
    the backorders as they are now); None when the pair is not low (or has no reorder settings)."""
    low = low_stock(sessions, [StockKey(sku=sku, warehouse=warehouse)])
    return low[0].order_quantity if low else None


def stock_on_order(session: Session, skus: Iterable[str]) -> dict[str, int]:
    """Units on open purchase orders, per sku."""
    rows = session.execute(
        select(t.PurchaseOrder.sku, func.sum(t.PurchaseOrder.quantity))
        .where(t.PurchaseOrder.sku.in_(list(skus)), t.PurchaseOrder.status == "open")
        .group_by(t.PurchaseOrder.sku)
    ).all()
    return {sku: int(qty) for sku, qty in rows}


def raise_purchase_order(
    sessions: SessionFactory,
    po_id: str,
    sku: str,
    warehouse: str,
    quantity: int,
    expected_at: datetime,
    supplier_ref: str,
) -> PurchaseOrderView:
    with sessions.begin() as session:
        po = session.get(t.PurchaseOrder, po_id)
        if po is None:
            # the pair's figures before this purchase order counts as on order
            low = low_stock_in(session, [StockKey(sku=sku, warehouse=warehouse)])
            po = t.PurchaseOrder(
                id=po_id,
                sku=sku,
                warehouse=warehouse,
                quantity=quantity,
                status="open",
                expected_at=expected_at,
                supplier_ref=supplier_ref,
            )
            session.add(po)
            session.flush()
            _announce_raised(session, po, low)
        return _po_view(po)


def receive_purchase_order(sessions: SessionFactory, po_id: str, quantity: int) -> PurchaseOrderView:
    """Book the goods of a purchase order into stock and close it (once)."""
    with sessions.begin() as session:
        po = session.get(t.PurchaseOrder, po_id, with_for_update=True)
        if po is None:
            raise StockError(f"unknown purchase order {po_id}")
        if po.status == "open":
            ensure_stock_row(session, po.sku, po.warehouse)
            move(session, po.sku, po.warehouse, "receive", on_hand=quantity, purchase_order_id=po.id)
            po.status, po.received_at, po.received_quantity = "received", t.utcnow(), quantity
            view = _po_view(po)
            webhook_outbox.put_stock_event(
                session,
                WebhookEventType.purchase_order_received,
                f"po:{po.id}:received",
                po.sku,
                po.warehouse,
                view.received_at or t.utcnow(),
                {"purchase_order": view.model_dump(mode="json")},
            )
        return _po_view(po)


def purchase_orders(sessions: SessionFactory, po_id: str | None = None) -> list[PurchaseOrderView]:
    query = select(t.PurchaseOrder).order_by(t.PurchaseOrder.created_at, t.PurchaseOrder.id)
    if po_id:
        query = query.where(t.PurchaseOrder.id == po_id)
    with sessions() as session:
        return [_po_view(po) for po in session.scalars(query)]


def check_stock(sessions: SessionFactory) -> list[str]:
    """Every disagreement in the stock ledger; empty when all is well."""
    problems: list[str] = []
    with sessions() as session:
        sums = {
            (sku, wh): (int(on_hand or 0), int(reserved or 0))
            for sku, wh, on_hand, reserved in session.execute(
                select(
                    t.StockMovement.sku,
                    t.StockMovement.warehouse,
                    func.sum(t.StockMovement.on_hand_delta),
                    func.sum(t.StockMovement.reserved_delta),
                ).group_by(t.StockMovement.sku, t.StockMovement.warehouse)
            )
        }
        held = {
            (sku, wh): int(qty)
            for sku, wh, qty in session.execute(
                select(t.Reservation.sku, t.Reservation.warehouse, func.sum(t.Reservation.quantity))
                .where(t.Reservation.status == "active")
                .group_by(t.Reservation.sku, t.Reservation.warehouse)
            )
        }
        for s in session.scalars(select(t.Stock).order_by(t.Stock.sku, t.Stock.warehouse)):
            on_hand, reserved = sums.pop((s.sku, s.warehouse), (0, 0))
            if (s.on_hand, s.reserved) != (on_hand, reserved):
                problems.append(
                    f"{s.sku}@{s.warehouse}: level on_hand={s.on_hand} reserved={s.reserved}, "
                    f"movements sum to on_hand={on_hand} reserved={reserved}"
                )
            if s.reserved != held.get((s.sku, s.warehouse), 0):
                problems.append(
                    f"{s.sku}@{s.warehouse}: reserved={s.reserved}, open reservations hold "
                    f"{held.get((s.sku, s.warehouse), 0)}"
                )
        problems += [f"{sku}@{wh}: movements without a stock row" for sku, wh in sums]
        stale = session.execute(
            select(
                t.Reservation.id,
                t.Reservation.order_id,
                t.Reservation.sku,
                t.Reservation.warehouse,
                t.Order.status,
                t.Shipment.status,
            )
            .join(t.Order, t.Order.id == t.Reservation.order_id)
            .join(t.Shipment, t.Shipment.id == t.Reservation.shipment_id, isouter=True)
            .where(t.Reservation.status == "active")
        ).all()
        for rid, order_id, sku, wh, order_status, shipment_status in stale:
            if order_status in ENDED_ORDER_STATUSES or shipment_status in (
                "cancelled",
                "shipped",
                "delivered",
            ):
                problems.append(
                    f"reservation {rid} of {sku}@{wh} is left behind by order {order_id} "
                    f"({order_status}, shipment {shipment_status})"
                )
    return problems


def _po_view(po: t.PurchaseOrder) -> PurchaseOrderView:
    return PurchaseOrderView(
        id=po.id,
        sku=po.sku,
        warehouse=po.warehouse,
        quantity=po.quantity,
        status=po.status,
        created_at=po.created_at,
        expected_at=po.expected_at,
        received_at=po.received_at,
        received_quantity=po.received_quantity,
    )


def _announce_raised(session: Session, po: t.PurchaseOrder, low: list[LowStock]) -> None:
    """The webhooks of a new purchase order: `stock.low` (the pair's figures that called for it), then
    `purchase_order.raised`, in its transaction. A purchase order is raised once per time the pair runs
    low, so `stock.low` says it once per time too, not once per order that found it low."""
    at = po.created_at
    if low:
        webhook_outbox.put_stock_event(
            session,
            WebhookEventType.stock_low,
            f"po:{po.id}:low",
            po.sku,
            po.warehouse,
            at,
            {"level": low[0].model_dump(mode="json"), "purchase_order_id": po.id},
        )
    webhook_outbox.put_stock_event(
        session,
        WebhookEventType.purchase_order_raised,
        f"po:{po.id}:raised",
        po.sku,
        po.warehouse,
        at,
        {"purchase_order": _po_view(po).model_dump(mode="json")},
    )
