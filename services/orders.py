"""What order sources, support staff and carriers do with orders, over the Temporal client.

The client layer: the command line (starter.py), the HTTP API (api/), the local demo and the tests all
call these functions, and name workflows, updates and signals through models.workflow_names only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from models import search_attributes as sa
from models import strict_json
from models.choices import ATTENTION_STATUSES
from models.money import money_from_float
from models.orders import (
    CancelLine,
    CancelRequest,
    Channel,
    CustomerReturnIn,
    CustomerReturnRequest,
    DeliveryConfirmation,
    EditIn,
    EditRequest,
    Feedback,
    FeedbackIn,
    GoodwillIn,
    GoodwillRefundView,
    GoodwillRequest,
    Identifier,
    OrderInput,
    OrderPage,
    OrderPolicy,
    OrderStatus,
    OrderSummary,
    OrderView,
    PlaceOrder,
    ReleaseRequest,
    ReturnDecision,
    ReturnDecisionIn,
    ReturnIn,
    ReturnReceipt,
    ReturnRequest,
    ReturnView,
    SupportNote,
)
from models.validation import field_problems
from models.workflow_names import (
    ORDER_WORKFLOW,
    OrderQuery,
    OrderSignal,
    OrderUpdate,
    order_id_of,
    order_workflow_id,
)
from services.newest_first import BadPosition, Position, newest_first, newest_first_page
from services.waiting import update_with_start_within, within

T = TypeVar("T")


class OrderInputError(ValueError):
    """The order is structurally invalid: refused before anything starts."""


class UnknownOrder(LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"unknown order {order_id}")


class Refused(RuntimeError):
    """The order is in no state to do what was asked."""


class Unprocessable(Refused):
    """What was asked cannot be granted as asked (an amount above what is left): the API's 422."""


# the order workflow's goodwill refusals (workflows/order.py: GOODWILL_REFUSED, GOODWILL_INVALID)
_GOODWILL_REFUSALS: dict[str, type[Refused]] = {"GoodwillRefused": Refused, "GoodwillInvalid": Unprocessable}


# the order workflow's edit refusals (workflows/line_edits.py: EDIT_REFUSED, EDIT_INVALID)
_EDIT_REFUSALS: dict[str, type[Refused]] = {"EditRefused": Refused, "EditInvalid": Unprocessable}


