"""An activity run twice changes nothing the second time (Temporal may retry any step that already ran)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities.fulfilment import FulfilmentActivities
from activities.inventory import InventoryActivities
from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from db import SessionFactory
from models import tables as t
from models.orders import LineIn, OrderInput, OrderPolicy, PlaceOrder, ShipmentLine
from models.steps import (
    DeliveryRecord,
    EventBatch,
    EventRecord,
    FeedbackRecord,
    NotificationRequest,
    PackRecord,
    PaymentRequest,
    RelabelRequest,
    ReserveRequest,
    ShipmentRef,
    ShipRequest,
)
from sandbox.carrier import SandboxCarrier
from sandbox.gateway import sandbox_ledger
from services.orders import handle, place_order
from tests.helpers import add_products, eventually, ledger, order_doc, unique, wait_status

R = TypeVar("R")


def snapshot(sessions: SessionFactory, order_id: str, skus: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row the order's activities may touch, column by column."""
    queries = {
        t.Customer: select(t.Customer).join(t.Order).where(t.Order.id == order_id),
        t.Order: select(t.Order).where(t.Order.id == order_id),
        t.OrderLine: select(t.OrderLine).where(t.OrderLine.order_id == order_id),
        t.OrderEvent: select(t.OrderEvent).where(t.OrderEvent.order_id == order_id),
        t.Stock: select(t.Stock).where(t.Stock.sku.in_(skus)),
        t.StockMovement: select(t.StockMovement).where(t.StockMovement.sku.in_(skus)),
        t.Reservation: select(t.Reservation).where(t.Reservation.order_id == order_id),
        t.Payment: select(t.Payment).where(t.Payment.order_id == order_id),
        t.CarrierBooking: select(t.CarrierBooking).where(
            t.CarrierBooking.idempotency_key.startswith(f"order-{order_id}:")
        ),
        t.Shipment: select(t.Shipment).where(t.Shipment.order_id == order_id),
        t.Notification: select(t.Notification).where(t.Notification.order_id == order_id),
        t.Feedback: select(t.Feedback).where(t.Feedback.order_id == order_id),
    }
    with sessions() as session:
        return {
            table.__tablename__: [
                {c.key: getattr(row, c.key) for c in table.__table__.columns}
                for row in session.scalars(query.order_by(*table.__table__.primary_key.columns))
            ]
            for table, query in queries.items()
        }


def levels(sessions: SessionFactory, order_id: str, *skus: str) -> list[tuple[int, int]]:
    """(on_hand, reserved) of each sku, in the order given."""
    stock = {r["sku"]: r for r in snapshot(sessions, order_id, list(skus))["stock"]}
    return [(stock[sku]["on_hand"], stock[sku]["reserved"]) for sku in skus]


class Twice:
    """Runs each step twice and checks the repeat returned the same and left every row as it was."""

    def __init__(self, sessions: SessionFactory, order_id: str, skus: list[str]) -> None:
        self.snap = lambda: snapshot(sessions, order_id, skus)

    def __call__(self, step: Callable[[Any], R], arg: Any, same_result: bool = True) -> R:
        first = step(arg)
        after_first = self.snap()
        again = step(arg)
        assert self.snap() == after_first, f"{step.__name__} changed rows on a repeat"
        if same_result:
            assert again == first, f"{step.__name__} returned something else on a repeat"
        return first


def place_request(sessions: SessionFactory, stock: dict[str, int], lines: dict[str, int], token="tok_visa"):
    skus = add_products(sessions, stock, price="8.00", weight_g=200)
    order_id = unique("IDEM")
    doc = order_doc([(skus[name], qty) for name, qty in lines.items()], token=token, order_id=order_id)
    request = PlaceOrder(
        order=OrderInput.model_validate(doc),
        policy=OrderPolicy(delivery_sla=timedelta(days=7), return_window=timedelta(days=30)),
        placed_at=datetime.now(UTC),
    )
    return request, skus


def ship_request(request: PlaceOrder, weight_g: int) -> ShipRequest:
    return ShipRequest(
        order_id=request.order_id,
        shipment_id=f"{request.order_id}-S1",
        warehouse="W1",
        weight_g=weight_g,
        address=request.order.shipping_address,
    )


def payment(order_id: str, step: str, amount: str, token: str = "") -> PaymentRequest:
    return PaymentRequest(
        order_id=order_id,
        idempotency_key=f"order-{order_id}:{step}",
        amount=Decimal(amount),
        currency="EUR",
        token=token,
    )


