"""An order from placement to delivery and the end of its return window, on the real stack."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from config import Settings
from db import SessionFactory
from models import tables as t
from models.orders import DeliveryConfirmation, FeedbackIn
from services.orders import confirm_delivery, give_feedback, handle, order_view
from tests.helpers import (
    add_products,
    events,
    eventually,
    ledger,
    notifications,
    order_doc,
    outbox,
    place,
    stock_of,
    wait_status,
)
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.usefixtures("worker")


async def test_happy_path_to_delivered_and_completed(
    client: Client, settings: Settings, sessions: SessionFactory
):
    skus = add_products(sessions, {"TEE": 10, "MUG": 5}, price="19.90")
    order_id = await place(
        client, settings, order_doc([(skus["TEE"], 2), (skus["MUG"], 1)]), return_window=timedelta(seconds=2)
    )

    view = await wait_status(client, order_id, "shipped")
    assert view.total == Decimal("59.70")
    assert view.payment_status == "captured"
    (shipment,) = view.shipments
    assert shipment.warehouse == "W1" and shipment.tracking_number and shipment.carrier
    assert stock_of(sessions, skus["TEE"]) == (8, 0)  # picked: on_hand down, nothing left reserved
    assert stock_of(sessions, skus["MUG"]) == (4, 0)
    assert ledger(sessions, order_id) == {"authorization": Decimal("59.70"), "capture": Decimal("59.70")}

    await confirm_delivery(client, order_id)
    view = await wait_status(client, order_id, "delivered")
    await give_feedback(client, order_id, FeedbackIn(score=5, comment="Lovely"))

    result = await handle(client, order_id).result()
    assert result.status == "completed"
    assert result.feedback is not None and result.feedback.score == 5
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("completed", "captured")
        assert order.total == Decimal("59.70")
        feedback = session.get(t.Feedback, order_id)
        assert feedback is not None and (feedback.score, feedback.comment) == (5, "Lovely")
        stored = session.get(t.Shipment, shipment.id)
        assert stored is not None and stored.status == "delivered" and stored.delivered_at is not None
    kinds = [n.kind for n in notifications(sessions, order_id)]
    assert kinds == ["order_confirmed", "order_shipped", "order_delivered"]
    types = [e.type for e in events(sessions, order_id)]
    for expected in [
        "order_received",
        "order_validated",
        "payment_authorized",
        "stock_reserved",
        "order_confirmed",
        "release_scheduled",
        "shipment_released",
        "shipment_picked",
        "shipment_packed",
        "label_printed",
        "payment_captured",
        "shipment_shipped",
        "shipment_delivered",
        "feedback_received",
        "order_completed",
    ]:
        assert expected in types
    assert [e.type for e in result.events] == types  # the live view and the audit trail agree


async def test_confirmation_message_has_details_and_expected_delivery(client, settings, sessions):
    skus = add_products(sessions, {"SOCK": 3}, price="4.50")
    order_id = await place(client, settings, order_doc([(skus["SOCK"], 3)]))
    view = await wait_status(client, order_id, "shipped")
    confirmation = notifications(sessions, order_id)[0]
    assert confirmation.recipient == "ada@example.com"
    assert f"3 x Product SOCK ({skus['SOCK']}) at 4.50" in confirmation.body
    assert "Total: 13.50 EUR" in confirmation.body
    assert view.expected_delivery is not None
    assert f"{view.expected_delivery:%d %B %Y}" in confirmation.body
    # the status says shipped before the "shipped" message is sent: wait for it
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "order_shipped" in kinds)
    (shipped,) = [n for n in notifications(sessions, order_id) if n.kind == "order_shipped"]
    assert view.shipments[0].tracking_number in shipped.body


async def test_repeated_delivery_confirmation_changes_nothing(client, settings, sessions):
    skus = add_products(sessions, {"CAP": 1})
    order_id = await place(client, settings, order_doc([(skus["CAP"], 1)]))
    view = await wait_status(client, order_id, "shipped")
    # a second confirmation of the same shipment changes nothing
    await handle(client, order_id).signal(OrderWorkflow.confirm_delivery, DeliveryConfirmation())
    await handle(client, order_id).signal(OrderWorkflow.confirm_delivery, DeliveryConfirmation())
    view = await wait_status(client, order_id, "delivered")
    assert [e.type for e in view.events].count("shipment_delivered") == 1
    description = await handle(client, order_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING  # waiting out the return window
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: len([n for n in notifications(sessions, order_id) if n.kind == "order_delivered"]) == 1,
    )
