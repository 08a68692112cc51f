"""Cancellation by support at every cancellable state, and its refusal once anything has shipped."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType

from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from cli import dispatch
from models import tables as t
from models.orders import CancelLine, ShipmentLine
from models.steps import EventBatch, EventRecord, ReserveRequest
from services.orders import Refused, cancel_order, handle, order_view
from tests.helpers import (
    add_products,
    eventually,
    ledger,
    money_order_doc,
    notifications,
    order_doc,
    place,
    stock_of,
    update_accepted,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.mark.parametrize(
    ("gate", "state"),
    [
        ("authorize_payment", "received"),  # the card is being authorized
        ("release_shipment", "confirmed"),  # the pick list is on its way to the warehouse
        ("record_pick", "picking"),
    ],
)
async def test_cancel_at_each_state_puts_stock_and_money_back(client, sessions, gated_worker, gate, state):
    settings, gates = await gated_worker(gate)
    skus = add_products(sessions, {"TEE": 5}, price="15.00")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)]))
    await wait_status(client, order_id, state)

    task = asyncio.ensure_future(cancel_order(client, order_id, "customer changed their mind"))

    await eventually(lambda: update_accepted(client, order_id), bool)  # the cancel waits for the step
    gates[gate].set()
    view = await task

    assert view.status == "cancelled"
    assert stock_of(sessions, skus["TEE"]) == (5, 0)  # released, or picked and put back
    money = ledger(sessions, order_id)
    assert money.get("capture", Decimal(0)) == 0
    # the step in flight finishes (the card was authorized), then the authorization is voided
    assert view.payment_status == "voided"
    assert money["authorization"] == Decimal("30.00") and money["void"] == Decimal("30.00")
    assert any(e.type == "order_cancelled" and "customer changed their mind" in e.detail for e in view.events)
    kinds = [n.kind for n in notifications(sessions, order_id)]
    assert "order_cancelled" in kinds
    with sessions() as session:
        reservations = session.query(t.Reservation).filter_by(order_id=order_id).all()
        assert all(r.status in ("released", "restocked") for r in reservations)
    assert (await handle(client, order_id).result()).status == "cancelled"


async def test_cancel_on_hold(client, settings, sessions):
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), review_above=Decimal("500"))
    view = await wait_status(client, order_id, "on_hold")
    assert "above the review limit" in (view.hold_reason or "")
    assert stock_of(sessions, skus["TV"]) == (3, 0)  # nothing reserved while held
    view = await cancel_order(client, order_id, "fraud suspected")
    assert (view.status, view.payment_status) == ("cancelled", "voided")
    assert ledger(sessions, order_id)["authorization"] == Decimal("900.00")


async def test_cancel_refused_after_shipping_changes_nothing(client, settings, sessions, capsys):
    skus = add_products(sessions, {"HAT": 2})
    order_id = await place(client, settings, order_doc([(skus["HAT"], 1)]))
    await wait_status(client, order_id, "shipped")

    with pytest.raises(Refused, match="can no longer be cancelled"):
        await cancel_order(client, order_id, "too late")
    status = await dispatch(["cancel", order_id, "--reason", "too late"], settings, io.StringIO())
    assert status == 1
    assert "request a return instead" in capsys.readouterr().err
    view = await order_view(client, order_id)
    assert view.status == "shipped" and view.payment_status == "captured"
    history = await handle(client, order_id).fetch_history()
    cancels = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name == "cancel"
    ]
    assert cancels == []  # a rejected update writes no history event (the warehouse's reports do)


async def test_cancel_unknown_order(client, settings, capsys):
    assert await dispatch(["cancel", "NOPE-1", "--reason", "x"], settings, io.StringIO()) == 1
    assert "unknown order NOPE-1" in capsys.readouterr().err


async def test_release_continues_held_order(client, settings, sessions):
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    out = io.StringIO()
    assert await dispatch(["release", order_id], settings, out) == 0
    view = await wait_status(client, order_id, "shipped")
    assert any(e.type == "hold_released" for e in view.events)
    assert await dispatch(["release", order_id], settings, io.StringIO()) == 1  # not on hold any more
    await eventually(lambda: order_view(client, order_id), lambda v: v.payment_status == "captured")


async def test_cancel_returns_what_a_lost_workflow_task_booked(client, sessions, gated_worker):
    """A worker dies inside a workflow task after its local steps reserved the stock and wrote the
    events (reserved, confirmed); the task never completes, so the history does not show them. The
    cancellation reaches the next task first and ends the order before it reserves again: the stock
    goes back all the same, and the order's events are the history's, not the lost task's."""
    settings, gates = await gated_worker("authorize_payment")
    skus = add_products(sessions, {"TEE": 5}, price="15.00")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)]))
    await wait_status(client, order_id, "received")  # the card is being authorized

    def admitted() -> bool:  # its row, written by admission (a local step) before the authorization
        with sessions() as session:
            return session.get(t.Order, order_id) is not None

    await eventually(lambda: asyncio.to_thread(admitted), bool)
    before = await order_view(client, order_id)  # its events so far: the lost task's come after them

    # what the lost task's local steps left in the database
    InventoryActivities(sessions).reserve_stock(
        ReserveRequest(
            order_id=order_id,
            shipment_prefix=f"{order_id}-S",
            lines=[ShipmentLine(sku=skus["TEE"], quantity=2)],
        )
    )
    lost = [
        EventRecord(
            order_id=order_id,
            seq=len(before.events) + n,
            at=datetime.now(UTC),
            type=kind,
            detail="written by a task that never completed",
            status="confirmed",
            payment_status="authorized",
        )
        for n, kind in enumerate(["payment_authorized", "stock_reserved", "order_confirmed"], start=1)
    ]
    OrderActivities(sessions).record_events(EventBatch(events=lost))
    assert stock_of(sessions, skus["TEE"]) == (5, 2)

    task = asyncio.ensure_future(cancel_order(client, order_id, "customer changed their mind"))
    await eventually(lambda: update_accepted(client, order_id), bool)
    gates["authorize_payment"].set()
    view = await task

    assert view.status == "cancelled" and view.payment_status == "voided"
    assert stock_of(sessions, skus["TEE"]) == (5, 0)
    with sessions() as session:
        reservations = session.query(t.Reservation).filter_by(order_id=order_id).all()
        assert reservations and all(r.status == "released" for r in reservations)
        assert all(s.status == "cancelled" for s in session.query(t.Shipment).filter_by(order_id=order_id))
    assert any(
        e.type == "compensated" and e.detail == "return the stock a lost workflow task left with the order"
        for e in view.events
    )
    await handle(client, order_id).result()  # every event written

    with sessions() as session:
        written = session.query(t.OrderEvent).filter_by(order_id=order_id).order_by(t.OrderEvent.seq).all()
        assert [(e.type, e.detail) for e in written] == [(e.type, e.detail) for e in view.events]
        assert session.get(t.Order, order_id).status == "cancelled"