def test_every_step_of_a_fulfilled_order_runs_once(sessions):
    request, skus = place_request(sessions, {"A": 10, "B": 4}, {"A": 2, "B": 1})
    order_id = request.order_id
    twice = Twice(sessions, order_id, list(skus.values()))
    orders, inventory = OrderActivities(sessions), InventoryActivities(sessions)
    payments = PaymentActivities(sandbox_ledger(sessions))
    fulfilment = FulfilmentActivities(sessions, SandboxCarrier(sessions))
    notifications = NotificationActivities(sessions)
    ref = ShipmentRef(order_id=order_id, shipment_id=f"{order_id}-S1")

    admitted = twice(orders.admit_order, request)  # record, validate, screen at once
    assert (admitted.priced.total, admitted.hold_reason) == (Decimal("24.00"), None)

    def event(seq: int, kind: str, status: str, total: Decimal | None = None) -> EventRecord:
        return EventRecord(
            order_id=order_id,
            seq=seq,
            at=datetime.now(UTC),
            type=kind,
            detail="",
            status=status,
            payment_status="pending",
            total=total,
        )

    twice(orders.record_events, EventBatch(events=[event(1, "order_received", "received")]))
    # a workflow task's write: its events and the orders row, one UPDATE that a repeat skips
    twice(
        orders.record_events, EventBatch(events=[event(2, "order_confirmed", "confirmed", Decimal("24.00"))])
    )
    assert [(r["status"], r["total"]) for r in snapshot(sessions, order_id, [])["orders"]] == [
        ("confirmed", Decimal("24.00"))
    ]
    auth = twice(payments.authorize_payment, payment(order_id, "authorize", "24.00", "tok_visa"))
    assert (auth.kind, auth.amount) == ("authorization", Decimal("24.00"))

    allocated = twice(
        inventory.reserve_stock,
        ReserveRequest(
            order_id=order_id,
            lines=[ShipmentLine(sku=skus["A"], quantity=2), ShipmentLine(sku=skus["B"], quantity=1)],
            shipment_prefix=f"{order_id}-S",
        ),
    )
    assert [(s.id, s.warehouse, len(s.lines)) for s in allocated] == [(ref.shipment_id, "W1", 2)]
    assert levels(sessions, order_id, skus["A"]) == [(10, 2)]

    assert twice(inventory.pick_stock, ref) == 3
    packed = twice(fulfilment.pack_shipment, ref)
    assert packed.weight_g == 150 + 3 * 200
    shipped = twice(fulfilment.ship_shipment, ship_request(request, packed.weight_g))

    assert shipped.tracking_number.startswith("SBX")
    twice(payments.capture_payment, payment(order_id, f"capture:{ref.shipment_id}", "24.00"))
    twice(
        notifications.send_notification,
        NotificationRequest(
            order_id=order_id,
            kind="order_shipped",
            idempotency_key=f"order-{order_id}:notify:shipped:{ref.shipment_id}",
            context={"shipment_id": ref.shipment_id, "tracking_number": shipped.tracking_number},
        ),
    )
    twice(
        fulfilment.record_delivery,
        DeliveryRecord(order_id=order_id, shipment_id=ref.shipment_id, delivered_at=datetime.now(UTC)),
    )
    twice(orders.record_feedback, FeedbackRecord(order_id=order_id, score=5, comment="great"))

    assert levels(sessions, order_id, skus["A"], skus["B"]) == [(8, 0), (3, 0)]
    rows = snapshot(sessions, order_id, list(skus.values()))
    assert ledger(sessions, order_id) == {"authorization": Decimal("24.00"), "capture": Decimal("24.00")}
    assert len(rows["carrier_bookings"]) == len(rows["notifications"]) == 1
    assert len(rows["order_events"]) == 2


def reserved_order(sessions: SessionFactory) -> tuple[PlaceOrder, ShipmentRef, int]:
    request, skus = place_request(sessions, {"F": 5}, {"F": 2})
    OrderActivities(sessions).admit_order(request)
    InventoryActivities(sessions).reserve_stock(
        ReserveRequest(
            order_id=request.order_id,
            lines=[ShipmentLine(sku=skus["F"], quantity=2)],
            shipment_prefix=f"{request.order_id}-S",
        )
    )
    ref = ShipmentRef(order_id=request.order_id, shipment_id=f"{request.order_id}-S1")
    return request, ref, 2


def test_a_repeated_pick_reports_the_units_picked(sessions):
    request, ref, units = reserved_order(sessions)
    inventory = InventoryActivities(sessions)
    assert [inventory.pick_stock(ref), inventory.pick_stock(ref)] == [units, units]


def test_a_repeated_booking_returns_the_same_shipping_time(sessions):
    request, ref, _ = reserved_order(sessions)
    InventoryActivities(sessions).pick_stock(ref)
    fulfilment = FulfilmentActivities(sessions, SandboxCarrier(sessions))
    packed = fulfilment.pack_shipment(ref)
    first = fulfilment.ship_shipment(ship_request(request, packed.weight_g))
    again = fulfilment.ship_shipment(ship_request(request, packed.weight_g))
    assert again.shipped_at.tzinfo is not None
    assert again == first


