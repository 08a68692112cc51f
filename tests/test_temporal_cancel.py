"""Temporal's own cancellation (the Web UI's "Request Cancellation", `temporal workflow cancel`,
`handle.cancel()`) compensates like support's `cancel`: stock released or put back, authorization
voided, the customer told, status cancelled. Parcels already handed to the carrier are kept. The run
then ends Canceled, after the compensation, in the history for everyone to see."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from config import SandboxMode
from db import SessionFactory
from models import search_attributes as sa
from models import tables as t
from models.fulfilment import WarehouseReport, WarehouseStep
from models.orders import OrderView
from services.fulfilment import submit_warehouse_report
from services.orders import cancel_order, handle, order_view
from tests.helpers import (
    add_products,
    add_warehouse,
    assert_ledger_invariants,
    assert_stock_check_clean,
    cli,
    eventually,
    ledger,
    notification_kinds,
    notifications,
    order_doc,
    place,
    scheduled_activities,
    set_stock,
    stock_movements,
    stock_of,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")

REASON = "cancelled from Temporal by an operator"
LONG = timedelta(minutes=10)


async def cancelled_run(client: Client, order_id: str) -> OrderView:
    """Wait until the run has ended Canceled; its last view (the query still answers a closed run)."""

    async def status() -> WorkflowExecutionStatus | None:
        return (await handle(client, order_id).describe()).status

    await eventually(status, lambda s: s == WorkflowExecutionStatus.CANCELED)
    return await order_view(client, order_id)


async def history_types(client: Client, order_id: str) -> list[str]:
    history = await handle(client, order_id).fetch_history()
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


def assert_cancelled_by_operator(view: OrderView, sessions: SessionFactory, order_id: str) -> None:
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert cancelled.detail.startswith(REASON), cancelled.detail
    assert view.status == "cancelled"
    assert notification_kinds(sessions, order_id)[-1] == "order_cancelled"
    assert_ledger_invariants(sessions, order_id)


async def test_an_order_on_hold(client, settings, sessions):
    sku = add_products(sessions, {"TV": 3}, price="900.00")["TV"]
    order_id = await place(client, settings, order_doc([(sku, 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")

    await handle(client, order_id).cancel(reason="suspicious")

    view = await cancelled_run(client, order_id)
    assert_cancelled_by_operator(view, sessions, order_id)
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert cancelled.detail == f"{REASON}: suspicious"
    assert view.payment_status == "voided"
    assert ledger(sessions, order_id) == {"authorization": Decimal("900.00"), "void": Decimal("900.00")}
    assert stock_of(sessions, sku) == (3, 0)
    assert notification_kinds(sessions, order_id) == ["order_on_hold", "order_cancelled"]
    assert "nothing was charged" in notifications(sessions, order_id)[-1].body
    # the compensation ran before the run ended: the history shows it, then the cancellation
    types = await history_types(client, order_id)
    assert types[-1] == "WORKFLOW_EXECUTION_CANCELED"
    cancel_requested = types.index("WORKFLOW_EXECUTION_CANCEL_REQUESTED")
    assert "ACTIVITY_TASK_COMPLETED" in types[cancel_requested:]
    description = await handle(client, order_id).describe()
    assert description.typed_search_attributes.get(sa.ORDER_STATUS) == "cancelled"
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("cancelled", "voided")


async def test_a_backordered_order(client, sessions, gated_worker):
    settings, _ = await gated_worker(supplier_lead_time=LONG)
    sku = add_products(sessions, {"DESK": 2}, price="120.00")["DESK"]
    set_stock(sessions, sku, "W1", 2, reorder_point=1, reorder_qty=5)
    status, out = await cli(settings, "stock", "adjust", sku, "W1", "-1", "--reason", "cycle count")
    assert status == 0 and "replenishment" in out  # a purchase order is on its way: orders backorder
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    await wait_status(client, order_id, "backordered")

    await handle(client, order_id).cancel()

    view = await cancelled_run(client, order_id)
    assert_cancelled_by_operator(view, sessions, order_id)
    assert view.payment_status == "voided"
    assert ledger(sessions, order_id) == {"authorization": Decimal("360.00"), "void": Decimal("360.00")}
    assert stock_of(sessions, sku) == (1, 0)
    assert stock_movements(sessions, order_id) == []
    assert notification_kinds(sessions, order_id) == ["order_backordered", "order_cancelled"]


async def test_a_confirmed_order_finishes_the_step_in_flight_then_releases(client, sessions, gated_worker):
    settings, gates = await gated_worker("release_shipment")
    sku = add_products(sessions, {"TEE": 5}, price="15.00")["TEE"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    await wait_status(client, order_id, "confirmed")
    assert stock_of(sessions, sku) == (5, 2)

    await handle(client, order_id).cancel()
    gates["release_shipment"].set()  # the pick list goes out; the order stops after it

    view = await cancelled_run(client, order_id)
    assert_cancelled_by_operator(view, sessions, order_id)
    assert view.payment_status == "voided" and [s.status for s in view.shipments] == ["cancelled"]
    assert stock_of(sessions, sku) == (5, 0)
    assert [(m.kind, m.reserved_delta) for m in stock_movements(sessions, order_id)] == [
        ("reserve", 2),
        ("release", -2),
    ]
    assert ledger(sessions, order_id) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}
    assert notification_kinds(sessions, order_id) == ["order_confirmed", "order_cancelled"]
    assert "shipment_picking" not in [e.type for e in view.events]  # it never went on to fulfil
    await assert_stock_check_clean(settings, sku)


async def test_a_picking_order_puts_the_picked_units_back(client, sessions, gated_worker):
    picking = threading.Event()  # the warehouse reported the pick, and the order is booking it
    # a warehouse that reports the pick on its own (the sandbox's one report would bring the pack too)
    settings, gates = await gated_worker(
        ("record_pick", lambda _: picking.set() or True), sandbox_warehouse=SandboxMode.manual
    )
    sku = add_products(sessions, {"MUG": 4}, price="8.00")["MUG"]
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    picked = WarehouseReport(shipment_id=shipment.id, step=WarehouseStep.picked, by="wh-test")
    report = asyncio.create_task(submit_warehouse_report(client, picked))  # answers once acted on
    await eventually(lambda: asyncio.to_thread(picking.wait, 0.1), bool)

    await handle(client, order_id).cancel()
    gates["record_pick"].set()  # the pick in flight completes, and is then undone

    view = await cancelled_run(client, order_id)
    assert "picked" in (await report).detail
    assert_cancelled_by_operator(view, sessions, order_id)
    assert view.payment_status == "voided"
    assert stock_of(sessions, sku) == (4, 0)
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick", "restock"]
    assert [e.detail for e in view.events if e.type == "compensated"] == [
        f"put the picked units of {order_id}-S1 back on the shelf",
        f"release the stock reserved for {order_id}-S1",
        "void the authorization",
    ]
    assert ledger(sessions, order_id) == {"authorization": Decimal("24.00"), "void": Decimal("24.00")}
    await assert_stock_check_clean(settings, sku)


def shipment_in(view: OrderView, warehouse: str) -> Any:
    return next(s for s in view.shipments if s.warehouse == warehouse)


async def test_a_parcel_already_with_the_carrier_is_kept_and_the_rest_undone(client, sessions, gated_worker):
    boot = add_products(sessions, {"BOOT": 0}, price="40.00")["BOOT"]
    scarf = add_products(sessions, {"SCARF": 0}, price="15.50")["SCARF"]
    wx, wy = add_warehouse(sessions, priority=10), add_warehouse(sessions, priority=20)
    set_stock(sessions, boot, wx, 3)
    set_stock(sessions, scarf, wy, 3)
    sending = threading.Event()  # S2's pick list is on its way to its warehouse

    def s2(request: Any) -> bool:
        if request.shipment_id.endswith("-S2"):
            sending.set()
            return True
        return False

    # S2 waits in a call to its warehouse (a party: a regular activity, so S1 goes on meanwhile)
    settings, gates = await gated_worker(("release_shipment", s2))
    order_id = await place(client, settings, order_doc([(boot, 2), (scarf, 1)]))
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: len(v.shipments) == 2 and shipment_in(v, wx).status == "shipped",
    )
    await eventually(lambda: asyncio.to_thread(sending.wait, 0.1), bool)

    await handle(client, order_id).cancel()
    gates["release_shipment"].set()

    view = await cancelled_run(client, order_id)
    assert_cancelled_by_operator(view, sessions, order_id)
    kept, undone = shipment_in(view, wx), shipment_in(view, wy)
    assert (kept.status, undone.status) == ("shipped", "cancelled")
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert f"kept {kept.id} (shipped)" in cancelled.detail and "capture stands" in cancelled.detail
    # money: the shipped parcel stays paid for, the rest of the authorization is voided
    assert view.payment_status == "captured"
    assert ledger(sessions, order_id) == {
        "authorization": Decimal("95.50"),
        "capture": Decimal("80.00"),
        "void": Decimal("15.50"),
    }
    # stock: the shipped boots are gone, the scarf's reservation released
    assert stock_of(sessions, boot, wx) == (1, 0)
    assert stock_of(sessions, scarf, wy) == (3, 0)
    compensated = [e.detail for e in view.events if e.type == "compensated"]
    assert compensated == [
        f"release the stock reserved for {undone.id}",
        "void the authorization",
    ]
    mail = notifications(sessions, order_id)[-1]
    assert "You were charged 80.00 EUR" in mail.body and kept.id in mail.body
    await assert_stock_check_clean(settings, boot, scarf)


async def test_an_order_wholly_with_the_carrier_stays_as_it_is(client, settings, sessions):
    sku = add_products(sessions, {"HAT": 2}, price="20.00")["HAT"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    await wait_status(client, order_id, "shipped")

    await handle(client, order_id).cancel()

    view = await cancelled_run(client, order_id)
    assert (view.status, view.payment_status) == ("shipped", "captured")
    (ended,) = [e for e in view.events if e.type == "run_cancelled"]
    assert ended.detail.startswith(REASON) and "nothing was undone" in ended.detail
    # only the void was attempted, and found nothing left to void: the authorization was captured in full
    assert [e.detail for e in view.events if e.type == "compensated"] == ["void the authorization"]
    assert ledger(sessions, order_id) == {"authorization": Decimal("20.00"), "capture": Decimal("20.00")}
    assert stock_of(sessions, sku) == (1, 0)
    assert "order_cancelled" not in notification_kinds(sessions, order_id)


async def test_support_cancel_and_the_run_still_complete_as_before(client, settings, sessions):
    """A cancellation from Temporal changes nothing for orders that end otherwise: support's cancel
    still completes the run (with the cancelled view as its result)."""
    sku = add_products(sessions, {"TV": 3}, price="900.00")["TV"]
    order_id = await place(client, settings, order_doc([(sku, 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    status, _ = await cli(settings, "cancel", order_id, "--reason", "customer asked")
    assert status == 0
    assert (await handle(client, order_id).result()).status == "cancelled"
    description = await handle(client, order_id).describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED


async def test_a_cancellation_during_supports_cancel_lets_it_finish(client, sessions, gated_worker):
    """Support's cancel is compensating (its void held at the gateway) when an operator cancels the run
    from Temporal: nothing is interrupted, the void completes, and the run ends as support's cancel
    ends it (completed, with the cancelled view)."""
    settings, gates = await gated_worker("void_payment")
    sku = add_products(sessions, {"TV": 3}, price="900.00")["TV"]
    order_id = await place(client, settings, order_doc([(sku, 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")

    support = asyncio.ensure_future(cancel_order(client, order_id, "customer asked", by="alice"))
    await eventually(lambda: scheduled_activities(client, order_id), lambda names: "void_payment" in names)

    await handle(client, order_id).cancel()
    gates["void_payment"].set()

    view = await asyncio.wait_for(support, timeout=30)
    assert (view.status, view.payment_status) == ("cancelled", "voided")
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert cancelled.detail == "cancelled: customer asked (by alice)"
    assert (await handle(client, order_id).result()).status == "cancelled"
    assert ledger(sessions, order_id) == {"authorization": Decimal("900.00"), "void": Decimal("900.00")}
