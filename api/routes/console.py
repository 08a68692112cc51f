"""The support console: server-rendered pages (Jinja2). Signing in with a support or admin API key,
which starts the session the Temporal Web UI's codec calls ride on, and how to point the Web UI at the
codec server; finding orders (Temporal visibility), an order's page, and support's actions on it through
the same client-layer functions as the HTTP API and the CLI. Its pages extend `api/templates/base.html`.

Forms carry the session's CSRF token; pages are never cached, framed or given a Referer. The only script
is the order page's own inline one (allowed by a per-response CSP nonce): every 2 s it fetches the
page's live part (`/console/orders/{id}/live`) and swaps it in, so the page follows the order.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api import console_session
from api.console_session import CONSOLE_ROLES
from api.routes.tracking import tracking_links
from api.state import AppState, app_state
from db import SessionFactory
from domain.api_keys import Principal, Role, authenticate
from domain.customers import UnknownCustomer, customer_profile, customers_by_email
from domain.outbox import Delivery, MessageState, order_messages
from models.events import OrderEventType
from models.fulfilment import ResolveRequest
from models.money import money_text
from models.orders import (
    CancelIn,
    Channel,
    EditIn,
    GoodwillIn,
    GoodwillReason,
    NoteIn,
    OrderStatus,
    OrderView,
    ReceiptIn,
    ResendIn,
    ReturnDecisionIn,
    ReturnIn,
    ReturnReceipt,
    ShipmentStatus,
)
from models.workflow_names import order_workflow_id
from services import fulfilment, messages, orders

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
templates.env.filters["money"] = money_text  # amounts as the API writes them: "89.90"
State = Annotated[AppState, Depends(app_state)]

HOME, SIGN_IN = "/console", console_session.SIGN_IN
NO_CSRF = "this form has expired or did not come from this page: reload it and try again"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none';"
        " base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/sign-in")
async def sign_in_form(request: Request, state: State) -> Response:
    if await console_session.signed_in(request, state) is not None:
        return see_other(HOME)
    return _sign_in_page(request, state)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    state: State,
    api_key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    if not console_session.csrf_matches(request, csrf):
        return _sign_in_page(request, state, NO_CSRF, 403)
    who = await run_in_threadpool(authenticate, state.reads, api_key.strip())
    if who is None:
        return _sign_in_page(request, state, "unknown or revoked API key", 401)
    if who.role not in CONSOLE_ROLES:
        request.state.principal = who  # the audit line names who tried
        message = f"a {who.role.value} key cannot use the console: sign in with a support or admin key"
        return _sign_in_page(request, state, message, 403)
    await console_session.start(request, state, who)
    return see_other(HOME)


@router.get("")
async def home(request: Request, state: State) -> Response:
    who = await console_session.viewer(request, state)
    return _home_page(request, state, who)


@router.post("/sign-out")
async def sign_out(request: Request, state: State, csrf: Annotated[str, Form()] = "") -> Response:
    who = await console_session.signed_in(request, state)
    if who is None:  # signed out already (or the session has ended): nothing to do
        return see_other(SIGN_IN)
    if not console_session.csrf_matches(request, csrf):
        return _home_page(request, state, who, NO_CSRF, 403)
    await console_session.end(request, state)  # for every copy of the cookie, not only this one
    return see_other(SIGN_IN)


def _sign_in_page(request: Request, state: AppState, message: str = "", status: int = 200) -> Response:
    ttl = _in_words(state.settings.session_ttl)
    return render_page(request, "sign_in.html", {"message": message, "session_ttl": ttl}, status)


def _home_page(
    request: Request, state: AppState, who: Principal, message: str = "", status: int = 200
) -> Response:
    origins = state.settings.temporal_ui_origins
    context = {
        "who": who,
        "message": message,
        "temporal_ui": origins[0] if origins else None,
        "ui_origins": origins,
        "codec_url": f"{str(request.base_url).rstrip('/')}/codec",
        "dev_mailbox": state.settings.dev_mailbox is not None,
    }
    return render_page(request, "console.html", context, status)


def render_page(request: Request, template: str, context: dict[str, Any], status: int) -> Response:
    context = {"csrf": console_session.csrf_token(request), **context}
    return templates.TemplateResponse(request, template, context, status_code=status, headers=PAGE_HEADERS)


def see_other(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def _in_words(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


# ---- orders: search, the order page, its live part, and support's actions ----

PAGE_SIZE = 25
LIVE_EVERY_MS = 2000
_TERMINAL = {OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.completed}
_CANCELLABLE = {
    OrderStatus.received,
    OrderStatus.backordered,
    OrderStatus.on_hold,
    OrderStatus.confirmed,
    OrderStatus.picking,
}
_NOT_YET_PACKED = {
    ShipmentStatus.allocated,
    ShipmentStatus.backordered,
    ShipmentStatus.released,
    ShipmentStatus.picking,
    ShipmentStatus.picked,
    ShipmentStatus.cancelled,
}


@router.get("/orders")
async def orders_page(
    request: Request,
    state: State,
    order_id: str = "",
    customer: str = "",
    email: str = "",
    status: str = "",
    channel: str = "",
    overdue: str = "",
    needs_attention: str = "",
    page_token: str = "",
) -> Response:
    who = await console_session.viewer(request, state)
    if order_id.strip():
        return see_other(f"/console/orders/{quote(order_id.strip(), safe='')}")
    if email.strip():
        return await _email_search(request, state, who, email.strip())
    form = {
        "customer": customer.strip(),
        "status": status,
        "channel": channel,
        "overdue": overdue,
        "needs_attention": needs_attention,
    }
    context: dict[str, Any] = {
        "who": who,
        "form": form,
        "statuses": [s.value for s in OrderStatus],
        "channels": [c.value for c in Channel],
        "orders": [],
        "next_url": None,
    }
    problems = []
    if len(form["customer"]) > 64:
        problems.append("customer id: at most 64 characters")
    if status and status not in OrderStatus.__members__:
        problems.append(f"status: unknown status {status!r}")
    if channel and channel not in Channel.__members__:
        problems.append(f"channel: unknown channel {channel!r}")
    flags = {"": None, "yes": True, "no": False}
    if overdue not in flags or needs_attention not in flags:
        problems.append("overdue / needs attention: yes, no or any")
    if problems:
        return render_page(request, "console/orders.html", {**context, "message": "; ".join(problems)}, 422)
    try:
        filters = orders.OrderFilter(
            status=OrderStatus(status) if status else None,
            customer=form["customer"] or None,
            channel=Channel(channel) if channel else None,
            overdue=flags[overdue],
            needs_attention=flags[needs_attention],
        )
    except orders.OrderInputError as exc:
        return render_page(request, "console/orders.html", {**context, "message": str(exc)}, 422)
    try:
        page = await orders.list_orders_page(state.client, filters, PAGE_SIZE, page_token or None)
    except orders.BadPageToken:
        message = "this page link is not one the console made: search again"
        return render_page(request, "console/orders.html", {**context, "message": message}, 422)
    context["orders"] = page.orders
    if page.next_page_token:
        more = {k: v for k, v in form.items() if v}
        more["page_token"] = page.next_page_token
        context["next_url"] = f"/console/orders?{urlencode(more)}"
    return render_page(request, "console/orders.html", context, 200)


@router.get("/orders/{order_id}")
async def order_page(request: Request, state: State, order_id: str) -> Response:
    who = await console_session.viewer(request, state)
    return await _order_page(request, state, who, order_id)


@router.get("/orders/{order_id}/live")
async def order_live(request: Request, state: State, order_id: str) -> Response:
    """The part of the order page that changes as the order moves: the page's script swaps it in."""
    who = await console_session.signed_in(request, state)
    if who is None:
        return Response("signed out", status_code=401, headers={"Cache-Control": "no-store"})
    try:
        view = await orders.order_view(state.client, order_id)
    except orders.UnknownOrder:
        return Response("unknown order", status_code=404, headers={"Cache-Control": "no-store"})
    except orders.Refused as exc:
        return Response(str(exc), status_code=409, headers={"Cache-Control": "no-store"})
    messages = await run_in_threadpool(_messages, state.reads, order_id)
    csrf = console_session.csrf_token(request)
    context = {"csrf": csrf, **_live_context(view, messages, state, who, csrf)}
    return templates.TemplateResponse(request, "console/_live.html", context, headers=PAGE_HEADERS)