def parse_order(text: str | bytes) -> OrderInput:
    """Parse and validate an order document (bytes must be UTF-8); raises OrderInputError naming the
    field, and nothing else, whatever the input."""
    try:
        data = strict_json.loads(text)
    except strict_json.DuplicateKeys as exc:
        raise OrderInputError("invalid order: " + "; ".join(exc.problems)) from None
    except json.JSONDecodeError as exc:
        raise OrderInputError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise OrderInputError("invalid JSON: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise OrderInputError(f"invalid JSON: not UTF-8 (at byte {exc.start})") from None
    except (ValueError, TypeError) as exc:
        if "digits" in str(exc):  # an integer of thousands of digits (as the import says it)
            raise OrderInputError("invalid JSON: a number is too long") from None
        raise OrderInputError(f"invalid JSON: {_first_line(exc)}") from None
    try:
        return OrderInput.model_validate(data)
    except ValidationError as exc:
        problems = field_problems(exc)
        raise OrderInputError("invalid order: " + "; ".join(problems)) from None
    except (RecursionError, ValueError, TypeError) as exc:  # pydantic reports its own; a safety net
        raise OrderInputError(f"invalid order: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The error's first line, at most 200 characters, printable whatever it quotes."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return first.encode("ascii", "backslashreplace").decode()


def policy_from(settings: Settings) -> OrderPolicy:
    return OrderPolicy(
        delivery_sla=settings.delivery_sla,
        return_window=settings.return_window,
        hold_timeout=settings.hold_timeout,
        release_delay=settings.release_delay,
        exception_timeout=settings.exception_timeout,
        short_pick=settings.short_pick_policy,
        return_receipt_timeout=settings.return_receipt_timeout,
        backorder_timeout=settings.backorder_timeout,
        review_above=settings.review_above,
        compensation_attempts=settings.compensation_attempts,
    )


@dataclass(frozen=True)
class Placement:
    order_id: str
    created: bool  # False: the order id was placed before; nothing new was started
    same_order: bool = True  # False: that earlier order had a different content (a conflict)
    settled: OrderView | None = None  # placed with `wait`: its view once it settled (None: not yet)


async def place_order(
    client: Client,
    settings: Settings,
    order: OrderInput,
    policy: OrderPolicy | None = None,
    by: str | None = None,
    wait: float | None = None,
) -> Placement:
    """Start the order's workflow. The order id is the idempotency key: placing it again starts
    nothing and reports whether the earlier order had the same content.

    With `wait` (seconds): also wait until the order has settled, in the same request that starts it
    (update-with-start: no polling, no second round trip); `Placement.settled` is its view then."""
    if order.order_id is None:
        order = order.model_copy(update={"order_id": f"O-{uuid.uuid4().hex[:12].upper()}"})
    assert order.order_id is not None
    request = PlaceOrder(
        order=order, policy=policy or policy_from(settings), placed_at=datetime.now(UTC), placed_by=by
    )
    start: dict[str, Any] = {
        "id": order_workflow_id(order.order_id),
        "task_queue": settings.task_queue,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "search_attributes": TypedSearchAttributes(
            [
                SearchAttributePair(sa.ORDER_STATUS, OrderStatus.received.value),
                SearchAttributePair(sa.CUSTOMER_ID, order.customer.id),
                SearchAttributePair(sa.ORDER_CHANNEL, order.channel.value),
            ]
        ),
        # seen in clear by anyone with the Web UI or the Temporal database: ids only, never a name
        "static_summary": f"{order.channel.value} order {order.order_id} for customer {order.customer.id}",
    }
    try:
        if wait is None:
            await client.start_workflow(ORDER_WORKFLOW, request, **start)
            return Placement(order.order_id, created=True)
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            ORDER_WORKFLOW, request, id_conflict_policy=WorkflowIDConflictPolicy.FAIL, **start
        )
        try:
            settled = await update_with_start_within(
                client, OrderUpdate.wait_settled, operation, OrderView, wait
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError):
            # not settled in time, or the run ended first: started all the same (UnknownOrder if the
            # start itself did not get through); the caller follows it (`wait_until_settled`)
            await _is_running(client, order.order_id)
            return Placement(order.order_id, created=True)
        return Placement(order.order_id, created=True, settled=settled)
    except WorkflowAlreadyStartedError:
        earlier = await placed_order(client, order.order_id)
        return Placement(order.order_id, created=False, same_order=earlier == order)


async def placed_order(client: Client, order_id: str) -> OrderInput | None:
    """The order as it was placed: the input of its workflow's first event (None if unreadable)."""
    with _known(order_id):
        async for event in handle(client, order_id).fetch_history_events():
            if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                break
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            try:
                (request,) = await client.data_converter.decode(payloads, [PlaceOrder])
            except Exception:  # an input the model refuses today: certainly not the same order
                return None
            return request.order
    return None


def handle(client: Client, order_id: str) -> WorkflowHandle:
    return client.get_workflow_handle(order_workflow_id(order_id), result_type=OrderView)


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
        try:
            return await handle(client, order_id).query(OrderQuery.view, result_type=OrderView)
        except WorkflowQueryFailedError as exc:  # e.g. a run that could not read its own input
            raise Refused(
                f"order {order_id} has no live view: {exc}; `starter.py reconcile` lists it"
            ) from None


async def order_status(client: Client, order_id: str) -> OrderStatus | None:
    """The status the order's search attribute shows: Temporal answers it without a worker."""
    with _known(order_id):
        description = await handle(client, order_id).describe()
    value = description.typed_search_attributes.get(sa.ORDER_STATUS)
    return OrderStatus(value) if value is not None and value in OrderStatus.__members__ else None


PLACE_WAIT_TIMEOUT = 120.0  # seconds `place --wait` waits for an order to settle


async def wait_until_settled(client: Client, order_id: str, timeout: float = PLACE_WAIT_TIMEOUT) -> OrderView:
    """The order's view once it has settled (confirmed, rejected, on hold, backordered, or beyond).

    No polling: the `wait_settled` update answers when the workflow gets there. A closed run takes no
    updates; it has settled long ago, so its last view is the answer."""
    try:
        with _known(order_id):
            return await within(
                handle(client, order_id).execute_update(OrderUpdate.wait_settled, result_type=OrderView),
                timeout,
            )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # out of time, or the RPC deadline
        raise TimeoutError(
            f"order {order_id} has not settled within {timeout:g}s; is a worker running?"
        ) from None
    except (WorkflowUpdateFailedError, RPCError):
        if await _is_running(client, order_id):
            raise
        return await order_view(client, order_id)


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
class OrderFilter:
    status: OrderStatus | None = None
    customer: str | None = None
    channel: Channel | None = None
    overdue: bool | None = None
    # marked NeedsAttention by the workflow, or in one of the ATTENTION_STATUSES
    needs_attention: bool | None = None
    # marked NeedsAttention by the workflow alone (what reconcile reports)
    marked: bool | None = None

    def __post_init__(self) -> None:
        """A customer id as ids are written (models.orders.Identifier): the filter is quoted into a
        visibility query, and one that Temporal cannot read fails there as if Temporal were down."""
        if self.customer is not None:
            try:
                _CUSTOMER_ID.validate_python(self.customer)
            except ValidationError as exc:
                raise OrderInputError("; ".join(field_problems(exc, "customer"))) from None

    def query(self) -> str:
        """The Temporal visibility query of this filter."""
        terms = [f"WorkflowType = {_quote(ORDER_WORKFLOW)}"]
        if self.status:
            terms.append(f"{sa.ORDER_STATUS.name} = {_quote(self.status.value)}")
        if self.customer:
            terms.append(f"{sa.CUSTOMER_ID.name} = {_quote(self.customer)}")
        if self.channel:
            terms.append(f"{sa.ORDER_CHANNEL.name} = {_quote(self.channel.value)}")
        if self.overdue is not None:
            terms.append(f"{sa.DELIVERY_OVERDUE.name} = {str(self.overdue).lower()}")
        if self.needs_attention is not None:
            statuses = ", ".join(_quote(status.value) for status in sorted(ATTENTION_STATUSES))
            terms.append(
                f"({sa.NEEDS_ATTENTION.name} = true OR {sa.ORDER_STATUS.name} IN ({statuses}))"
                if self.needs_attention
                else f"{sa.NEEDS_ATTENTION.name} = false AND {sa.ORDER_STATUS.name} NOT IN ({statuses})"
            )
        if self.marked is not None:
            terms.append(f"{sa.NEEDS_ATTENTION.name} = {str(self.marked).lower()}")
        return " AND ".join(terms)


_CUSTOMER_ID: TypeAdapter[str] = TypeAdapter(Identifier)


class BadPageToken(ValueError):
    """A page token this system did not hand out (mangled, or from another query)."""

    def __init__(self) -> None:
        super().__init__("the page token is not one this system handed out: list again from the first page")


async def list_orders_page(
    client: Client, filters: OrderFilter, page_size: int = 50, page_token: str | None = None
) -> OrderPage:
    """One page of orders from Temporal visibility, newest placed first, running and closed alike
    (services/newest_first.py); `next_page_token` (URL-safe text, for every door: API, console,
    command line) is None on the last page. Raises BadPageToken."""
    query = filters.query()
    after = _open_page_token(query, page_token) if page_token else None
    executions, last = await newest_first_page(client, query, page_size, after)
    return OrderPage(
        orders=[_summary(execution) for execution in executions],
        next_page_token=_seal_page_token(query, last.encode()) if last else None,
    )


# The page token is the position of the page's last order with a digest of it and of the query it
# belongs to, so that only a token this system handed out, for this query, is ever read: a made-up one
# (`?page_token=true`) is refused at once, whatever it says.
_DIGEST_SIZE = 8


def _token_digest(query: str, raw: bytes) -> bytes:
    return hashlib.blake2b(query.encode() + b"\0" + raw, digest_size=_DIGEST_SIZE).digest()


def _seal_page_token(query: str, raw: bytes) -> str:
    return base64.urlsafe_b64encode(_token_digest(query, raw) + raw).decode()


def _open_page_token(query: str, token: str) -> Position:
    try:
        sealed = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadPageToken() from None
    digest, raw = sealed[:_DIGEST_SIZE], sealed[_DIGEST_SIZE:]
    if not raw or not hmac.compare_digest(digest, _token_digest(query, raw)):
        raise BadPageToken()
    try:
        return Position.decode(raw)
    except BadPosition:
        raise BadPageToken() from None


async def list_orders(client: Client, filters: OrderFilter | None = None) -> list[OrderSummary]:
    """Every order matching the filter (all pages), newest placed first."""
    query = (filters or OrderFilter()).query()
    return [_summary(execution) for execution in await newest_first(client, query)]


def _summary(execution: WorkflowExecution) -> OrderSummary:
    attrs = execution.typed_search_attributes
    status = attrs.get(sa.ORDER_STATUS) or ""
    return OrderSummary(
        order_id=order_id_of(execution.id),
        status=status,
        customer_id=attrs.get(sa.CUSTOMER_ID) or "",
        channel=attrs.get(sa.ORDER_CHANNEL) or "",
        total=None if (total := attrs.get(sa.ORDER_TOTAL)) is None else money_from_float(total),
        overdue=bool(attrs.get(sa.DELIVERY_OVERDUE)),
        needs_attention=bool(attrs.get(sa.NEEDS_ATTENTION)) or status in ATTENTION_STATUSES,
        started_at=execution.start_time,
        running=execution.status == WorkflowExecutionStatus.RUNNING,
    )


async def confirm_delivery(
    client: Client, order_id: str, shipment_id: str | None = None, by: str | None = None
) -> list[str]:
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
        OrderSignal.confirm_delivery, DeliveryConfirmation(shipment_id=shipment_id, by=by)
    )
    return in_transit


