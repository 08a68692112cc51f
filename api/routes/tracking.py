"""The customer's tracking page, `GET /track/<token>`: no sign-in, the link in the order confirmation
is the key (`domain/tracking_links.py`). It shows the order's status, its expected delivery and each
parcel's tracking timeline, and refreshes itself from `GET /track/<token>/fragment` (the same part of
the page, rendered by the server) every few seconds.

Nothing personal beyond the customer's first name and the destination city: no e-mail, phone, street,
last name, prices or notes. An unknown, tampered or unreadable token is a plain 404 that says nothing
about why. Pages are never cached, framed, indexed or given a Referer (the token is in the URL).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.state import AppState, app_state
from domain.tracking_links import TrackingLinks, order_of_token
from models import strict_json
from models.choices import ReturnReason
from models.orders import CustomerReturnIn, OrderStatus, OrderView, ReturnStatus, ReturnView, ShipmentStatus
from services.orders import Refused, UnknownOrder, customer_return, order_view, placed_order

router = APIRouter(prefix="/track", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
State = Annotated[AppState, Depends(app_state)]

REFRESH_SECONDS = 5

# what a customer reads for each status
STATUS_WORDS: dict[OrderStatus, str] = {
    OrderStatus.received: "Received: we are checking your order",
    OrderStatus.rejected: "Not accepted",
    OrderStatus.backordered: "Waiting for stock: some items are on their way to us",
    OrderStatus.on_hold: "Being reviewed: we will be in touch shortly",
    OrderStatus.confirmed: "Confirmed: we are preparing your order",
    OrderStatus.picking: "Being picked in our warehouse",
    OrderStatus.packed: "Packed: waiting for the carrier",
    OrderStatus.shipped: "On its way",
    OrderStatus.delivered: "Delivered",
    OrderStatus.delivery_exception: "Held up in delivery: we are looking into it",
    OrderStatus.partially_returned: "Delivered (part returned)",
    OrderStatus.returned: "Returned",
    OrderStatus.completed: "Delivered",
    OrderStatus.cancelled: "Cancelled",
}
PARCEL_WORDS: dict[ShipmentStatus, str] = {
    ShipmentStatus.allocated: "Being prepared",
    ShipmentStatus.backordered: "Waiting for stock",
    ShipmentStatus.released: "With our warehouse",
    ShipmentStatus.picking: "Being picked",
    ShipmentStatus.picked: "Picked",
    ShipmentStatus.packed: "Packed",
    ShipmentStatus.shipped: "On its way",
    ShipmentStatus.delivered: "Delivered",
    ShipmentStatus.exception: "Held up: we are looking into it",
    ShipmentStatus.resolved: "Replaced or refunded",
    ShipmentStatus.cancelled: "Cancelled",
}
RETURN_WORDS: dict[ReturnStatus, str] = {
    ReturnStatus.pending_approval: "Requested: waiting for our approval",
    ReturnStatus.declined: "Declined",
    ReturnStatus.requested: "Approved: please send the parcel",
    ReturnStatus.refunded: "Received and refunded",
    ReturnStatus.exchanged: "Received and exchanged",
    ReturnStatus.expired: "Expired: nothing arrived in time",
}
REASON_WORDS: dict[ReturnReason, str] = {
    ReturnReason.damaged: "It arrived damaged",
    ReturnReason.defective: "It does not work",
    ReturnReason.wrong_item: "It is not what I ordered",
    ReturnReason.not_as_described: "It is not as described",
    ReturnReason.no_longer_needed: "I no longer need it",
    ReturnReason.other: "Another reason",
}
RETURNABLE = {OrderStatus.delivered, OrderStatus.partially_returned, OrderStatus.returned}
FINAL = {OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.completed, OrderStatus.returned}

_NOT_FOUND = "Not found\n"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}


@router.get("/{token}")
async def tracking_page(request: Request, token: str, state: State) -> Response:
    context = await _tracking(request, token, state)
    if context is None:
        return _not_found()
    return _page(request, context)


def _page(request: Request, context: dict[str, Any], status_code: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    headers = {
        **_HEADERS,
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self';"
            " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }
    context |= {"fragment": False, "nonce": nonce, "refresh_ms": REFRESH_SECONDS * 1000}
    return templates.TemplateResponse(
        request, "track.html", context, status_code=status_code, headers=headers
    )


@router.post("/{token}/returns")
async def start_return(request: Request, token: str, state: State) -> Response:
    """The customer's return request: JSON `{"lines": [{"sku", "quantity"}], "reason"}` (answers JSON),
    or the page's form (answers the page). The token is the credential; a browser's request from another
    origin is refused (403), and the form must come from this origin."""
    order_id = order_of_token(await _secret(request, state), token)
    if order_id is None:
        return _not_found()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = content_type == "application/x-www-form-urlencoded"
    if not _same_origin(request, state, required=is_form):
        return JSONResponse(
            {"error": "forbidden", "detail": "a return request must come from this site's own page"},
            status_code=403,
            headers=_HEADERS,
        )
    body = await request.body()
    if is_form:
        return await _form_return(request, token, order_id, body, state)
    if content_type != "application/json":
        return _error(415, "unsupported_media_type", "send the body as application/json")
    try:
        ask = CustomerReturnIn.model_validate(strict_json.loads(body))
    except (ValueError, ValidationError) as exc:
        return _error(422, "invalid", _problems(exc))
    try:
        ret = await customer_return(state.client, order_id, ask, state.settings.return_auto_approve_limit)
    except UnknownOrder:
        return _not_found()
    except Refused as exc:
        return _error(409, "refused", str(exc))
    return JSONResponse(_customer_return(ret), status_code=201, headers=_HEADERS)


async def _form_return(request: Request, token: str, order_id: str, body: bytes, state: AppState) -> Response:
    try:
        fields = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=400
        )
    except (UnicodeDecodeError, ValueError):
        fields = []
    lines, reason, problems = [], None, []
    for name, value in fields:
        if name == "reason":
            reason = value
        elif name.startswith("qty:") and value.strip() not in ("", "0"):
            try:
                quantity = int(value)
            except ValueError:
                problems.append(f"{name[4:]}: {value!r} is not a whole number")
                continue
            lines.append({"sku": name[4:], "quantity": quantity})
    notice: str | None = None
    code = 200
    if problems:
        notice, code = "; ".join(problems), 422
    elif not lines:
        notice, code = "Choose at least one item to return.", 422
    else:
        try:
            ask = CustomerReturnIn.model_validate({"lines": lines, "reason": reason})
            ret = await customer_return(state.client, order_id, ask, state.settings.return_auto_approve_limit)
        except ValidationError as exc:
            notice, code = _problems(exc), 422
        except UnknownOrder:
            return _not_found()
        except Refused as exc:
            notice, code = str(exc), 409
        else:
            return RedirectResponse(
                f"/track/{token}?return={ret.rma}#returns", status_code=303, headers=_HEADERS
            )
    context = await _tracking(request, token, state)
    if context is None:
        return _not_found()
    return _page(request, context | {"notice": notice}, status_code=code)


def _same_origin(request: Request, state: AppState, required: bool) -> bool:
    """A browser says where a request comes from (Origin, Sec-Fetch-Site); this site's own page only.
    Clients that are not browsers send neither: the JSON door takes them (the token is the credential;
    a page elsewhere cannot send JSON here without a CORS preflight, which is never granted)."""
    headers = request.headers
    site = headers.get("sec-fetch-site")
    if site is not None:  # the browser's own word (a no-referrer page's form sends `Origin: null`)
        return site == "same-origin"
    origin = headers.get("origin")
    if origin is None:
        return not required
    own = {f"{request.url.scheme}://{headers.get('host', '')}"}
    public = urlsplit(state.settings.public_url)
    own.add(f"{public.scheme}://{public.netloc}")
    return origin in own


def _problems(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
    return f"invalid JSON: {exc}"


def _error(status_code: int, error: str, detail: str) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status_code, headers=_HEADERS)


def _customer_return(ret: ReturnView) -> dict[str, Any]:
    """What the customer sees of a return: no prices, no warehouses."""
    units: dict[str, int] = defaultdict(int)
    for line in ret.lines:
        units[line.sku] += line.quantity
    return {
        "rma": ret.rma,
        "status": ret.status.value,
        "reason": ret.reason,
        "lines": [{"sku": sku, "quantity": q} for sku, q in units.items()],
        "requested_at": ret.requested_at.isoformat(),
    }


@router.get("/{token}/fragment")
async def tracking_fragment(request: Request, token: str, state: State) -> Response:
    """The page's changing part, for its script to swap in."""
    context = await _tracking(request, token, state)
    if context is None:
        return _not_found()
    headers = {**_HEADERS, "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}
    return templates.TemplateResponse(request, "track.html", context | {"fragment": True}, headers=headers)


async def _tracking(request: Request, token: str, state: AppState) -> dict[str, Any] | None:
    order_id = order_of_token(await _secret(request, state), token)
    if order_id is None:
        return None
    try:
        view = await order_view(state.client, order_id)
        placed = await placed_order(state.client, order_id)
    except (UnknownOrder, Refused):
        return None
    first_name = city = None
    if placed is not None:
        first_name = placed.customer.name.split()[0] if placed.customer.name.split() else None
        city = placed.shipping_address.city
    city = view.shipping_city or city  # an order edit moved it (issue 26)
    return {
        "token": token,
        "first_name": first_name,
        "city": city,
        "status": view.status.value,
        "status_words": STATUS_WORDS.get(view.status, view.status.value),
        "final": view.status in FINAL,
        "expected_delivery": _expected(view),
        "parcels": _parcels(view),
        "returns": _returns(view),
        "returnable": _returnable(view),
        "return_window_ends": f"{view.return_window_ends:%A %d %B %Y}" if view.return_window_ends else None,
        "reasons": [(r.value, REASON_WORDS[r]) for r in ReturnReason],
        "notice": None,
    }


def _returns(view: OrderView) -> list[dict[str, Any]]:
    return [
        _customer_return(ret) | {"words": RETURN_WORDS.get(ret.status, ret.status.value)}
        for ret in view.returns
    ]


def _returnable(view: OrderView) -> list[dict[str, Any]]:
    """Delivered units not yet returned or requested, while the return window is open."""
    ends = view.return_window_ends
    if view.status not in RETURNABLE or ends is None or datetime.now(UTC) >= ends:
        return []
    units: dict[str, int] = defaultdict(int)
    for shipment in view.shipments:
        if shipment.status == ShipmentStatus.delivered:
            for line in shipment.lines:
                units[line.sku] += line.quantity
    for ret in view.returns:
        if ret.status not in (ReturnStatus.expired, ReturnStatus.declined):
            for returned in ret.lines:
                units[returned.sku] -= returned.quantity
    names = {line.sku: line.name for line in view.lines}
    return [
        {"sku": sku, "name": names.get(sku, sku), "units": q} for sku, q in sorted(units.items()) if q > 0
    ]


def _expected(view: OrderView) -> str | None:
    if view.expected_delivery is None or view.status in FINAL | {OrderStatus.delivered}:
        return None
    return f"{view.expected_delivery:%A %d %B %Y}"


def _parcels(view: OrderView) -> list[dict[str, Any]]:
    parcels = []
    for number, shipment in enumerate(view.shipments, start=1):
        timeline = [
            {"at": f"{e.at:%d %b %H:%M} UTC", "what": e.type.replace("_", " "), "place": e.place}
            for e in sorted(shipment.tracking, key=lambda e: e.at)
        ]
        if shipment.shipped_at and not timeline:
            timeline.append({"at": f"{shipment.shipped_at:%d %b %H:%M} UTC", "what": "handed to the carrier"})
        parcels.append(
            {
                "number": number,
                "status": PARCEL_WORDS.get(shipment.status, shipment.status.value),
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "units": sum(line.quantity for line in shipment.lines),
                "delivered_at": f"{shipment.delivered_at:%A %d %B %H:%M} UTC"
                if shipment.delivered_at
                else None,
                "timeline": timeline,
            }
        )
    return parcels


async def tracking_links(request: Request, state: AppState) -> TrackingLinks:
    """The application's tracking links, their secret read once (a file read otherwise): the console's
    order page links to the same page the customer's messages do."""
    links: TrackingLinks | None = getattr(request.app.state, "tracking_links", None)
    if links is None:
        links = await run_in_threadpool(TrackingLinks.from_settings, state.settings)
        request.app.state.tracking_links = links
    return links


async def _secret(request: Request, state: AppState) -> str:
    return (await tracking_links(request, state)).secret


def _not_found() -> Response:
    return PlainTextResponse(_NOT_FOUND, status_code=404, headers=_HEADERS)