@router.post("/orders/{order_id}/cancel")
async def cancel_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    line_sku: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies the default)
    line_quantity: Annotated[list[str], Form()] = [],  # noqa: B006
) -> Response:
    async def act(who: Principal) -> None:
        # a quantity per order line; every one left empty (or 0): the whole order
        lines = [
            line for line in _form_lines(line_sku, line_quantity, blank_is_none=True) if line["quantity"]
        ]
        body = CancelIn.model_validate({"reason": reason, "lines": lines or None})
        await orders.cancel_order(state.client, order_id, body.reason, by=who.name, lines=body.lines)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/edits")
async def edit_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    line1: Annotated[str, Form()] = "",
    line2: Annotated[str, Form()] = "",
    city: Annotated[str, Form()] = "",
    postal_code: Annotated[str, Form()] = "",
    country: Annotated[str, Form()] = "",
) -> Response:
    """The console's order edit: a new shipping address, before release or, if the warehouse accepts,
    until the handover (issue 26)."""

    async def act(who: Principal) -> None:
        address = {
            "name": name,
            "line1": line1,
            "line2": line2 or None,
            "city": city,
            "postal_code": postal_code,
            "country": country.strip().upper(),
        }
        edit = EditIn.model_validate({"shipping_address": address})
        await orders.edit_order(
            state.client, order_id, edit, served=state.settings.served_countries, by=who.name
        )

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/line-edits")
async def line_edit_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    line_sku: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies the default)
    line_quantity: Annotated[list[str], Form()] = [],  # noqa: B006
) -> Response:
    """The console's line edit (issue 26): the quantity each line should have (0 removes it), and a new
    SKU in the last row; in the release window only."""

    async def act(who: Principal) -> None:
        lines = _form_lines(line_sku, line_quantity, blank_is_none=False)
        if not lines:
            raise _Invalid("give the quantity each line should have")
        edit = EditIn.model_validate({"lines": lines})
        await orders.edit_order(state.client, order_id, edit, by=who.name)

    return await _act(request, state, order_id, csrf, act)


