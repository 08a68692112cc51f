"""Orders: placing them (order sources), reading them, and what support staff do with them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, ValidationError

from api.auth import SourceOrSupport, Support, SupportOrWarehouse
from api.errors import KEYED_ROUTE_ERRORS, ApiError, ErrorBody, Responses
from api.idempotency import IDEMPOTENT
from api.routes import JSON_BODY, StrictJsonRoute
from api.state import AppState, app_state
from domain.api_keys import Role
from domain.outbox import MessageState
from models.orders import (
    CancelIn,
    Channel,
    EditIn,
    FeedbackIn,
    GoodwillIn,
    GoodwillRefundView,
    NoteIn,
    OrderInput,
    OrderStatus,
    OrderSummary,
    OrderView,
    ReceiptIn,
    ResendIn,
    ReturnDecisionIn,
    ReturnIn,
    ReturnReceipt,
    ReturnView,
)
from services import messages, orders

router = APIRouter(tags=["orders"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]

_errors = KEYED_ROUTE_ERRORS
_order_errors: Responses = _errors | {404: {"model": ErrorBody, "description": "unknown order"}}
_refusable: Responses = _order_errors | {409: {"model": ErrorBody, "description": "refused, with the reason"}}


class PlacedOrder(BaseModel):
    order_id: str
    url: str
    created: bool  # False: this order id was placed before with the same content; nothing new started
    status: OrderStatus | None = None  # with ?wait=true: how the order settled
    reason: str | None = None  # why, when it settled other than confirmed
    order: OrderView | None = None  # with ?wait=true: its live view (else GET the url)


class OrderList(BaseModel):
    orders: list[OrderSummary]
    next_page_token: str | None = None  # pass as ?page_token= for the next page; null on the last page


class Accepted(BaseModel):
    order_id: str
    accepted: str  # what was passed on to the order


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JSON_BODY],
    responses=_errors
    | {
        200: {"model": PlacedOrder, "description": "this order id was placed before with the same content"},
        409: {"model": ErrorBody, "description": "this order id was placed before with a different content"},
        422: {"model": ErrorBody, "description": "invalid fields, each named"},
    },
    summary="Place an order",
)
async def place_order(
    order: OrderInput,
    who: SourceOrSupport,
    state: State,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(description="the order id, when the body has none", max_length=64)
    ] = None,
    wait: Annotated[bool, Query(description="answer once the order has settled")] = False,
) -> PlacedOrder:
    """Start the order's workflow. The order id is the idempotency key: placing it again starts
    nothing. With `?wait=true` the answer comes once the order is confirmed, rejected, on hold or
    backordered (no polling: the workflow answers an update when it gets there)."""
    order = _with_idempotency_key(order, idempotency_key)
    timeout = state.settings.api_wait_timeout.total_seconds()
    placement = await orders.place_order(
        state.client, state.settings, order, by=who.name, wait=timeout if wait else None
    )
    if not placement.same_order:
        raise ApiError(
            409,
            "conflict",
            f"order {placement.order_id} was placed before with a different content; "
            "an order id can be used once (use a new one for a new order)",
        )
    url = f"/orders/{placement.order_id}"
    response.headers["Location"] = url
    placed = PlacedOrder(order_id=placement.order_id, url=url, created=placement.created)
    if not placement.created:
        response.status_code = status.HTTP_200_OK
    if wait:
        try:
            view = placement.settled or await orders.wait_until_settled(
                state.client, placement.order_id, timeout
            )
        except TimeoutError:  # the order exists and goes on; the caller follows it at its url
            status_now = await orders.order_status(state.client, placement.order_id)
            note = f"not settled within {timeout:.0f} s; follow it at {url}"
            return placed.model_copy(update={"status": status_now, "reason": note})
        outcome, reason = orders.settled_outcome(view)
        return placed.model_copy(update={"status": outcome, "reason": reason or None, "order": view})
    if not placement.created:  # its status as Temporal knows it: no worker needs to answer
        status_now = await orders.order_status(state.client, placement.order_id)
        return placed.model_copy(update={"status": status_now})
    return placed


def _with_idempotency_key(order: OrderInput, key: str | None) -> OrderInput:
    if key is None or key == order.order_id:
        return order
    if order.order_id is not None:
        raise ApiError(
            422,
            "invalid_request",
            "the Idempotency-Key header and the body's order_id differ",
            [f"header.idempotency-key: {key!r} is not the body's order_id {order.order_id!r}"],
        )
    try:
        return OrderInput.model_validate({**order.model_dump(), "order_id": key})
    except ValidationError as exc:
        problems = [f"header.idempotency-key: {e['msg']}" for e in exc.errors()]
        raise ApiError(
            422, "invalid_request", "the Idempotency-Key header is not a valid order id", problems
        ) from None


@router.get("/orders/{order_id}", responses=_order_errors, summary="An order's live view")
async def get_order(order_id: str, who: SourceOrSupport, state: State) -> OrderView:
    """The same live view as `starter.py status ID --json`."""
    return await orders.order_view(state.client, order_id)


@router.get("/orders", responses=_errors | {422: {"model": ErrorBody}}, summary="Find orders")
async def list_orders(
    who: SourceOrSupport,
    state: State,
    status_: Annotated[OrderStatus | None, Query(alias="status")] = None,
    customer: Annotated[str | None, Query(max_length=64)] = None,
    channel: Channel | None = None,
    overdue: bool | None = None,
    needs_attention: bool | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> OrderList:
    """Orders from Temporal visibility, newest first, a page at a time."""
    filters = orders.OrderFilter(
        status=status_, customer=customer, channel=channel, overdue=overdue, needs_attention=needs_attention
    )
    try:
        page = await orders.list_orders_page(state.client, filters, page_size, page_token)
    except orders.BadPageToken:
        raise ApiError(422, "invalid_request", "page_token is not a token this API handed out") from None
    return OrderList(orders=page.orders, next_page_token=page.next_page_token)


# ---- support ----


@router.post(
    "/orders/{order_id}/cancel", dependencies=[JSON_BODY, IDEMPOTENT], responses=_refusable, summary="Cancel"
)
async def cancel(order_id: str, body: CancelIn, who: Support, state: State) -> OrderView:
    """Cancel with compensation (stock released, picked units restocked, carrier bookings cancelled,
    authorization voided, customer told); refused once a parcel is with the carrier. With `lines`, only
    those units (issue 26): the rest of the order goes on, its shipments' amounts reduced by the
    cancelled units' share; refused (409, nothing moved) for a unit packed or handed over, more than
    remains, or a SKU not on the order."""
    return await orders.cancel_order(state.client, order_id, body.reason, by=who.name, lines=body.lines)


@router.post(
    "/orders/{order_id}/edits",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable
    | {
        422: {
            "model": ErrorBody,
            "description": "invalid fields, a country not served, or line edits: nothing changed",
        }
    },
    summary="Edit an order (its address until the handover)",
)
async def edit(order_id: str, body: EditIn, who: Support, state: State) -> OrderView:
    """Change the lines (before release) and/or the shipping address of a confirmed order: in its release
    window, or the address after release until the handover if every warehouse working on it accepts (a
    labelled parcel is relabelled). Lines are re-reserved and the card's hold grown or shrunk to the new
    total; the customer is told. A country outside `OMS_SHIP_TO_COUNTRIES`, an unknown SKU, every line
    removed are refused with 422; a warehouse's refusal (its reason), a parcel handed over, lines after
    release, an order ending or with another edit under way, no stock, a declined hold with 409. Nothing
    changes on a refusal."""
    return await orders.edit_order(
        state.client, order_id, body, served=state.settings.served_countries, by=who.name
    )


@router.post(
    "/orders/{order_id}/release",
    dependencies=[IDEMPOTENT],
    responses=_refusable,
    summary="Release a held order",
)
async def release(order_id: str, who: Support, state: State) -> OrderView:
    return await orders.release_order(state.client, order_id, by=who.name)


@router.post(
    "/orders/{order_id}/notes",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Add a support note",
)
async def add_note(order_id: str, body: NoteIn, who: Support, state: State) -> Accepted:
    await orders.add_note(state.client, order_id, body.text, by=who.name)
    return Accepted(order_id=order_id, accepted="note")


@router.post(
    "/orders/{order_id}/returns",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Authorize a return (RMA)",
)
async def request_return(order_id: str, body: ReturnIn, who: Support, state: State) -> ReturnView:
    """Validated against what was delivered and not yet returned, and the return window."""
    return await orders.request_return(state.client, order_id, body, by=who.name)


@router.post(
    "/orders/{order_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JSON_BODY],
    responses=_refusable
    | {
        403: {"model": ErrorBody, "description": "above OMS_GOODWILL_LIMIT: only an admin may"},
        422: {"model": ErrorBody, "description": "invalid fields, or more than is refundable: nothing moved"},
    },
    summary="Refund an amount as goodwill",
)
async def goodwill_refund(
    order_id: str,
    body: GoodwillIn,
    who: Support,
    state: State,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="the same key again refunds once and answers with that refund",
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        ),
    ] = None,
) -> GoodwillRefundView:
    """Refund part of what was captured (at most captured minus refunded) with a reason code, through
    the payment gateway; the order's story gets `goodwill_refund_issued` and the customer a message.
    Above `OMS_GOODWILL_LIMIT` (in the order's currency) only an admin may. A closed order (its return
    window over) is refused with 409."""
    limit = state.settings.goodwill_limit
    if body.amount > limit and who.role != Role.admin:
        raise ApiError(
            403,
            "forbidden",
            f"a goodwill refund above {limit:.2f} (OMS_GOODWILL_LIMIT, in the order's currency) needs an "
            f"admin; {body.amount:.2f} was asked",
        )
    return await orders.goodwill_refund(state.client, order_id, body, key=idempotency_key, by=who.name)


@router.post(
    "/orders/{order_id}/returns/{rma}/approve",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Approve a return the customer requested",
)
async def approve_return(
    order_id: str, rma: str, who: Support, state: State, body: ReturnDecisionIn | None = None
) -> ReturnView:
    """The RMA and return instructions go to the customer; the return then takes its usual path
    (receipt, restock or write-off, refund). Approving it again answers it; a declined one is refused."""
    return await orders.decide_return(state.client, order_id, rma, True, body, by=who.name)


@router.post(
    "/orders/{order_id}/returns/{rma}/decline",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Decline a return the customer requested",
)
async def decline_return(
    order_id: str, rma: str, who: Support, state: State, body: ReturnDecisionIn | None = None
) -> ReturnView:
    """The customer is told, with `note` as the reason when given; the units may be requested again."""
    return await orders.decide_return(state.client, order_id, rma, False, body, by=who.name)


@router.get("/orders/{order_id}/messages", responses=_order_errors, summary="The order's messages")
async def order_messages(order_id: str, who: Support, state: State) -> list[MessageState]:
    """Every message written for the order, oldest first, and where its delivery stands: `sent`,
    `waiting` (with the tries that failed for a passing reason) or `failed` (given up, with the mail
    server's answer)."""
    return await messages.order_messages(state.reads, order_id)


@router.post(
    "/orders/{order_id}/messages/{message_id}/resend",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Send a message given up again",
)
async def resend_message(
    order_id: str, message_id: int, who: Support, state: State, body: ResendIn | None = None
) -> MessageState:
    """A message the mail server gave up on (`failed`) goes out again, to `to` when given (a corrected
    address): it waits its turn like a new one. 409: it was sent, or is still being tried."""
    to = body.to if body is not None else None
    return await messages.send_again(state.sessions, order_id, message_id, who.name, to)


@router.post(
    "/orders/{order_id}/returns/{rma}/receipt",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="Record a returned parcel's receipt",
)
async def receive_return(
    order_id: str, rma: str, body: ReceiptIn, who: SupportOrWarehouse, state: State
) -> Accepted:
    """The warehouse received the parcel: good units are restocked, damaged ones written off, the
    refund (or exchange) follows; a repeated receipt changes nothing."""
    receipt = ReturnReceipt(rma=rma, condition=body.condition, by=who.name)
    await orders.receive_return(state.client, order_id, receipt)
    return Accepted(order_id=order_id, accepted=f"receipt of {rma} ({body.condition.value})")


@router.post(
    "/orders/{order_id}/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_refusable,
    summary="The customer's feedback",
)
async def feedback(order_id: str, body: FeedbackIn, who: SourceOrSupport, state: State) -> Accepted:
    await orders.give_feedback(state.client, order_id, body, by=who.name)
    return Accepted(order_id=order_id, accepted="feedback")
