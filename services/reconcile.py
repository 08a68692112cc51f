"""Reconcile: settle the orders whose workflow can no longer put money and stock right.

Terminating a run is the emergency brake: Temporal stops it at once and runs none of its code, so its
compensation never happens. Reconcile finds the orders whose run is closed without having settled —
terminated, failed, timed out or cancelled runs, and any closed run whose order the database says has
ended but still holds something — and settles what the database says they still hold:

- an approved authorization neither captured in full nor voided: voided through the payments ledger
  and the same gateway the worker uses (`adapters.payment_gateway`), with the idempotency key
  `<workflow id>:reconcile:void` (so two reconciles, even at once, void once);
- active reservations: released through the stock ledger, as the release step does; units picked for a
  shipment that never left: put back on the shelf, as the restock compensation does;
- the orders row: status `cancelled` (unless it had ended), and a `reconciled` event.

It also lists what it does not settle: running orders marked NeedsAttention, and runs whose input could
not be decoded.
Running it again settles nothing more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from adapters import payment_gateway
from adapters.payments import GatewayUnavailable, PaymentGateway
from db import SessionFactory
from domain import reconcile as holdings
from domain.payment_ledger import PaymentLedger, ledger_totals
from models.orders import OrderSummary, PaymentStatus, PlaceOrder
from models.validation import field_problems
from models.workflow_names import ORDER_WORKFLOW, order_id_of, order_workflow_id, step_key
from services.orders import OrderFilter, list_orders

# Closed runs that did not complete: their compensation may never have run.
CLOSED_NOT_COMPLETED = (
    f"WorkflowType = '{ORDER_WORKFLOW}' AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'"
)
VOID_STEP = "reconcile:void"


class SettledOrder(BaseModel):
    order_id: str
    run_status: str  # terminated, failed, timed_out, canceled, completed
    settled: list[str] = []  # what was done (with --dry-run: what would be done)
    problems: list[str] = []  # what could not be done, or needs a person


class UnreadableRun(BaseModel):
    workflow_id: str
    run_id: str
    run_status: str
    problem: str


class ReconcileReport(BaseModel):
    dry_run: bool
    orders: list[SettledOrder] = []
    needs_attention: list[OrderSummary] = []  # running orders marked NeedsAttention: listed, not settled
    unreadable: list[UnreadableRun] = []

    @property
    def problems(self) -> int:
        return sum(len(o.problems) for o in self.orders)


@dataclass(frozen=True)
class _Run:
    workflow_id: str
    run_id: str
    status: str


async def reconcile(
    client: Client, sessions: SessionFactory, dry_run: bool = False, gateway: PaymentGateway | None = None
) -> ReconcileReport:
    """Settle what closed runs left; `gateway`: the payment provider's (default: the worker's)."""
    report = ReconcileReport(dry_run=dry_run)
    runs: dict[str, _Run] = {}
    async for execution in client.list_workflows(CLOSED_NOT_COMPLETED):
        if execution.id not in runs:  # newest first: the order's latest run
            runs[execution.id] = _Run(execution.id, execution.run_id, _status(execution.status))
    for order_id in await asyncio.to_thread(holdings.ended_orders_still_holding, sessions):
        workflow_id = order_workflow_id(order_id)
        if workflow_id not in runs and (run := await _closed_run(client, workflow_id)) is not None:
            runs[workflow_id] = run

    ledger = PaymentLedger(sessions, gateway if gateway is not None else payment_gateway(sessions))
    for run in sorted(runs.values(), key=lambda r: r.workflow_id):
        order_id = order_id_of(run.workflow_id)
        held = await asyncio.to_thread(_holding, sessions, order_id)
        if held is None:  # the order was never recorded: was its input unreadable?
            _, problem = await _input(client, run)
            if problem is not None:
                report.unreadable.append(
                    UnreadableRun(
                        workflow_id=run.workflow_id, run_id=run.run_id, run_status=run.status, problem=problem
                    )
                )
            continue
        if not held.anything:
            continue
        placed, _ = await _input(client, run)  # the card token, which the sandbox gateway reacts to
        token = placed.order.payment.token if placed is not None else ""
        report.orders.append(await asyncio.to_thread(_settle, sessions, ledger, run, held, token, dry_run))

    report.needs_attention = [o for o in await list_orders(client, OrderFilter(marked=True)) if o.running]
    return report


@dataclass(frozen=True)
class _Holding:
    """What the database says an order still holds."""

    order_id: str
    row: holdings.OrderRow
    open_authorization: Decimal  # approved, neither captured nor voided
    captured: Decimal
    reserved: list[holdings.HeldStock]  # active reservations
    picked: list[holdings.HeldStock]  # picked for a shipment that never left

    @property
    def anything(self) -> bool:
        return self.open_authorization > 0 or bool(self.reserved) or bool(self.picked)


def _holding(sessions: SessionFactory, order_id: str) -> _Holding | None:
    row = holdings.order_row(sessions, order_id)
    if row is None:
        return None
    with sessions() as session:
        totals = ledger_totals(session, order_id)
    return _Holding(
        order_id=order_id,
        row=row,
        open_authorization=totals.open_authorization,
        captured=totals.captured,
        reserved=holdings.held_stock(sessions, order_id),
        picked=holdings.picked_not_shipped(sessions, order_id),
    )


def _settle(
    sessions: SessionFactory, ledger: PaymentLedger, run: _Run, held: _Holding, token: str, dry_run: bool
) -> SettledOrder:
    """Void, release, put back, and close the order row; with dry_run, only say so."""
    order_id, currency = held.order_id, held.row.currency
    result = SettledOrder(order_id=order_id, run_status=run.status)
    if dry_run:
        if held.open_authorization > 0:
            result.settled.append(f"would void {held.open_authorization:.2f} {currency}")
        result.settled += [f"would release {h}" for h in held.reserved]
        result.settled += [f"would put back {h} (picked, never shipped)" for h in held.picked]
        if held.row.status not in holdings.ENDED_ORDER_STATUSES:
            result.settled.append(f"would set status {held.row.status} -> cancelled")
        return result

    voided = False
    if held.open_authorization > 0:
        try:
            void = ledger.void(step_key(run.workflow_id, VOID_STEP), order_id, token)
        except GatewayUnavailable as exc:
            result.problems.append(
                f"void of {held.open_authorization:.2f} {currency} failed: {exc}; run reconcile again"
            )
        else:
            if void is not None:
                voided = True
                result.settled.append(f"voided {void.amount:.2f} {void.currency} ({void.reference})")
    if held.reserved:
        result.settled += [f"released {h}" for h in holdings.release_reservations(sessions, order_id)]
    if held.picked:
        result.settled += [
            f"put back {h} (picked, never shipped)" for h in holdings.restock_unshipped(sessions, order_id)
        ]
    if result.settled:
        payment = PaymentStatus.voided if voided and held.captured == 0 else None
        detail = f"run {run.status}: " + "; ".join(result.settled)
        if (before := holdings.close_order(sessions, order_id, detail, payment)) is not None:
            result.settled.append(f"status {before} -> cancelled")
    return result


async def _closed_run(client: Client, workflow_id: str) -> _Run | None:
    """The order's run if it is closed (a running one may still be settling by itself)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status in (None, WorkflowExecutionStatus.RUNNING):
        return None
    return _Run(workflow_id, description.run_id, _status(description.status))


async def _input(client: Client, run: _Run) -> tuple[PlaceOrder | None, str | None]:
    """The run's input, decoded as the workflow decodes it; or the problems that stopped it."""
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            break
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        try:
            (placed,) = await client.data_converter.decode(payloads, [PlaceOrder])
        except ValidationError as exc:
            return None, "; ".join(field_problems(exc, whole="input"))
        except Exception as exc:  # not even JSON of the right shape
            return None, f"cannot decode the input: {exc}"
        return placed, None
    return None, "no start event"


def _status(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"
