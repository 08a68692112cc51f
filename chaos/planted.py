"""Planted bugs: the run's proof that its invariants catch what they are there for.

Each plant monkeypatches one product function inside the chaos run's worker processes only (started as
`python -m chaos.worker_process` with CHAOS_PLANT=<name>; the product code has no switch for it). `python
-m chaos --plant NAME` runs a short scenario with it, placing the roles whose paths meet the bug, and
must report violations (it exits 1); `make chaos` runs every plant and prints which invariant caught it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chaos.orders import Role


@dataclass(frozen=True)
class Plant:
    what: str
    roles: tuple[Role, ...]  # the orders a plant's run places (in turn)
    install: Callable[[], None]


def _release_keeps_stock() -> None:
    """release_stock marks the reservation released but never gives the units back (its ledger move is
    skipped): the stock stays reserved for an order that no longer exists."""
    import activities.inventory as inventory

    real = inventory.move

    def move(session: Any, sku: str, warehouse: str, kind: str, **changes: Any) -> bool:
        return True if kind == "release" else real(session, sku, warehouse, kind, **changes)

    inventory.move = move


def _refund_short() -> None:
    """Every refund the gateway books is a cent short of what the order asked for."""
    from domain.payment_ledger import PaymentLedger

    real = PaymentLedger.refund

    def refund(self: PaymentLedger, key: str, order_id: str, amount: Decimal) -> Any:
        return real(self, key, order_id, amount - Decimal("0.01"))

    PaymentLedger.refund = refund  # type: ignore[method-assign]  # the plant: a wrong ledger


def _wrap_activity(name: str, wrap: Callable[[Callable[..., Any], Any], Callable[..., Any]]) -> None:
    """Replace the worker's activity `name` with `wrap(original, sessions)` (same name, same input)."""
    from temporalio import activity

    import worker

    build = worker.build_activities

    def build_activities(sessions: Any, client: Any, settings: Any) -> list[object]:
        activities = build(sessions, client, settings)
        out: list[object] = []
        for fn in activities:
            if getattr(fn, "__name__", "") == name:
                wrapped = functools.wraps(fn, updated=())(wrap(fn, sessions))  # type: ignore[arg-type]
                fn = activity.defn(name=name)(wrapped)
            out.append(fn)
        return out

    worker.build_activities = build_activities


def _capture_at_pack() -> None:
    """The shipment's value is captured when it is packed, with the key of the handover's capture: a
    capture without its shipment once an order is cancelled between the pack and the handover."""
    from sqlalchemy import select

    from models import tables as t
    from models.workflow_names import order_workflow_id, step_key
    from sandbox.gateway import sandbox_ledger

    def wrap(record_pack: Callable[..., Any], sessions: Any) -> Callable[..., Any]:
        gateway = sandbox_ledger(sessions)

        def captured_at_pack(record: Any) -> Any:
            result = record_pack(record)
            with sessions() as session:
                rows = session.execute(
                    select(t.Reservation.quantity, t.Product.price)
                    .join(t.Product, t.Product.sku == t.Reservation.sku)
                    .where(t.Reservation.shipment_id == record.shipment_id, t.Reservation.status == "picked")
                ).all()
            amount = sum((Decimal(price) * qty for qty, price in rows), Decimal(0))
            if amount > 0:
                key = step_key(order_workflow_id(record.order_id), f"capture:{record.shipment_id}")
                gateway.capture(key, record.order_id, amount)
            return result

        return captured_at_pack

    _wrap_activity("record_pack", wrap)


def _damaged_restocked() -> None:
    """A return received damaged is restocked as if it were good: the write-off is forgotten."""
    from sqlalchemy import select

    from domain.stock_ledger import move
    from models import tables as t
    from models.orders import ReturnCondition

    def wrap(receive_return: Callable[..., Any], sessions: Any) -> Callable[..., Any]:
        def restocking(receipt: Any) -> Any:
            restocked = receive_return(receipt)
            if receipt.condition == ReturnCondition.good:
                return restocked
            reason = f"return {receipt.rma}"
            with sessions.begin() as session:
                done = session.scalar(select(t.StockMovement.id).where(t.StockMovement.reason == reason))
                if done is None:
                    for line in session.scalars(select(t.ReturnLine).where(t.ReturnLine.rma == receipt.rma)):
                        move(session, line.sku, line.warehouse, "restock", on_hand=line.quantity,
                             order_id=receipt.order_id, reason=reason)  # fmt: skip
            return restocked

        return restocking

    _wrap_activity("receive_return", wrap)


def _void_skipped() -> None:
    """The gateway answers a void as if there were nothing to void: the authorization stays held."""
    from domain.payment_ledger import PaymentLedger

    def void(self: PaymentLedger, key: str, order_id: str, token: str = "") -> None:
        return None

    PaymentLedger.void = void  # type: ignore[method-assign,assignment]  # the plant: a void that does nothing


PLANTS: dict[str, Plant] = {
    "release-keeps-stock": Plant(
        "a release marks the reservation released without returning the stock",
        (Role.cancel_in_window, Role.visa, Role.cancel_after_pick),
        _release_keeps_stock,
    ),
    "refund-short": Plant(
        "every refund is a cent short",
        (Role.return_good, Role.lost_refund, Role.visa, Role.lost_timeout),
        _refund_short,
    ),
    "capture-at-pack": Plant(
        "the capture is taken at the pack, without its shipment having left",
        (Role.cancel_after_pack, Role.manual, Role.visa),
        _capture_at_pack,
    ),
    "damaged-restocked": Plant(
        "a damaged return is restocked: the write-off is forgotten",
        (Role.return_damaged, Role.return_good, Role.visa),
        _damaged_restocked,
    ),
    "void-skipped": Plant(
        "a void never releases the authorization",
        (Role.cancel_in_window, Role.short_cancel, Role.visa),
        _void_skipped,
    ),
}


def install(name: str) -> None:
    PLANTS[name].install()
