"""Warehouses and carriers as parties: the release window, reports in order (and refused out of it),
short picks, tracking events, lost parcels and support's choice — with the stock ledger and the
money exact after each. A manual warehouse and carrier: the test is the party, through the same
client layer the CLI, the HTTP API and the sandbox parties use."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus

from config import SandboxMode
from domain import stock
from domain.stock import check_stock
from models import tables as t
from models.fulfilment import CarrierEvent, PickedLine, ResolveRequest, WarehouseReport, WarehouseStep
from models.shipping import CarrierEventType, Resolution, ShortPickPolicy
from models.workflow_names import sandbox_carrier_workflow_id
from services.fulfilment import (
    ReportTooEarly,
    resolve_shipment,
    submit_carrier_event,
    submit_warehouse_report,
)
from services.orders import Refused, cancel_order, confirm_delivery, handle, order_view
from tests.helpers import (
    add_products,
    add_warehouse,
    cli,
    eventually,
    ledger,
    order_doc,
    place,
    scheduled_activities,
    set_stock,
    stock_movements,
    stock_of,
    update_accepted,
    wait_status,
)
from tests.test_replenishment import open_purchase_order

MANUAL = {"sandbox_warehouse": SandboxMode.manual, "sandbox_carrier": SandboxMode.manual}


async def manual_worker(gated_worker, **overrides):  # type: ignore[no-untyped-def]
    settings, _ = await gated_worker(**MANUAL, **overrides)
    return settings


def report(shipment_id: str, step: WarehouseStep, **fields) -> WarehouseReport:  # type: ignore[no-untyped-def]
    return WarehouseReport(shipment_id=shipment_id, step=step, by="wh-anna", **fields)


def event(tracking: str, kind: CarrierEventType, **fields) -> CarrierEvent:  # type: ignore[no-untyped-def]
    return CarrierEvent(
        tracking_number=tracking, type=kind, event_id=uuid.uuid4().hex, at=datetime.now(UTC), **fields
    )


async def shipment_status(client, order_id: str, shipment_id: str, *statuses: str):  # type: ignore[no-untyped-def]
    async def probe():  # type: ignore[no-untyped-def]
        view = await order_view(client, order_id)
        return next(s for s in view.shipments if s.id == shipment_id)

    return await eventually(probe, lambda s: s.status in statuses)


async def hand_over(client, shipment_id: str, parcels: list[int] | None = None, pick: bool = True) -> str:  # type: ignore[no-untyped-def]
    """Pick in full (unless picked already), pack, hand over: returns the tracking number."""
    if pick:
        await submit_warehouse_report(client, report(shipment_id, WarehouseStep.picked))
    packed = await submit_warehouse_report(
        client, report(shipment_id, WarehouseStep.packed, parcels_g=parcels or [900])
    )
    assert "label" in packed.detail
    await submit_warehouse_report(client, report(shipment_id, WarehouseStep.handed_over))
    return packed.detail.rsplit("tracking ", 1)[1]


def assert_ledgers_exact(sessions) -> None:  # type: ignore[no-untyped-def]
    assert check_stock(sessions) == []


# ---- the release window ----


async def test_a_cancel_inside_the_release_window_undoes_only_reservation_and_authorization(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker, release_delay=timedelta(minutes=10))
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]), release_delay=timedelta(minutes=10))
    view = await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)
    assert view.status == "confirmed" and view.releases_at > datetime.now(UTC) + timedelta(minutes=9)
    assert [s.status for s in view.shipments] == ["allocated"]

    view = await cancel_order(client, order_id, "changed my mind")

    assert view.status == "cancelled" and view.payment_status == "voided"
    assert stock_of(sessions, sku) == (5, 0)
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "release"]  # nothing picked
    money = ledger(sessions, order_id)
    assert money["authorization"] == Decimal("60.00") and "void" in money and "capture" not in money
    with sessions() as session:
        assert session.get(t.Shipment, view.shipments[0].id).released_at is None  # never sent


async def test_cancel_is_refused_once_the_carrier_has_the_parcel(client, sessions, gated_worker):
    settings = await manual_worker(gated_worker)
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.picked))
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[400]))
    assert (
        await order_view(client, order_id)
    ).status == "packed"  # packed, not handed over: still cancellable
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    await wait_status(client, order_id, "shipped")

    with pytest.raises(Refused, match="can no longer be cancelled"):
        await cancel_order(client, order_id, "too late")
    assert ledger(sessions, order_id)["capture"] == Decimal("30.00")


async def test_a_cancel_after_packing_puts_the_units_back_and_cancels_the_booking(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker)
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.picked))
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[700]))

    view = await cancel_order(client, order_id, "customer called")

    assert view.status == "cancelled" and view.payment_status == "voided"
    assert stock_of(sessions, sku) == (5, 0)
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick", "restock"]
    with sessions() as session:
        booking = session.scalar(
            select(t.CarrierBooking).where(
                t.CarrierBooking.tracking_number == view.shipments[0].tracking_number
            )
        )
        assert booking is not None and booking.status == "cancelled"
    with pytest.raises(Refused, match="cancelled|closed"):  # the warehouse's late report changes nothing
        await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    assert_ledgers_exact(sessions)


# ---- one confirmation of pick and pack ----


async def test_a_pack_reported_straight_after_release_confirms_the_pick_in_one_report(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker)
    skus = add_products(sessions, {"LAMP": 5, "BULB": 5}, price="30.00")
    order_id = await place(client, settings, order_doc([(skus["LAMP"], 2), (skus["BULB"], 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments

    def pack_and_pick(grams: int, lamps: int) -> WarehouseReport:  # the bulb in full, lamps as found
        lines = [PickedLine(sku=skus["LAMP"], quantity=lamps)]
        return report(shipment.id, WarehouseStep.packed, parcels_g=[grams], lines=lines)

    with pytest.raises(Refused, match="3 picked but 2 ordered"):
        await submit_warehouse_report(client, pack_and_pick(900, lamps=3))
    # the WMS confirms once: one lamp found of two (the bulb in full), packed into one parcel
    done = await submit_warehouse_report(client, pack_and_pick(850, lamps=1))

    assert "2 units picked" in done.detail and "short: 1 x " + skus["LAMP"] in done.detail
    assert "packed; label" in done.detail
    view = await order_view(client, order_id)
    assert view.status == "picking"  # the lamp not found went to a new shipment
    s1, s2 = view.shipments
    assert s1.status == "packed" and s1.parcels_g == [850]
    assert {(x.sku, x.quantity) for x in s1.lines} == {(skus["LAMP"], 1), (skus["BULB"], 1)}
    assert (s2.status, s2.replaces, [(x.sku, x.quantity) for x in s2.lines]) == (
        "released",
        s1.id,
        [(skus["LAMP"], 1)],
    )
    types = [e.type for e in view.events]
    assert types.count("shipment_picked") == 1 and types.count("shipment_packed") == 1
    for step in (WarehouseStep.picked, WarehouseStep.packed):  # both were reported, once
        with pytest.raises(Refused, match=f"duplicate: .* already reported {step.value}"):
            await submit_warehouse_report(client, report(s1.id, step, parcels_g=[850]))

    in_full = await submit_warehouse_report(client, report(s2.id, WarehouseStep.packed, parcels_g=[400]))
    assert "1 unit picked" in in_full.detail and "short" not in in_full.detail
    for shipment in (s1, s2):
        await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    await wait_status(client, order_id, "shipped")
    lamp = [m.kind for m in stock_movements(sessions, order_id) if m.sku == skus["LAMP"]]
    assert lamp.count("pick") == 2
    assert ledger(sessions, order_id)["capture"] == Decimal("90.00")  # every unit, once
    assert_ledgers_exact(sessions)


async def test_a_report_sent_while_the_pick_list_is_still_on_its_way_is_taken_and_answered_after_the_release(
    client, sessions, gated_worker
):
    """A quick WMS confirms pick and pack before the order has seen its release call return: the report
    shows the list arrived, so it is taken (not refused as too early) and answered once the order has
    recorded the release and booked the pick and the parcels."""
    settings, gates = await gated_worker("release_shipment", **MANUAL)
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    # the release step has begun and is held at its gate: the pick list is on its way
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: bool(v.shipments) and v.shipments[0].released_at is not None,
    )
    (shipment,) = view.shipments
    assert (view.status, shipment.status) == ("confirmed", "allocated")
    sent = asyncio.create_task(
        submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[900]))
    )

    async def taken() -> bool:
        if sent.done():
            sent.result()  # answered already, or refused: either fails below with what came back
            raise AssertionError(f"answered before the release returned: {sent.result()}")
        return await update_accepted(client, order_id)

    await eventually(taken, bool)
    assert (await order_view(client, order_id)).shipments[0].status == "allocated"  # nothing acted on yet
    gates["release_shipment"].set()
    done = await asyncio.wait_for(sent, 30)

    assert "2 units picked" in done.detail and "packed; label" in done.detail
    view = await wait_status(client, order_id, "packed")
    types = [e.type for e in view.events]
    released, picked, packed = (
        types.index(k) for k in ("shipment_released", "shipment_picked", "shipment_packed")
    )
    assert released < picked < packed  # the story in the order things happened to the order
    with sessions() as session:
        assert session.get(t.Shipment, shipment.id).released_at is not None
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    await wait_status(client, order_id, "shipped")
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick"]
    assert ledger(sessions, order_id)["capture"] == Decimal("60.00")
    assert_ledgers_exact(sessions)


# ---- reports in order, and refused out of it ----


async def test_duplicate_and_out_of_order_reports_are_refused_and_change_nothing(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker)
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments

    with pytest.raises(Refused, match="out of order: .* is released, not packed"):
        await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    with pytest.raises(Refused, match="picked nothing"):  # a pack that confirms the pick: of something
        await submit_warehouse_report(
            client,
            report(
                shipment.id, WarehouseStep.packed, parcels_g=[100], lines=[PickedLine(sku=sku, quantity=0)]
            ),
        )
    with pytest.raises(Refused, match="3 picked but 2 ordered"):
        await submit_warehouse_report(
            client, report(shipment.id, WarehouseStep.picked, lines=[PickedLine(sku=sku, quantity=3)])
        )
    done = await submit_warehouse_report(client, report(shipment.id, WarehouseStep.picked))
    assert "2 units picked" in done.detail
    with pytest.raises(Refused, match="duplicate: .* already reported picked"):
        await submit_warehouse_report(client, report(shipment.id, WarehouseStep.picked))
    with pytest.raises(Refused, match="out of order"):
        await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    packed = await submit_warehouse_report(
        client, report(shipment.id, WarehouseStep.packed, parcels_g=[500, 450])
    )
    tracking = packed.detail.rsplit("tracking ", 1)[1]

    with pytest.raises(ReportTooEarly, match="not been handed over"):  # to be sent again after it
        await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.in_transit))
    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    first = event(tracking, CarrierEventType.in_transit, place="Leeds hub")
    await submit_carrier_event(client, sessions, first)
    with pytest.raises(Refused, match="duplicate: event"):
        await submit_carrier_event(client, sessions, first)
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.delivered))
    view = await wait_status(client, order_id, "delivered")
    with pytest.raises(Refused, match="already delivered"):
        await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.out_for_delivery))

    (s,) = view.shipments
    assert [e.type for e in s.tracking] == ["in_transit", "delivered"] and s.tracking[0].place == "Leeds hub"
    assert s.parcels_g == [500, 450] and s.weight_g == 950
    types = [e.type for e in view.events]
    assert types.count("shipment_picked") == 1 and types.count("shipment_packed") == 1
    with sessions() as session:
        kept = session.scalars(
            select(t.TrackingEvent.type).where(t.TrackingEvent.tracking_number == tracking)
        ).all()
    assert sorted(kept) == ["delivered", "in_transit"]
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick"]
    assert ledger(sessions, order_id)["capture"] == Decimal("60.00")


# ---- short picks ----


async def test_a_short_pick_is_reallocated_to_another_warehouse(client, sessions, gated_worker):
    settings = await manual_worker(gated_worker)
    skus = add_products(sessions, {"CHAIR": 3}, price="40.00")
    sku = skus["CHAIR"]
    other = add_warehouse(sessions, priority=500)
    set_stock(sessions, sku, other, 4)
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    (first,) = (await wait_status(client, order_id, "picking")).shipments

    done = await submit_warehouse_report(
        client, report(first.id, WarehouseStep.picked, lines=[PickedLine(sku=sku, quantity=1)])
    )

    assert f"re-allocated to {order_id}-S2 ({other})" in done.detail
    view = await order_view(client, order_id)
    second = next(s for s in view.shipments if s.id == f"{order_id}-S2")
    assert second.replaces == first.id and second.lines[0].quantity == 2 and second.amount == Decimal("80.00")
    assert view.shipments[0].amount == Decimal("40.00")
    assert stock_of(sessions, sku) == (0, 0)  # 3 on the books, 1 found and picked: the count corrected by -2
    adjust = [m for m in stock_movements(sessions, order_id) if m.kind == "adjust"]
    assert len(adjust) == 1 and adjust[0].on_hand_delta == -2 and first.id in (adjust[0].reason or "")
    await hand_over(client, first.id, pick=False)
    await shipment_status(client, order_id, second.id, "released")
    await hand_over(client, second.id)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")
    money = ledger(sessions, order_id)
    assert money["capture"] == Decimal("120.00") and "void" not in money
    assert stock_of(sessions, sku, other) == (2, 0)
    assert_ledgers_exact(sessions)


async def test_a_short_pick_goes_elsewhere_first_and_asks_for_a_count_of_the_short_shelf(
    client, sessions, gated_worker
):
    """The short warehouse still shows units on its books (the shelf count is suspect): the rest comes
    from another warehouse, and the short location is flagged for a cycle count until someone counts."""
    settings = await manual_worker(gated_worker)
    sku = add_products(sessions, {"LAMP": 10}, price="25.00")["LAMP"]  # W1, the first choice
    other = add_warehouse(sessions, priority=500)
    set_stock(sessions, sku, other, 4)
    order_id = await place(client, settings, order_doc([(sku, 3)]))
    (first,) = (await wait_status(client, order_id, "picking")).shipments
    assert first.warehouse == "W1"

    done = await submit_warehouse_report(
        client, report(first.id, WarehouseStep.picked, lines=[PickedLine(sku=sku, quantity=1)])
    )

    assert f"re-allocated to {order_id}-S2 ({other})" in done.detail
    assert stock_of(sessions, sku) == (7, 0)  # 10 - 1 picked - 2 written off: 7 still on W1's books
    assert stock_of(sessions, sku, other) == (4, 2)
    status, out = await cli(settings, "stock", "--sku", sku)
    w1 = next(line for line in out.splitlines() if " W1 " in f" {line} ")
    assert status == 0 and f"due: short pick of {first.id}" in w1, out
    assert "due:" not in next(line for line in out.splitlines() if other in line)

    # the count: the books were right after all (0 moves nothing); a second 0 is refused
    status, out = await cli(settings, "stock", "adjust", sku, "W1", "0", "--reason", "counted 7")
    assert status == 0, out
    assert stock.stock_levels(sessions, sku)[0].count_requested_at is None
    assert stock_of(sessions, sku) == (7, 0)
    status, _ = await cli(settings, "stock", "adjust", sku, "W1", "0", "--reason", "again")
    assert status == 2
    assert_ledgers_exact(sessions)


async def test_a_short_pick_with_nothing_elsewhere_cancels_those_lines_and_charges_only_what_ships(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker, short_pick_policy=ShortPickPolicy.cancel_lines)
    skus = add_products(sessions, {"PEN": 2, "INK": 5}, price="5.00")
    order_id = await place(
        client,
        settings,
        order_doc([(skus["PEN"], 2), (skus["INK"], 1)]),
    )
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments

    done = await submit_warehouse_report(
        client, report(shipment.id, WarehouseStep.picked, lines=[PickedLine(sku=skus["PEN"], quantity=0)])
    )

    assert "those lines cancelled" in done.detail
    await hand_over(client, shipment.id, pick=False)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    view = await wait_status(client, order_id, "delivered")
    # what was not charged is released on the card once every shipment is settled (just after delivery)
    money = await eventually(lambda: asyncio.to_thread(ledger, sessions, order_id), lambda m: "void" in m)
    assert money["authorization"] == Decimal("15.00") and money["capture"] == Decimal("5.00")
    assert view.payment.captured == Decimal("5.00")
    assert any(e.type == "lines_cancelled" and "2 x " + skus["PEN"] in e.detail for e in view.events)
    assert stock_of(sessions, skus["PEN"]) == (0, 0)  # the shelf had none: its count is now right
    assert_ledgers_exact(sessions)


async def test_a_short_pick_is_backordered_when_stock_is_on_order_and_served_when_it_arrives(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker, supplier_lead_time=timedelta(minutes=10))
    sku = add_products(sessions, {"LADDER": 3}, price="25.00")["LADDER"]
    set_stock(sessions, sku, "W1", 3, reorder_point=2, reorder_qty=5)
    await open_purchase_order(settings, sessions, sku)  # 2 on the shelf, 5 on order
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments

    done = await submit_warehouse_report(
        client, report(shipment.id, WarehouseStep.picked, lines=[PickedLine(sku=sku, quantity=1)])
    )

    assert f"backordered as {order_id}-B1 (on order)" in done.detail
    await wait_status(client, order_id, "backordered")
    await hand_over(client, shipment.id, pick=False)  # what was found goes out meanwhile
    status, out = await cli(settings, "stock", "receive", sku, "W1", "2")  # goods in: offered to backorders
    assert status == 0 and f"backorders now reserved: {order_id}" in out
    await shipment_status(client, order_id, f"{order_id}-S2", "released")
    await hand_over(client, f"{order_id}-S2")
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    view = await wait_status(client, order_id, "delivered")
    assert {s.id: s.status for s in view.shipments}[f"{order_id}-B1"] == "resolved"
    assert ledger(sessions, order_id)["capture"] == Decimal("50.00")
    assert_ledgers_exact(sessions)


# ---- the carrier: lost parcels, failed attempts ----


async def delivered_to_carrier(client, sessions, settings, price: str = "30.00"):  # type: ignore[no-untyped-def]
    sku = add_products(sessions, {"LAMP": 5}, price=price)["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    tracking = await hand_over(client, shipment.id)
    await wait_status(client, order_id, "shipped")
    return sku, order_id, shipment.id, tracking


async def test_a_lost_parcel_reshipped_by_support(client, sessions, gated_worker):
    settings = await manual_worker(gated_worker)
    sku, order_id, shipment_id, tracking = await delivered_to_carrier(client, sessions, settings)
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.in_transit))
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.lost, place="Leeds hub"))
    view = await wait_status(client, order_id, "delivery_exception")
    assert view.shipments[0].status == "exception"

    view = await resolve_shipment(
        client,
        order_id,
        ResolveRequest(shipment_id=shipment_id, resolution=Resolution.reship, by="support-ana"),
    )

    assert view.shipments[0].status == "resolved" and view.shipments[0].resolution == "reship"
    new = f"{order_id}-S2"
    await shipment_status(client, order_id, new, "released")
    await hand_over(client, new)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")
    money = ledger(sessions, order_id)
    assert money["capture"] == Decimal("30.00") and "refund" not in money  # charged once
    with sessions() as session:
        claim = session.scalar(select(t.CarrierClaim).where(t.CarrierClaim.shipment_id == shipment_id))
    assert claim is not None and claim.reason == "lost" and claim.amount == Decimal("30.00")
    assert stock_of(sessions, sku) == (3, 0)  # two units left the shelf: one lost, one delivered
    with pytest.raises(Refused, match="no lost parcel"):
        await resolve_shipment(
            client, order_id, ResolveRequest(shipment_id=shipment_id, resolution=Resolution.refund)
        )
    assert_ledgers_exact(sessions)


async def test_a_lost_parcel_refunded_ends_the_order_with_nothing_delivered(client, sessions, gated_worker):
    settings = await manual_worker(gated_worker)
    _, order_id, shipment_id, tracking = await delivered_to_carrier(client, sessions, settings)
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.lost))
    await wait_status(client, order_id, "delivery_exception")

    await resolve_shipment(
        client, order_id, ResolveRequest(shipment_id=shipment_id, resolution=Resolution.refund)
    )

    view = await wait_status(client, order_id, "completed")
    assert view.payment_status == "refunded"
    money = ledger(sessions, order_id)
    assert money["capture"] == money["refund"] == Decimal("30.00")
    assert await handle(client, order_id).result() is not None


async def test_no_choice_within_the_exception_timeout_refunds_the_parcel(client, sessions, gated_worker):
    settings = await manual_worker(gated_worker, exception_timeout=timedelta(seconds=2))
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 1)]), exception_timeout=timedelta(seconds=2))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    tracking = await hand_over(client, shipment.id)
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.returned_to_sender))

    view = await wait_status(client, order_id, "completed")

    assert view.shipments[0].resolution == "refund"
    assert any("no choice within" in e.detail for e in view.events)
    assert ledger(sessions, order_id)["refund"] == Decimal("30.00")
    assert stock_of(sessions, sku) == (5, 0)  # returned to sender: back on the shelf
    assert_ledgers_exact(sessions)


async def test_three_failed_delivery_attempts_bring_the_parcel_back_for_support_to_decide(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker)
    sku, order_id, shipment_id, tracking = await delivered_to_carrier(client, sessions, settings)
    for attempt in (1, 2):
        await submit_carrier_event(
            client, sessions, event(tracking, CarrierEventType.delivery_failed, attempt=attempt)
        )
    assert (await order_view(client, order_id)).status == "shipped"
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.delivery_failed, attempt=3))

    view = await wait_status(client, order_id, "delivery_exception")
    (s,) = view.shipments
    assert s.delivery_attempts == 3 and "3 failed delivery attempts" in (s.trouble or "")
    await resolve_shipment(
        client, order_id, ResolveRequest(shipment_id=shipment_id, resolution=Resolution.refund)
    )
    await wait_status(client, order_id, "completed")
    assert stock_of(sessions, sku) == (5, 0)  # it came back to the warehouse
    assert_ledgers_exact(sessions)


async def test_a_carrier_exception_is_a_delivery_exception_until_the_parcel_moves_again(
    client, sessions, gated_worker
):
    settings = await manual_worker(gated_worker)
    _, order_id, _, tracking = await delivered_to_carrier(client, sessions, settings)
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.exception, place="customs"))
    view = await wait_status(client, order_id, "delivery_exception")
    assert view.shipments[0].trouble == "customs"
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.out_for_delivery))
    await wait_status(client, order_id, "shipped")
    await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.delivered))
    view = await wait_status(client, order_id, "delivered")
    # the story: scans that left the parcel's status as it was are scans, not a second `shipped`
    story = [
        (e.type, e.detail.split(": ", 1)[-1]) for e in view.events if e.detail.startswith(f"{order_id}-S1")
    ]
    assert [kind for kind, _ in story if kind.startswith("parcel_")] == [
        "parcel_held_up",
        "parcel_out_for_delivery",
    ], story
    assert ("parcel_held_up", "exception at customs") in story
    assert [kind for kind, _ in story].count("shipment_shipped") == 1  # the handover alone


# ---- the sandbox parties, unattended ----


async def test_the_sandbox_warehouse_and_carrier_take_an_order_to_delivered_by_themselves(
    client, sessions, gated_worker
):
    settings, _ = await gated_worker(
        sandbox_warehouse=SandboxMode.auto,
        sandbox_carrier=SandboxMode.auto,
        sandbox_pick_time=timedelta(milliseconds=200),
        sandbox_pack_time=timedelta(milliseconds=200),
        sandbox_transit_time=timedelta(seconds=1),
    )
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))

    view = await wait_status(client, order_id, "delivered", timeout=60)

    (s,) = view.shipments
    assert [e.type for e in s.tracking] == ["in_transit", "out_for_delivery", "delivered"]
    assert s.parcels_g and s.weight_g == sum(s.parcels_g)
    assert ledger(sessions, order_id)["capture"] == Decimal("60.00")
    assert stock_of(sessions, sku) == (3, 0)
    assert_ledgers_exact(sessions)


# ---- tracking asked for with the label ----


async def test_the_carrier_is_asked_to_track_with_the_label_and_reports_from_the_handover_on(
    client, sessions, gated_worker
):
    settings, _ = await gated_worker(
        sandbox_warehouse=SandboxMode.manual,
        sandbox_carrier=SandboxMode.auto,
        sandbox_transit_time=timedelta(seconds=1.5),
        sandbox_loss_rate=0.0,
    )
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 2)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    packed = await submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[900]))
    tracking = packed.detail.rsplit("tracking ", 1)[1]

    # the carrier has the parcel's tracking from the label on: its run waits to collect the parcel
    carrier = client.get_workflow_handle(sandbox_carrier_workflow_id(tracking))
    assert (await carrier.describe()).status == WorkflowExecutionStatus.RUNNING
    # a scan before the warehouse's handover report is "too early" (sent again later), not refused for good
    with pytest.raises(ReportTooEarly, match="not been handed over yet"):
        await submit_carrier_event(client, sessions, event(tracking, CarrierEventType.in_transit))
    assert (await order_view(client, order_id)).shipments[0].tracking == []

    await submit_warehouse_report(client, report(shipment.id, WarehouseStep.handed_over))
    view = await wait_status(client, order_id, "delivered")

    (s,) = view.shipments
    assert [e.type for e in s.tracking] == ["in_transit", "out_for_delivery", "delivered"]
    assert s.shipped_at is not None and all(e.at >= s.shipped_at for e in s.tracking)  # from the pickup on
    assert await carrier.result() == "delivered"
    steps = await scheduled_activities(client, order_id)
    assert (
        "book_carrier" in steps and "start_tracking" not in steps
    )  # asked with the label, no step of its own
    assert ledger(sessions, order_id)["capture"] == Decimal("60.00")
    assert_ledgers_exact(sessions)


async def test_a_parcel_whose_booking_is_cancelled_before_the_handover_is_never_collected(
    client, sessions, gated_worker
):
    settings, _ = await gated_worker(
        sandbox_warehouse=SandboxMode.manual, sandbox_carrier=SandboxMode.auto, sandbox_loss_rate=0.0
    )
    sku = add_products(sessions, {"LAMP": 5}, price="30.00")["LAMP"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    (shipment,) = (await wait_status(client, order_id, "picking")).shipments
    packed = await submit_warehouse_report(client, report(shipment.id, WarehouseStep.packed, parcels_g=[900]))
    tracking = packed.detail.rsplit("tracking ", 1)[1]

    await cancel_order(client, order_id, "customer called")

    carrier = client.get_workflow_handle(sandbox_carrier_workflow_id(tracking))
    assert await asyncio.wait_for(carrier.result(), 60) == "booking cancelled"
    view = await order_view(client, order_id)
    assert view.status == "cancelled" and view.shipments[0].tracking == []
    assert_ledgers_exact(sessions)
