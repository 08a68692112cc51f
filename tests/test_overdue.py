"""The delivery SLA: a shipped order without delivery confirmation in time is flagged for support, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.notifications import SUPPORT_ADDRESS
from models import search_attributes as sa
from services.orders import confirm_delivery, handle, order_view
from tests.helpers import (
    add_products,
    events,
    eventually,
    notifications,
    order_doc,
    outbox,
    place,
    timers,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


async def test_overdue_delivery_is_flagged_and_the_order_keeps_waiting(client, settings, sessions):
    skus = add_products(sessions, {"DESK": 2})
    order_id = await place(
        client, settings, order_doc([(skus["DESK"], 1)]), delivery_sla=timedelta(seconds=2)
    )
    await wait_status(client, order_id, "shipped")

    view = await eventually(lambda: order_view(client, order_id), lambda v: v.overdue, timeout=15)
    assert view.status == "shipped"
    (shipment,) = view.shipments
    (overdue,) = [e for e in view.events if e.type == "delivery_overdue"]
    assert overdue.detail.startswith(f"{shipment.id}: no delivery confirmation 0:00:02 after shipping")
    await eventually(lambda: outbox(sessions, order_id), lambda k: "delivery_overdue" in k)
    (alert,) = [n for n in notifications(sessions, order_id) if n.kind == "delivery_overdue"]
    assert alert.recipient == SUPPORT_ADDRESS
    assert alert.subject == f"[support] Order {order_id} delivery overdue"
    assert shipment.tracking_number in alert.body
    description = await handle(client, order_id).describe()
    assert description.typed_search_attributes.get(sa.DELIVERY_OVERDUE) is True
    assert description.status == WorkflowExecutionStatus.RUNNING

    await confirm_delivery(client, order_id)
    view = await wait_status(client, order_id, "delivered")
    assert view.overdue  # it was late; the record stays
    assert [e.type for e in view.events].count("delivery_overdue") == 1
    await eventually(lambda: outbox(sessions, order_id), lambda k: "order_delivered" in k)
    assert (await outbox(sessions, order_id)).count("delivery_overdue") == 1


async def test_an_order_delivered_within_its_sla_is_never_flagged(client, settings, sessions):
    skus = add_products(sessions, {"CHAIR": 2})
    order_id = await place(
        client, settings, order_doc([(skus["CHAIR"], 1)]), delivery_sla=timedelta(seconds=3)
    )
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")

    # the delivery ended the SLA's wait: its timer was canceled and can never fire
    (shipment,) = (await order_view(client, order_id)).shipments
    await eventually(
        lambda: timers(client, order_id), lambda t: t.get(f"delivery SLA for {shipment.id}") == "canceled"
    )

    view = await order_view(client, order_id)
    assert not view.overdue
    assert "delivery_overdue" not in [e.type for e in view.events]
    assert "delivery_overdue" not in [e.type for e in events(sessions, order_id)]
    assert "delivery_overdue" not in await outbox(sessions, order_id)
    description = await handle(client, order_id).describe()
    assert description.typed_search_attributes.get(sa.DELIVERY_OVERDUE) is None
