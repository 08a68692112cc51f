"""What order sources and support staff do with orders, over the Temporal client.

Shared by the command line (starter.py), the local demo (devstack.py) and the tests.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from models import search_attributes as sa
from models.orders import (
    CancelRequest,
    DeliveryConfirmation,
    FeedbackIn,
    OrderInput,
    OrderPolicy,
    OrderStatus,
    OrderView,
    PlaceOrder,
    ReturnReceipt,
    ReturnRequest,
    ReturnView,
    SupportNote,
)
from workflows.order import OrderWorkflow


class OrderInputError(ValueError):
    """The order is structurally invalid: refused before anything starts."""


class UnknownOrder(LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"unknown order {order_id}")


class Refused(RuntimeError):
    """The order is in no state to do what was asked."""


def workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


def parse_order(text: str) -> OrderInput:
    """Parse and validate an order document; raises OrderInputError naming the field."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OrderInputError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    try:
        return OrderInput.model_validate(data)
    except ValidationError as exc:
        problems = field_problems(exc)
        raise OrderInputError("invalid order: " + "; ".join(problems)) from None


def field_problems(exc: ValidationError, whole: str = "order") -> list[str]:
    """Each validation error as `field.path: message` (the whole document is named `whole`)."""
    return [f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}" for err in exc.errors()]


def policy_from(settings: Settings) -> OrderPolicy:
    return OrderPolicy(
        delivery_sla=settings.delivery_sla,
        return_window=settings.return_window,
        hold_timeout=settings.hold_timeout,
        return_receipt_timeout=settings.return_receipt_timeout,
        backorder_timeout=settings.backorder_timeout,
        review_above=settings.review_above,
        compensation_attempts=settings.compensation_attempts,
    )


@dataclass(frozen=True)
class Placement:
    order_id: str
    created: bool  # False: the order id was placed before; nothing new was started


async def place_order(
    client: Client, settings: Settings, order: OrderInput, policy: OrderPolicy | None = None
) -> Placement:
    """Start the order's workflow; placing the same order id again reports the existing order."""
    if order.order_id is None:
        order = order.model_copy(update={"order_id": f"O-{uuid.uuid4().hex[:12].upper()}"})
    assert order.order_id is not None
    request = PlaceOrder(order=order, policy=policy or policy_from(settings), placed_at=datetime.now(UTC))
    try:
        await client.start_workflow(
            OrderWorkflow.run,
            request,
            id=workflow_id(order.order_id),
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.ORDER_STATUS, OrderStatus.received.value),
                    SearchAttributePair(sa.CUSTOMER_ID, order.customer.id),
                    SearchAttributePair(sa.ORDER_CHANNEL, order.channel.value),
                ]
            ),
            static_summary=f"{order.channel.value} order {order.order_id} for {order.customer.name}",
        )
    except WorkflowAlreadyStartedError:
        return Placement(order.order_id, created=False)
    return Placement(order.order_id, created=True)