async def give_feedback(client: Client, order_id: str, feedback: FeedbackIn, by: str | None = None) -> None:
    view = await order_view(client, order_id)
    if not any(s.status == "delivered" for s in view.shipments):
        raise Refused(f"order {order_id} has not been delivered yet (status: {view.status.value})")
    await _running(client, order_id)
    await handle(client, order_id).signal(
        OrderSignal.submit_feedback, Feedback.model_validate({**feedback.model_dump(), "by": by})
    )


async def cancel_order(
    client: Client,
    order_id: str,
    reason: str,
    by: str | None = None,
    lines: Sequence[CancelLine] | None = None,
) -> OrderView:
    """Cancel with compensation; refused (Refused) once anything has shipped. With `lines`, only so many
    units of those SKUs (issue 26): refused, nothing moved, when one of them is packed or handed over,
    more than remains, or not on the order."""
    request = CancelRequest(reason=reason, by=by, lines=None if lines is None else list(lines))
    return await update_order(client, order_id, OrderUpdate.cancel, OrderView, request)


async def edit_order(
    client: Client,
    order_id: str,
    edit: EditIn,
    served: frozenset[str] = frozenset(),
    by: str | None = None,
) -> OrderView:
    """An order edit (issue 26): the lines (before release) and/or the shipping address (docs/orders.md,
    "Order edits"). Refused (Unprocessable) for a country outside `served` (OMS_SHIP_TO_COUNTRIES; empty:
    any), a SKU the catalog does not sell, an edit removing every line; refused (Refused) by the order
    for lines after release, an address when a warehouse refuses or a parcel was handed over, while it
    ends or while another edit is under way, or when the stock or the card says no. Nothing changes then."""
    address = edit.shipping_address
    if address is not None and served and address.country not in served:
        raise Unprocessable(
            f"we do not ship to {address.country}: the shop serves {', '.join(sorted(served))} "
            "(OMS_SHIP_TO_COUNTRIES)"
        )
    request = EditRequest(shipping_address=address, lines=edit.lines, by=by)
    return await update_order(client, order_id, OrderUpdate.edit, OrderView, request, refusals=_EDIT_REFUSALS)


