"""Return authorizations: recording them, receiving the goods (restock or write-off), closing them."""

from __future__ import annotations

from temporalio import activity

from db import SessionFactory
from domain.stock_ledger import move
from models import tables as t
from models.orders import ReturnCondition
from models.steps import ReceiptRecord, ReturnOutcome, ReturnRecord


class ReturnActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    def record_return(self, record: ReturnRecord) -> None:
        with self._sessions.begin() as session:
            if session.get(t.Return, record.rma) is not None:
                return
            session.add(
                t.Return(
                    rma=record.rma,
                    order_id=record.order_id,
                    status=record.status.value,
                    reason=record.reason,
                    exchange_sku=record.exchange_sku,
                    requested_at=record.requested_at,
                )
            )
            session.flush()
            session.add_all(
                t.ReturnLine(
                    rma=record.rma,
                    sku=line.sku,
                    warehouse=line.warehouse,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                )
                for line in record.lines
            )

    @activity.defn
    def receive_return(self, receipt: ReceiptRecord) -> int:
        """Book the warehouse's receipt once: good units go back into the warehouse they shipped from,
        damaged ones are written off (never restocked). Returns the units restocked by this call."""
        with self._sessions.begin() as session:
            row = session.get(t.Return, receipt.rma, with_for_update=True)
            if row is None:
                raise RuntimeError(f"unknown return {receipt.rma}")
            if row.received_at is not None:
                return 0
            row.received_at, row.condition = receipt.received_at, receipt.condition.value
            if receipt.condition != ReturnCondition.good:
                return 0
            lines = (
                session.query(t.ReturnLine).filter(t.ReturnLine.rma == receipt.rma).order_by(t.ReturnLine.sku)
            )
            restocked = 0
            for line in lines:
                if not move(
                    session,
                    line.sku,
                    line.warehouse,
                    "restock",
                    on_hand=line.quantity,
                    order_id=receipt.order_id,
                    reason=f"return {receipt.rma}",
                ):
                    raise RuntimeError(f"no stock row for {line.sku} in {line.warehouse}")
                restocked += line.quantity
            return restocked

    @activity.defn
    def close_return(self, outcome: ReturnOutcome) -> None:
        with self._sessions.begin() as session:
            row = session.get(t.Return, outcome.rma)
            if row is not None:
                row.status, row.refund_amount = outcome.status.value, outcome.refund_amount