def handle(client: Client, order_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(OrderWorkflow.run, workflow_id(order_id))


@contextmanager
def _known(order_id: str) -> Iterator[None]:
    """Temporal's NOT_FOUND for an order's workflow is an unknown order to the caller."""
    try:
        yield
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UnknownOrder(order_id) from None
        raise


async def order_view(client: Client, order_id: str) -> OrderView:
    with _known(order_id):
        return await handle(client, order_id).query(OrderWorkflow.view)


async def wait_until_settled(client: Client, order_id: str, timeout: float = 120.0) -> OrderView:
    """Poll the live view until the order is confirmed, rejected, on hold or backordered (or beyond)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        view = await order_view(client, order_id)
        if view.status != OrderStatus.received:  # settled, or moved on already
            return view
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"order {order_id} is still {view.status.value} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


# The events that settle a placed order, with the outcome `place --wait` reports.
SETTLING_EVENTS = {
    "order_confirmed": OrderStatus.confirmed,
    "order_rejected": OrderStatus.rejected,
    "order_on_hold": OrderStatus.on_hold,
    "order_backordered": OrderStatus.backordered,
    "order_cancelled": OrderStatus.cancelled,
}


def settled_outcome(view: OrderView) -> tuple[OrderStatus, str]:
    """How the order settled (its first settling event) and why, even if it has moved on since."""
    for event in view.events:
        if event.type in SETTLING_EVENTS:
            status = SETTLING_EVENTS[event.type]
            return status, "" if status == OrderStatus.confirmed else event.detail
    return view.status, ""


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    status: str
    customer_id: str
    channel: str
    total: float | None
    started_at: datetime | None
    running: bool


async def list_orders(
    client: Client, status: str | None = None, customer: str | None = None
) -> list[OrderSummary]:
    query = "WorkflowType = 'OrderWorkflow'"
    if status:
        query += f" AND OrderStatus = {_quote(status)}"
    if customer:
        query += f" AND CustomerId = {_quote(customer)}"
    found = []
    async for execution in client.list_workflows(query):
        attrs = execution.typed_search_attributes
        found.append(
            OrderSummary(
                order_id=execution.id.removeprefix("order-"),
                status=attrs.get(sa.ORDER_STATUS) or "",
                customer_id=attrs.get(sa.CUSTOMER_ID) or "",
                channel=attrs.get(sa.ORDER_CHANNEL) or "",
                total=attrs.get(sa.ORDER_TOTAL),
                started_at=execution.start_time,
                running=execution.status == WorkflowExecutionStatus.RUNNING,
            )
        )
    return found


async def confirm_delivery(client: Client, order_id: str, shipment_id: str | None = None) -> list[str]:
    """The carrier's delivery confirmation; returns the shipments it confirms."""
    view = await order_view(client, order_id)
    in_transit = [s.id for s in view.shipments if s.status == "shipped" and shipment_id in (None, s.id)]
    if not in_transit:
        known = ", ".join(f"{s.id} ({s.status.value})" for s in view.shipments) or "none"
        raise Refused(
            f"order {order_id} has no shipment on its way to confirm"
            + (f" with id {shipment_id}" if shipment_id else "")
            + f"; shipments: {known}"
        )
    await handle(client, order_id).signal(
        OrderWorkflow.confirm_delivery, DeliveryConfirmation(shipment_id=shipment_id)
    )
    return in_transit


async def give_feedback(client: Client, order_id: str, feedback: FeedbackIn) -> None:
    view = await order_view(client, order_id)
    if not any(s.status == "delivered" for s in view.shipments):
        raise Refused(f"order {order_id} has not been delivered yet (status: {view.status.value})")
    await _running(client, order_id)
    await handle(client, order_id).signal(OrderWorkflow.submit_feedback, feedback)


async def cancel_order(client: Client, order_id: str, reason: str) -> OrderView:
    """Cancel with compensation; refused (Refused) once anything has shipped."""
    return await _update(client, order_id, OrderWorkflow.cancel, CancelRequest(reason=reason))


async def release_order(client: Client, order_id: str) -> OrderView:
    """Release an order held for review."""
    return await _update(client, order_id, OrderWorkflow.release)


async def request_return(client: Client, order_id: str, request: ReturnRequest) -> ReturnView:
    return await _update(client, order_id, OrderWorkflow.request_return, request)


async def receive_return(client: Client, order_id: str, receipt: ReturnReceipt) -> None:
    """The warehouse's receipt of a returned parcel."""
    view = await order_view(client, order_id)
    ret = next((r for r in view.returns if r.rma == receipt.rma), None)
    if ret is None:
        raise Refused(f"order {order_id} has no return {receipt.rma}")
    if ret.status == "expired":
        raise Refused(f"return {receipt.rma} expired unreceived; it can no longer be booked in")
    await _running(client, order_id)

    await handle(client, order_id).signal(OrderWorkflow.return_received, receipt)


async def add_note(client: Client, order_id: str, text: str) -> None:
    note = SupportNote(text=text)
    await _running(client, order_id)
    await handle(client, order_id).signal(OrderWorkflow.add_note, note)


async def _running(client: Client, order_id: str) -> None:
    with _known(order_id):
        description = await handle(client, order_id).describe()

    if description.status != WorkflowExecutionStatus.RUNNING:
        raise Refused(f"order {order_id} is closed")


async def _update(client: Client, order_id: str, update, *args):  # type: ignore[no-untyped-def]
    """Send an update; a validator's refusal becomes Refused with the workflow's own reason."""
    await _running(client, order_id)
    try:
        return await handle(client, order_id).execute_update(update, *args)
    except WorkflowUpdateFailedError as exc:
        raise Refused(getattr(exc.cause, "message", None) or str(exc.cause)) from None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