def _form_lines(skus: list[str], quantities: list[str], *, blank_is_none: bool) -> list[dict[str, str | int]]:
    """The rows of a form's lines, a SKU and a quantity each; a row blank in both is skipped, and so is
    a blank quantity when `blank_is_none` (else it is refused, like one that is not a whole number)."""
    lines: list[dict[str, str | int]] = []
    for sku, quantity in zip(skus, quantities, strict=False):
        sku, quantity = sku.strip(), quantity.strip()
        if not quantity and (blank_is_none or not sku):
            continue
        try:
            count = int(quantity)
        except ValueError:
            raise _Invalid(
                f"quantity of {sku or 'the new SKU'}: {quantity!r} is not a whole number"
            ) from None
        lines.append({"sku": sku, "quantity": count})
    return lines


@router.post("/orders/{order_id}/release")
async def release_action(
    request: Request, state: State, order_id: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    async def act(who: Principal) -> None:
        await orders.release_order(state.client, order_id, by=who.name)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/messages/{message_id}/resend")
async def resend_action(
    request: Request,
    state: State,
    order_id: str,
    message_id: int,
    csrf: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
) -> Response:
    """Send a message the mail server gave up on again, to the address typed in if any."""

    async def act(who: Principal) -> None:
        body = ResendIn.model_validate({"to": to.strip() or None})
        try:
            await messages.send_again(state.sessions, order_id, message_id, who.name, body.to)
        except messages.UnknownMessage as exc:
            raise _Invalid(str(exc)) from None

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/notes")
async def note_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    async def act(who: Principal) -> None:
        body = NoteIn(text=text)
        await orders.add_note(state.client, order_id, body.text, by=who.name)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/returns")
async def return_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    sku: Annotated[str, Form()] = "",
    quantity: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    exchange_sku: Annotated[str, Form()] = "",
) -> Response:
    async def act(who: Principal) -> None:
        try:
            count = int(quantity.strip())
        except ValueError:
            raise _Invalid(f"quantity: {quantity!r} is not a whole number") from None
        body = ReturnIn(sku=sku, quantity=count, reason=reason, exchange_sku=exchange_sku.strip() or None)
        await orders.request_return(state.client, order_id, body, by=who.name)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/returns/{rma}/decision")