async def test_a_cancel_with_nothing_lost_says_nothing_of_it(client, settings, sessions):
    """The safety net above finds nothing on an ordinary cancellation, and is not in its events."""
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    view = await cancel_order(client, order_id, "fraud suspected")
    assert [e.detail for e in view.events if e.type == "compensated"] == ["void the authorization"]


# ---- partial cancellation (issue 26) ----


async def test_a_partial_cancel_in_the_release_window_ships_the_rest_and_charges_only_it(
    client, settings, sessions
):
    from domain.stock import check_stock
    from tests.helpers import assert_ledger_invariants

    skus = add_products(sessions, {"MUG": 5, "LAMP": 5}, price="10.00")
    mug, lamp = skus["MUG"], skus["LAMP"]
    order_id = await place(client, settings, money_order_doc(mug, lamp), release_delay=timedelta(seconds=6))
    await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)

    out = io.StringIO()
    status = await dispatch(
        ["cancel", order_id, "--line", f"{mug}=1", "--reason", "one is enough"], settings, out
    )
    assert status == 0, out.getvalue()
    view = await order_view(client, order_id)
    (shipment,) = view.shipments
    assert view.status == "confirmed" and [(x.sku, x.quantity) for x in shipment.lines] == [
        (lamp, 1),
        (mug, 2),
    ]
    # 50.40 split 33.60 : 10.80 (kept goods : cancelled goods), rounded down: 38.14 kept, 12.26 cancelled
    assert shipment.amount == Decimal("38.14")
    assert stock_of(sessions, mug) == (5, 2)  # one reserved unit released
    assert "12.26" in out.getvalue() or "38.14" in out.getvalue()
    assert "lines_cancelled_by_request" in [n.kind for n in notifications(sessions, order_id)]

    await wait_status(client, order_id, "shipped")  # the sandbox warehouse sends the rest
    assert await dispatch(["deliver", order_id], settings, io.StringIO()) == 0
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: any(e.type == "authorization_released" for e in v.events),
    )
    money = ledger(sessions, order_id)
    assert money["authorization"] == Decimal("50.40") and money["capture"] == Decimal("38.14")
    assert money["void"] == Decimal("12.26")  # what was authorized and not charged
    assert stock_of(sessions, mug) == (3, 0) and stock_of(sessions, lamp) == (4, 0)
    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.authorized >= totals.captured >= totals.refunded
    assert check_stock(sessions) == []


async def test_a_partial_cancel_after_the_pick_puts_units_back_and_refusals_move_nothing(
    client, sessions, gated_worker
):
    from domain.stock import check_stock
    from models.fulfilment import WarehouseStep
    from services.fulfilment import submit_warehouse_report
    from tests.test_parties import manual_worker, report

    settings = await manual_worker(gated_worker)
    skus = add_products(sessions, {"BOOK": 4}, price="15.00")
    sku = skus["BOOK"]
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.picked))
    await eventually(lambda: order_view(client, order_id), lambda v: v.shipments[0].status == "picked")
    assert stock_of(sessions, sku) == (1, 0)

    for lines, refusal in (
        ([(sku, 4)], f"only 3 x {sku} of order {order_id} can still be cancelled, not 4"),
        ([("NOT-ON-IT", 1)], "is not on order"),
    ):
        with pytest.raises(Refused, match=refusal):
            await cancel_order(client, order_id, "x", lines=[CancelLine(sku=s, quantity=q) for s, q in lines])
    assert stock_of(sessions, sku) == (1, 0)

    view = await cancel_order(client, order_id, "too many", lines=[CancelLine(sku=sku, quantity=2)])
    assert view.shipments[0].amount == Decimal("15.00") and view.shipments[0].lines[0].quantity == 1
    assert stock_of(sessions, sku) == (3, 0)  # two picked units back on the shelf
    assert check_stock(sessions) == []

    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[400]))
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    await wait_status(client, order_id, "shipped")
    with pytest.raises(Refused, match="can no longer be cancelled"):  # handed over
        await cancel_order(client, order_id, "late", lines=[CancelLine(sku=sku, quantity=1)])
    assert ledger(sessions, order_id)["capture"] == Decimal("15.00")
    assert check_stock(sessions) == []