def test_compensation_steps_run_once(sessions):
    request, skus = place_request(sessions, {"C": 5}, {"C": 2})
    order_id = request.order_id
    twice = Twice(sessions, order_id, list(skus.values()))
    inventory, payments = (
        InventoryActivities(sessions),
        PaymentActivities(sandbox_ledger(sessions)),
    )
    OrderActivities(sessions).admit_order(request)
    payments.authorize_payment(payment(order_id, "authorize", "16.00", "tok_visa"))
    inventory.reserve_stock(
        ReserveRequest(
            order_id=order_id,
            lines=[ShipmentLine(sku=skus["C"], quantity=2)],
            shipment_prefix=f"{order_id}-S",
        )
    )

    ref = ShipmentRef(order_id=order_id, shipment_id=f"{order_id}-S1")
    assert twice(inventory.release_stock, ref, same_result=False) == 2  # documented: a repeat releases 0
    assert levels(sessions, order_id, skus["C"]) == [(5, 0)]
    assert [r["status"] for r in snapshot(sessions, order_id, [])["reservations"]] == ["released"]

    voided = twice(payments.void_payment, payment(order_id, "void", "0"))
    assert voided is not None and (voided.kind, voided.amount) == ("void", Decimal("16.00"))


def test_a_declined_authorization_stays_declined(sessions):
    request, skus = place_request(sessions, {"D": 1}, {"D": 1}, token="tok_declined")
    order_id = request.order_id
    OrderActivities(sessions).admit_order(request)
    payments = PaymentActivities(sandbox_ledger(sessions))
    auth = payment(order_id, "authorize", "8.00", "tok_declined")
    rows = []
    for _ in range(2):
        with pytest.raises(ApplicationError, match="payment declined: card_declined") as refused:
            payments.authorize_payment(auth)
        assert refused.value.non_retryable
        rows.append(snapshot(sessions, order_id, list(skus.values()))["payments"])
    assert rows[0] == rows[1]
    assert [(r["kind"], r["status"]) for r in rows[0]] == [("authorization", "declined")]


@pytest.mark.usefixtures("worker")
async def test_placing_an_order_id_again_starts_nothing(client, settings, sessions):
    request, skus = place_request(sessions, {"E": 5}, {"E": 1})
    first = await place_order(client, settings, request.order)
    assert first.created and first.order_id == request.order_id
    await wait_status(client, request.order_id, "shipped")
    run_id = (await handle(client, request.order_id).describe()).run_id

    changed = request.order.model_copy(update={"lines": [LineIn(sku=skus["E"], quantity=3)]})
    again = await place_order(client, settings, changed)

    assert (again.order_id, again.created) == (request.order_id, False)
    assert (await handle(client, request.order_id).describe()).run_id == run_id
    rows = snapshot(sessions, request.order_id, [skus["E"]])
    assert [(r["sku"], r["quantity"]) for r in rows["order_lines"]] == [(skus["E"], 1)]
    assert [r["kind"] for r in rows["payments"]] == ["authorization", "capture"]
    assert levels(sessions, request.order_id, skus["E"]) == [(4, 0)]
    runs = await eventually(
        lambda: _runs(client, request.order_id), lambda found: len(found) >= 1, timeout=10
    )
    assert runs == [run_id]


async def _runs(client, order_id: str) -> list[str]:
    query = f"WorkflowId = 'order-{order_id}'"
    return [w.run_id async for w in client.list_workflows(query)]


async def test_a_repeated_relabel_books_once_and_cancels_the_old_label(sessions):
    """An address edit after the pack: the parcel's new label (relabel_shipment) books the carrier once
    per step, cancels the booking it replaces, and prints the shipments row's label to the new address."""
    request, ref, _ = reserved_order(sessions)
    shipment_id = ref.shipment_id
    fulfilment, carrier = FulfilmentActivities(sessions, SandboxCarrier(sessions)), SandboxCarrier(sessions)
    fulfilment.record_pack(PackRecord(order_id=request.order_id, shipment_id=shipment_id, parcels_g=[700]))
    first = await fulfilment.book_carrier(ship_request(request, 700))
    hamburg = request.order.shipping_address.model_copy(update={"city": "Hamburg", "postal_code": "20354"})
    relabel = RelabelRequest(
        order_id=request.order_id,
        shipment_id=shipment_id,
        warehouse="W1",
        weight_g=700,
        parcels=1,
        address=hamburg,
        booking=f"ship:{shipment_id}:relabel-1",
        replaces=f"ship:{shipment_id}",
    )
    labels = [await fulfilment.relabel_shipment(relabel), await fulfilment.relabel_shipment(relabel)]
    assert labels[0] == labels[1] and labels[0].tracking_number != first.tracking_number
    old, new = carrier.booking(first.tracking_number), carrier.booking(labels[0].tracking_number)
    assert old is not None and old.status == "cancelled" and new is not None and new.status == "booked"
    with sessions() as session:
        row = session.get(t.Shipment, shipment_id)
        assert row.tracking_number == labels[0].tracking_number and row.label_ref == labels[0].label_ref
        assert "Hamburg" in row.label and "20354" in row.label
    # the order's compensation cancels the new booking by its step
    assert fulfilment.cancel_carrier_booking(ref.model_copy(update={"booking": relabel.booking}))
    assert carrier.booking(labels[0].tracking_number).status == "cancelled"
