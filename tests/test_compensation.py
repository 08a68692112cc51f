"""Saga compensation when the carrier refuses a booking: every completed step is undone, in reverse.

A postal code of REFUSE makes the sandbox carrier refuse the booking after the order was authorized,
reserved, picked and packed, so every undo runs: cancel the booking, restock the picked units, release
the reservation, void the authorization.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.notifications import SUPPORT_ADDRESS
from db import SessionFactory
from models import search_attributes as sa
from models import tables as t
from models.orders import OrderStatus, OrderView
from services.orders import OrderFilter, handle, list_orders
from tests.helpers import (
    add_products,
    assert_ledger_invariants,
    eventually,
    ledger,
    notifications,
    order_doc,
    place,
    stock_movements,
    stock_of,
    unique,
)

pytestmark = pytest.mark.usefixtures("worker")

REFUSED_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Nowhere Lane",
    "line2": None,
    "city": "London",
    "postal_code": "REFUSE",
    "country": "GB",
}
CARRIER_REASON = "carrier sandbox-post does not serve postal code REFUSE"


def undos(shipment_id: str, void: bool = True) -> list[str]:
    """The compensations of a refused booking, in the order they must run (the reverse of the steps)."""
    return [
        f"cancel the carrier booking of {shipment_id}",
        f"put the picked units of {shipment_id} back on the shelf",
        f"release the stock reserved for {shipment_id}",
    ] + (["void the authorization"] if void else [])


async def refused_order(
    client: Client, settings: Any, sessions: SessionFactory, token: str = "tok_visa", **policy: Any
) -> tuple[str, str, OrderView]:
    """Place 2 x 12.50 to a postal code the carrier refuses; (sku, order id, final view)."""
    skus = add_products(sessions, {"LAMP": 5}, price="12.50")
    doc = order_doc([(skus["LAMP"], 2)], token=token, shipping_address=REFUSED_ADDRESS)
    order_id = await place(client, settings, doc, **policy)
    view = await asyncio.wait_for(handle(client, order_id).result(), timeout=30)
    return skus["LAMP"], order_id, view


def void_attempts(history: Any) -> list[int]:
    """The attempt number each void_payment activity finished on."""
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "void_payment"
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def test_refused_booking_undoes_every_step_in_reverse(client, settings, sessions):
    sku, order_id, view = await refused_order(client, settings, sessions)

    assert (view.status, view.payment_status) == ("cancelled", "voided")
    (shipment,) = view.shipments
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert cancelled.detail == CARRIER_REASON
    assert [e.detail for e in view.events if e.type == "compensated"] == undos(shipment.id)
    assert not [e for e in view.events if e.type in ("compensation_failed", "payment_captured")]

    # stock: reserved, picked, then put back on the shelf; nothing left reserved
    assert stock_of(sessions, sku) == (5, 0)
    moves = stock_movements(sessions, order_id)
    assert [(m.kind, m.on_hand_delta, m.reserved_delta) for m in moves] == [
        ("reserve", 0, 2),
        ("pick", -2, -2),
        ("restock", 2, 0),
    ]
    assert sum(m.on_hand_delta for m in moves) == 0 and sum(m.reserved_delta for m in moves) == 0

    # money: authorized, then voided in full; never captured
    assert ledger(sessions, order_id) == {"authorization": Decimal("25.00"), "void": Decimal("25.00")}
    totals = assert_ledger_invariants(sessions, order_id)
    assert (totals.captured, totals.voided) == (0, Decimal("25.00"))

    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("cancelled", "voided")
        row = session.get(t.Shipment, shipment.id)
        assert row is not None and (row.status, row.tracking_number) == ("cancelled", None)
        reservations = session.query(t.Reservation).filter_by(order_id=order_id).all()
        assert [r.status for r in reservations] == ["restocked"]

    kinds = [n.kind for n in notifications(sessions, order_id)]
    assert kinds == ["order_confirmed", "order_cancelled"]
    cancelled_mail = notifications(sessions, order_id)[-1]
    assert cancelled_mail.recipient == "ada@example.com"
    assert CARRIER_REASON in cancelled_mail.body and "nothing was charged" in cancelled_mail.body


async def test_a_compensation_that_fails_transiently_is_retried(client, settings, sessions):
    sku, order_id, view = await refused_order(client, settings, sessions, token="tok_flaky_void")

    assert (view.status, view.payment_status) == ("cancelled", "voided")
    assert [e.detail for e in view.events if e.type == "compensated"] == undos(view.shipments[0].id)
    assert "compensation_failed" not in [e.type for e in view.events]
    assert void_attempts(await handle(client, order_id).fetch_history()) == [3]  # failed twice, then voided
    assert ledger(sessions, order_id) == {"authorization": Decimal("25.00"), "void": Decimal("25.00")}
    assert assert_ledger_invariants(sessions, order_id).voided
    assert stock_of(sessions, sku) == (5, 0)
    assert [n.recipient for n in notifications(sessions, order_id)] == ["ada@example.com"] * 2
    description = await handle(client, order_id).describe()
    assert description.typed_search_attributes.get(sa.NEEDS_ATTENTION) is None


async def test_a_compensation_that_gives_up_is_an_incident_for_support(client, settings, sessions):
    sku, order_id, view = await refused_order(
        client, settings, sessions, token="tok_void_unavailable", compensation_attempts=2
    )

    assert view.status == "cancelled"
    assert view.payment_status == "authorized"  # honest: the void never went through
    shipment_id = view.shipments[0].id
    assert [e.detail for e in view.events if e.type == "compensated"] == undos(shipment_id, void=False)
    (failed,) = [e for e in view.events if e.type == "compensation_failed"]
    assert failed.detail.startswith("void the authorization: ") and "gateway timeout" in failed.detail
    assert f"void attempt 2 for order-{order_id}:void" in failed.detail
    assert void_attempts(await handle(client, order_id).fetch_history()) == [2]

    # the other undos still ran
    assert stock_of(sessions, sku) == (5, 0)
    assert sum(m.on_hand_delta for m in stock_movements(sessions, order_id)) == 0
    assert ledger(sessions, order_id) == {"authorization": Decimal("25.00")}
    assert not assert_ledger_invariants(sessions, order_id).voided

    (incident,) = [n for n in notifications(sessions, order_id) if n.kind == "compensation_failed"]
    assert incident.recipient == SUPPORT_ADDRESS
    assert incident.subject == f"[support] Order {order_id} needs attention: compensation failed"
    assert "Undoing 'void the authorization'" in incident.body and "gateway timeout" in incident.body
    assert "order_cancelled" in [n.kind for n in notifications(sessions, order_id)]

    description = await handle(client, order_id).describe()
    assert description.typed_search_attributes.get(sa.NEEDS_ATTENTION) is True
    assert description.typed_search_attributes.get(sa.ORDER_STATUS) == "cancelled"
    await eventually(
        lambda: list_orders(client, OrderFilter(status=OrderStatus.cancelled)),
        lambda found: order_id in [o.order_id for o in found],
    )
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("cancelled", "authorized")


async def test_the_customer_is_not_told_a_failed_void_went_through(client, settings, sessions):
    _, order_id, _ = await refused_order(
        client, settings, sessions, token="tok_void_unavailable", compensation_attempts=1
    )
    (mail,) = [n for n in notifications(sessions, order_id) if n.kind == "order_cancelled"]
    assert "authorization on your card was released" not in mail.body


async def test_the_view_shows_the_refused_shipment_cancelled(client, settings, sessions):
    _, _, view = await refused_order(client, settings, sessions)
    assert [s.status for s in view.shipments] == ["cancelled"]


@pytest.mark.ledger_may_break("writes a capture after a void by hand for the helper to catch")
def test_the_ledger_invariants_catch_a_capture_after_a_void(sessions):
    order_id = unique("LEDGER")
    rows = [("authorization", "30.00"), ("void", "30.00"), ("capture", "10.00")]
    with sessions.begin() as session:
        session.add_all(
            t.Payment(
                order_id=order_id,
                kind=kind,
                status="approved",
                amount=Decimal(amount),
                currency="EUR",
                idempotency_key=f"{order_id}:{n}",
                reference=f"pay_{n}",
            )
            for n, (kind, amount) in enumerate(rows)
        )
    with pytest.raises(AssertionError, match="captured \\+ voided > authorized at pay_2"):
        assert_ledger_invariants(sessions, order_id)
