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
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from fastapi.templating import Jinja2Templates

from api.state import AppState, app_state
from domain.tracking_links import TrackingLinks, order_of_token
from models.orders import OrderStatus, OrderView, ShipmentStatus
from services.orders import Refused, UnknownOrder, order_view, placed_order

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
    nonce = secrets.token_urlsafe(16)
    headers = {
        **_HEADERS,
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self';"
            " form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        ),
    }
    context |= {"fragment": False, "nonce": nonce, "refresh_ms": REFRESH_SECONDS * 1000}
    return templates.TemplateResponse(request, "track.html", context, headers=headers)


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
    return {
        "token": token,
        "first_name": first_name,
        "city": city,
        "status": view.status.value,
        "status_words": STATUS_WORDS.get(view.status, view.status.value),
        "final": view.status in FINAL,
        "expected_delivery": _expected(view),
        "parcels": _parcels(view),
    }


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