async def release_order(client: Client, order_id: str, by: str | None = None) -> OrderView:
    """Release an order held for review."""
    return await update_order(client, order_id, OrderUpdate.release, OrderView, ReleaseRequest(by=by))


async def request_return(
    client: Client, order_id: str, request: ReturnIn, by: str | None = None
) -> ReturnView:
    message = ReturnRequest.model_validate({**request.model_dump(), "by": by})
    return await update_order(client, order_id, OrderUpdate.request_return, ReturnView, message)


async def customer_return(
    client: Client, order_id: str, request: CustomerReturnIn, auto_approve_limit: Decimal = Decimal("0")
) -> ReturnView:
    """The customer's return request (the tracking page): waits for support's approval, or is approved
    at once when its refund value is at most `auto_approve_limit` (0: never). The same lines and reason
    again answer the first request (also concurrently: its Temporal update id is the request's content).
    Refused (409) outside the return window, for a SKU not delivered or more units than remain."""
    message = CustomerReturnRequest.model_validate(
        {**request.model_dump(), "auto_approve_limit": auto_approve_limit}
    )
    content = json.dumps(
        [sorted(request.wanted().items()), request.reason.value], separators=(",", ":")
    ).encode()
    update_id = f"customer-return:{hashlib.sha256(content).hexdigest()[:32]}"
    try:
        return await update_order(
            client, order_id, OrderUpdate.customer_return, ReturnView, message, update_id=update_id
        )
    except Refused as exc:
        if str(exc) != f"order {order_id} is closed":
            raise
        raise Refused(f"the return window of order {order_id} has closed") from None