async def return_decision_action(
    request: Request,
    state: State,
    order_id: str,
    rma: str,
    csrf: Annotated[str, Form()] = "",
    decision: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Approve or decline a return the customer requested (the tracking page)."""

    async def act(who: Principal) -> None:
        if decision not in ("approve", "decline"):
            raise _Invalid(f"decision: {decision!r} is neither approve nor decline")
        body = ReturnDecisionIn(note=note.strip() or None)
        await orders.decide_return(state.client, order_id, rma, decision == "approve", body, by=who.name)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/returns/{rma}/receipt")
async def receipt_action(
    request: Request,
    state: State,
    order_id: str,
    rma: str,
    csrf: Annotated[str, Form()] = "",
    condition: Annotated[str, Form()] = "",
) -> Response:
    async def act(who: Principal) -> None:
        body = ReceiptIn.model_validate({"condition": condition})
        receipt = ReturnReceipt(rma=rma, condition=body.condition, by=who.name)
        await orders.receive_return(state.client, order_id, receipt)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/refunds")
async def goodwill_action(
    request: Request,
    state: State,
    order_id: str,
    csrf: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    key: Annotated[str, Form()] = "",
) -> Response:
    async def act(who: Principal) -> None:
        body = GoodwillIn.model_validate(
            {"amount": amount.strip(), "reason": reason, "note": note.strip() or None}
        )
        limit = state.settings.goodwill_limit
        if body.amount > limit and who.role != Role.admin:
            raise _Forbidden(
                f"a goodwill refund above {limit:.2f} (OMS_GOODWILL_LIMIT, in the order's currency) needs an "
                f"admin; {body.amount:.2f} was asked"
            )
        await orders.goodwill_refund(state.client, order_id, body, key=key.strip() or None, by=who.name)

    return await _act(request, state, order_id, csrf, act)


@router.post("/orders/{order_id}/shipments/{shipment_id}/resolve")
async def resolve_action(
    request: Request,
    state: State,
    order_id: str,
    shipment_id: str,
    csrf: Annotated[str, Form()] = "",
    resolution: Annotated[str, Form()] = "",
) -> Response:
    async def act(who: Principal) -> None:
        body = ResolveRequest.model_validate(
            {"shipment_id": shipment_id, "resolution": resolution, "by": who.name}
        )
        await fulfilment.resolve_shipment(state.client, order_id, body)

    return await _act(request, state, order_id, csrf, act)


class _Invalid(ValueError):
    """A form field the console itself refuses (before any model sees it)."""


class _Forbidden(PermissionError):
    """The signed-in role may not do this (a goodwill refund above the limit for support)."""


async def _act(
    request: Request,
    state: AppState,
    order_id: str,
    csrf: str,
    act: Callable[[Principal], Awaitable[None]],
) -> Response:
    """Check the session and its CSRF token, do the action, and go back to the order page (303); a
    refusal shows the order page again with the reason, and nothing was done."""
    who = await console_session.viewer(request, state)
    if not console_session.csrf_matches(request, csrf):
        return await _order_page(request, state, who, order_id, NO_CSRF, 403)
    try:
        await act(who)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        return await _order_page(request, state, who, order_id, f"Not done: {problems}", 422)
    except _Invalid as exc:
        return await _order_page(request, state, who, order_id, f"Not done: {exc}", 422)
    except _Forbidden as exc:
        return await _order_page(request, state, who, order_id, f"Not allowed: {exc}", 403)
    except orders.Unprocessable as exc:
        return await _order_page(request, state, who, order_id, f"Not done: {exc}", 422)
    except orders.UnknownOrder:
        return await _order_page(request, state, who, order_id)
    except orders.Refused as exc:
        return await _order_page(request, state, who, order_id, f"Refused: {exc}", 409)
    return see_other(f"/console/orders/{quote(order_id, safe='')}")


async def _order_page(
    request: Request,
    state: AppState,
    who: Principal,
    order_id: str,
    message: str = "",
    status: int = 200,
) -> Response:
    try:
        view, placed, messages = await asyncio.gather(
            orders.order_view(state.client, order_id),
            orders.placed_order(state.client, order_id),
            run_in_threadpool(_messages, state.reads, order_id),
        )
    except orders.UnknownOrder:
        context = {"who": who, "order_id": order_id, "message": f"unknown order {order_id}"}
        return render_page(request, "console/unknown.html", context, 404)
    except orders.Refused as exc:
        context = {"who": who, "order_id": order_id, "message": str(exc)}
        return render_page(request, "console/unknown.html", context, 409)
    origins = state.settings.temporal_ui_origins
    web_ui = (
        f"{origins[0].rstrip('/')}/namespaces/{quote(state.settings.temporal_namespace, safe='')}"
        f"/workflows/{quote(order_workflow_id(order_id), safe='')}"
        if origins
        else None
    )
    nonce = secrets.token_urlsafe(16)
    context = {
        "who": who,
        "message": message,
        "placed": placed,
        "web_ui": web_ui,
        "tracking_url": (await tracking_links(request, state)).url(order_id),
        "nonce": nonce,
        "live_url": f"/console/orders/{quote(order_id, safe='')}/live",
        "live_every_ms": LIVE_EVERY_MS,
    }
    headers = {
        **PAGE_HEADERS,
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self';"
            " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }
    csrf = console_session.csrf_token(request)
    context = {"csrf": csrf, **context, **_live_context(view, messages, state, who, csrf)}
    return templates.TemplateResponse(
        request, "console/order.html", context, status_code=status, headers=headers
    )


def _messages(sessions: SessionFactory, order_id: str) -> list[MessageState]:
    with sessions() as session:
        return order_messages(session, order_id)


@dataclass(frozen=True)
class StoryLine:
    at: datetime
    type: str
    detail: str


def _story(view: OrderView, messages: list[MessageState]) -> list[StoryLine]:
    """The order's events, and the messages the mail server refused for good (kept on the outbox
    row, not as events: an event's number is the workflow's), in time order."""
    lines = [StoryLine(e.at, e.type, e.detail) for e in view.events]
    lines += [
        StoryLine(m.at, OrderEventType.notification_failed, m.failure_text)
        for m in messages
        if m.delivery == Delivery.failed
    ]
    return sorted(lines, key=lambda line: line.at)  # stable: events keep their order


def _live_context(
    view: OrderView, messages: list[MessageState], state: AppState, who: Principal, csrf: str
) -> dict[str, Any]:
    """What the live part of the order page shows, and which actions the order's state allows."""
    now = datetime.now(UTC)
    refundable = view.payment.captured - view.payment.refunded
    # the goodwill form's idempotency key: the same for a form submitted twice (one refund), a new one
    # once a refund is done (the count moves) or for another session; stable, so the live part stays put
    done = len(view.goodwill_refunds)
    goodwill_key = f"console-{done}-" + hashlib.sha256(f"{csrf}:{view.order_id}".encode()).hexdigest()[:16]
    shipments_open = all(s.status in _NOT_YET_PACKED for s in view.shipments)
    returnable = (
        any(s.status == ShipmentStatus.delivered for s in view.shipments)
        and view.return_window_ends is not None
        and view.return_window_ends > now
    )
    delivered_skus = sorted({line.sku for s in view.shipments if s.status == "delivered" for line in s.lines})
    return {
        "view": view,
        "order_url": f"/console/orders/{quote(view.order_id, safe='')}",
        "notes": [e for e in view.events if e.type == OrderEventType.support_note],
        "story": _story(view, messages),
        "messages": messages,
        "can_cancel": view.status in _CANCELLABLE and shipments_open,
        "can_release": view.status == OrderStatus.on_hold,
        # an edit (the shipping address) in the release window, or with the warehouse until the handover,
        # if the warehouse accepts (issue 26; the order says why when it refuses)
        "can_edit": not any(s.shipped_at for s in view.shipments)
        and (
            view.status in (OrderStatus.picking, OrderStatus.packed)
            or (
                view.status == OrderStatus.confirmed
                and view.releases_at is not None
                and view.releases_at > now
                and all(s.status == ShipmentStatus.allocated for s in view.shipments)
            )
        ),
        # the lines: in the release window only (the warehouse has not started on them)
        "can_edit_lines": view.status == OrderStatus.confirmed
        and view.releases_at is not None
        and view.releases_at > now
        and all(s.status in (ShipmentStatus.allocated, ShipmentStatus.cancelled) for s in view.shipments),
        "units": view.units(),
        "can_note": view.status not in _TERMINAL,
        "can_return": returnable,
        "delivered_skus": delivered_skus,
        "waiting_release": view.releases_at is not None and view.releases_at > now,
        "can_goodwill": view.status not in _TERMINAL and refundable > 0,
        "refundable": refundable,
        "goodwill_reasons": [r.value for r in GoodwillReason],
        "goodwill_limit": state.settings.goodwill_limit,
        "goodwill_unlimited": who.role == Role.admin,
        "goodwill_key": goodwill_key,
    }