async def decide_return(
    client: Client,
    order_id: str,
    rma: str,
    approve: bool,
    decision: ReturnDecisionIn | None = None,
    by: str | None = None,
) -> ReturnView:
    """Support approves (the RMA and instructions go to the customer) or declines a customer's request.
    The same decision again answers it; the other one is refused once it was decided."""
    message = ReturnDecision(rma=rma, approve=approve, note=decision.note if decision else None, by=by)
    return await update_order(client, order_id, OrderUpdate.decide_return, ReturnView, message)


async def goodwill_refund(
    client: Client, order_id: str, refund: GoodwillIn, key: str | None = None, by: str | None = None
) -> GoodwillRefundView:
    """Refund part of what was captured as a gesture, with a reason code. `key` is the request's
    idempotency key: the same key again refunds once and answers with that refund (also when the
    first answer was lost). Refused (Refused: 409) when the order is in no state for it, among them a
    closed order; Unprocessable (422) when the amount is above what is refundable or the currency wrong."""
    key = key or uuid.uuid4().hex
    message = GoodwillRequest.model_validate({**refund.model_dump(), "by": by, "key": key})
    try:
        return await update_order(
            client,
            order_id,
            OrderUpdate.goodwill_refund,
            GoodwillRefundView,
            message,
            update_id=f"goodwill:{key}",
            refusals=_GOODWILL_REFUSALS,
        )
    except Refused as exc:
        if str(exc) != f"order {order_id} is closed":
            raise
        raise Refused(
            f"order {order_id} is closed: its workflow has ended, so it takes no goodwill refund; orders "
            "take them until their return window closes (docs/orders.md)"
        ) from None


async def receive_return(client: Client, order_id: str, receipt: ReturnReceipt) -> None:
    """The warehouse's receipt of a returned parcel."""
    view = await order_view(client, order_id)
    ret = next((r for r in view.returns if r.rma == receipt.rma), None)
    if ret is None:
        raise Refused(f"order {order_id} has no return {receipt.rma}")
    if ret.status == "expired":
        raise Refused(f"return {receipt.rma} expired unreceived; it can no longer be booked in")
    await _running(client, order_id)
    await handle(client, order_id).signal(OrderSignal.return_received, receipt)


async def add_note(client: Client, order_id: str, text: str, by: str | None = None) -> None:
    note = SupportNote(text=text, by=by)
    await _running(client, order_id)
    await handle(client, order_id).signal(OrderSignal.add_note, note)


async def _is_running(client: Client, order_id: str) -> bool:
    with _known(order_id):
        description = await handle(client, order_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING


async def _running(client: Client, order_id: str) -> None:
    if not await _is_running(client, order_id):
        raise Refused(f"order {order_id} is closed")


async def update_order(
    client: Client,
    order_id: str,
    update: str,
    result_type: type[T],
    *args: object,
    update_id: str | None = None,
    refusals: Mapping[str, type[Refused]] | None = None,
) -> T:
    """Send an update to a running order; a validator's refusal becomes Refused with the workflow's own
    reason, or the Refused subclass `refusals` names for the failure's `type`.

    `update_id`: the same id again (a retry whose first attempt got through but whose answer was lost)
    gets the first attempt's answer instead of running the update a second time."""
    await _running(client, order_id)
    try:
        return await handle(client, order_id).execute_update(
            update, *args, id=update_id, result_type=result_type
        )
    except WorkflowUpdateFailedError as exc:
        refused = (refusals or {}).get(getattr(exc.cause, "type", None) or "", Refused)
        raise refused(getattr(exc.cause, "message", None) or str(exc.cause)) from None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