# ---- customers: the CRM view, and finding a customer by e-mail ----

MAX_EMAIL = 320


async def _email_search(request: Request, state: AppState, who: Principal, email: str) -> Response:
    """The customers with that e-mail (exact, case-insensitive): one goes to their page, several are
    listed with links to theirs."""
    context: dict[str, Any] = {
        "who": who,
        "form": {
            "customer": "",
            "status": "",
            "channel": "",
            "overdue": "",
            "needs_attention": "",
            "email": email,
        },
        "statuses": [s.value for s in OrderStatus],
        "channels": [c.value for c in Channel],
        "orders": [],
        "next_url": None,
    }
    if len(email) > MAX_EMAIL:
        message = f"e-mail: at most {MAX_EMAIL} characters"
        return render_page(request, "console/orders.html", {**context, "message": message}, 422)
    found = await run_in_threadpool(customers_by_email, state.reads, email)
    if len(found) == 1:
        return see_other(f"/console/customers/{quote(found[0], safe='')}")
    context["email_customers"] = found
    if not found:
        context["message"] = f"no customer has the e-mail {email}"
    return render_page(request, "console/orders.html", context, 200)


@router.get("/customers/{customer_id}")
async def customer_page(request: Request, state: State, customer_id: str) -> Response:
    who = await console_session.viewer(request, state)
    try:
        profile = await run_in_threadpool(customer_profile, state.reads, customer_id)
    except UnknownCustomer:
        context = {"who": who, "customer_id": customer_id, "message": f"unknown customer {customer_id}"}
        return render_page(request, "console/customer.html", context, 404)
    return render_page(request, "console/customer.html", {"who": who, "profile": profile}, 200)
