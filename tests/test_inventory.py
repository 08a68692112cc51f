"""Stock: allocation across warehouses, picking and releasing, and the ledger commands (check, adjust,
receive), on the real stack."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from temporalio.client import WorkflowUpdateStage

from db import SessionFactory
from domain.allocation import plan_allocation
from models import tables as t
from models.orders import CancelRequest, OrderView, ShipmentView
from models.workflow_names import OrderUpdate
from services.orders import handle, order_view
from tests.helpers import (
    add_products,
    add_warehouse,
    assert_ledger_invariants,
    assert_stock_check_clean,
    cli,
    eventually,
    notifications,
    order_doc,
    place,
    set_stock,
    stock_movements,
    stock_of,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


def movements_of(sessions: SessionFactory, sku: str) -> list[t.StockMovement]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.StockMovement).where(t.StockMovement.sku == sku).order_by(t.StockMovement.id)
            )
        )


def movement_sums(sessions: SessionFactory, sku: str, warehouse: str = "W1") -> tuple[int, int]:
    moves = [m for m in movements_of(sessions, sku) if m.warehouse == warehouse]
    return sum(m.on_hand_delta for m in moves), sum(m.reserved_delta for m in moves)


def shipment_in(view: OrderView, warehouse: str) -> ShipmentView:
    (shipment,) = [s for s in view.shipments if s.warehouse == warehouse]
    return shipment


# ---- plan_allocation ----


def test_one_warehouse_that_ships_everything_is_preferred_over_one_with_more():
    available = {("A", "W1"): 50, ("A", "W2"): 2, ("B", "W2"): 1}
    plan, short = plan_allocation({"A": 2, "B": 1}, available, ["W1", "W2"])
    assert (plan, short) == ({"W2": {"A": 2, "B": 1}}, {})


def test_ties_go_to_the_warehouse_first_in_preference_order():
    available = {("A", w): 5 for w in ("W1", "W2", "W3")}
    assert plan_allocation({"A": 2}, available, ["W3", "W1", "W2"]) == ({"W3": {"A": 2}}, {})
    assert plan_allocation({"A": 2}, available, ["W2", "W3", "W1"]) == ({"W2": {"A": 2}}, {})
    # a split too: equal coverage goes to the more preferred warehouse
    split = {("A", "W1"): 1, ("A", "W2"): 1, ("A", "W3"): 1}
    assert plan_allocation({"A": 2}, split, ["W3", "W2", "W1"]) == ({"W3": {"A": 1}, "W2": {"A": 1}}, {})


def test_split_uses_the_fewest_warehouses():
    # three warehouses hold stock, two suffice: W3 ships B and C, W1 ships A; W2 is not used
    available = {("A", "W1"): 2, ("B", "W2"): 2, ("B", "W3"): 2, ("C", "W3"): 2}
    plan, short = plan_allocation({"A": 2, "B": 2, "C": 2}, available, ["W1", "W2", "W3"])
    assert short == {}
    assert plan == {"W3": {"B": 2, "C": 2}, "W1": {"A": 2}}


def test_split_uses_the_fewest_warehouses_even_when_the_largest_is_not_part_of_it():
    available = {("A", "W1"): 2, ("B", "W1"): 2, ("A", "W2"): 3, ("B", "W3"): 3}
    plan, short = plan_allocation({"A": 3, "B": 3}, available, ["W1", "W2", "W3"])
    assert short == {}
    assert plan == {"W2": {"A": 3}, "W3": {"B": 3}}  # greedy: W1 (2+2), then W2 (1) and W3 (1)


def test_shortage_is_reported_per_sku():
    available = {("A", "W1"): 2, ("A", "W2"): 2, ("B", "W1"): 9}
    plan, short = plan_allocation({"A": 5, "B": 1, "C": 3}, available, ["W1", "W2"])
    assert short == {"A": 1, "C": 3}
    assert sum(part.get("A", 0) for part in plan.values()) == 4  # everything there is, not usable
    assert plan_allocation({"A": 1}, {}, ["W1"]) == ({}, {"A": 1})


# ---- allocation through the worker ----


async def test_split_order_ships_from_two_warehouses_and_is_delivered_in_parts(
    client, sessions, gated_worker
):
    boot = add_products(sessions, {"BOOT": 0}, price="40.00")["BOOT"]  # none in W1
    scarf = add_products(sessions, {"SCARF": 0}, price="15.50")["SCARF"]
    wx, wy = add_warehouse(sessions), add_warehouse(sessions)
    set_stock(sessions, boot, wx, 3)
    set_stock(sessions, scarf, wy, 3)
    settings, gates = await gated_worker(("book_carrier", lambda request: request.warehouse == wy))
    gate = gates["book_carrier"]

    order_id = await place(client, settings, order_doc([(boot, 2), (scarf, 1)]))

    # the WX shipment goes; the WY one waits for its carrier: the order is not shipped yet
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: (
            len(v.shipments) == 2
            and shipment_in(v, wx).status == "shipped"
            and shipment_in(v, wy).status == "packed"
        ),
    )
    first, second = shipment_in(view, wx), shipment_in(view, wy)
    assert view.status == "packed"
    assert [x.model_dump() for x in first.lines] == [{"sku": boot, "quantity": 2}]
    assert [x.model_dump() for x in second.lines] == [{"sku": scarf, "quantity": 1}]
    assert (first.amount, second.amount, view.total) == (Decimal("80.00"), Decimal("15.50"), Decimal("95.50"))
    assert view.payment.captured == Decimal("80.00")

    gate.set()
    view = await wait_status(client, order_id, "shipped")
    first, second = shipment_in(view, wx), shipment_in(view, wy)
    assert second.status == "shipped"
    assert (
        first.tracking_number and second.tracking_number and first.tracking_number != second.tracking_number
    )
    assert stock_of(sessions, boot, wx) == (1, 0) and stock_of(sessions, scarf, wy) == (2, 0)

    status, out = await cli(settings, "deliver", order_id, "--shipment", first.id)
    assert (status, out) == (0, f"delivery confirmed for {first.id}\n")
    await eventually(lambda: order_view(client, order_id), lambda v: shipment_in(v, wx).status == "delivered")
    status, out = await cli(settings, "status", order_id, "--json")
    doc = json.loads(out)
    assert doc["status"] == "shipped"  # partly delivered
    assert {s["id"]: s["status"] for s in doc["shipments"]} == {first.id: "delivered", second.id: "shipped"}

    assert (await cli(settings, "deliver", order_id, "--shipment", second.id))[0] == 0
    view = await wait_status(client, order_id, "delivered")
    assert {s.status for s in view.shipments} == {"delivered"}
    assert view.payment_status == "captured" and view.payment.captured == view.total

    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.captured == Decimal("95.50")
    with sessions() as session:
        captures = session.scalars(
            select(t.Payment.amount).where(
                t.Payment.order_id == order_id, t.Payment.kind == "capture", t.Payment.status == "approved"
            )
        ).all()
    assert sorted(captures) == [Decimal("15.50"), Decimal("80.00")]  # one per shipment

    async def sent() -> list[str]:
        return [n.kind for n in notifications(sessions, order_id)]

    kinds = await eventually(sent, lambda kinds: "order_delivered" in kinds)  # sent just after delivery
    assert kinds == ["order_confirmed", "order_shipped", "order_shipped", "order_delivered"]


async def test_the_warehouse_with_the_smaller_priority_ships(client, settings, sessions):
    sku = add_products(sessions, {"LAMP": 0})["LAMP"]
    later = add_warehouse(sessions, priority=20, prefix="WA")  # its code sorts first
    sooner = add_warehouse(sessions, priority=10, prefix="WZ")
    set_stock(sessions, sku, later, 5)
    set_stock(sessions, sku, sooner, 5)

    order_id = await place(client, settings, order_doc([(sku, 2)]))

    view = await wait_status(client, order_id, "shipped")
    assert [s.warehouse for s in view.shipments] == [sooner]
    assert stock_of(sessions, sku, sooner) == (3, 0)
    assert stock_of(sessions, sku, later) == (5, 0)


# ---- picking and releasing ----


async def test_a_pick_takes_units_off_the_shelf_and_a_release_only_unreserves(
    client, settings, sessions, gated_worker
):
    skus = add_products(sessions, {"TEE": 5, "CAP": 5})
    tee, cap = skus["TEE"], skus["CAP"]

    shipped = await place(client, settings, order_doc([(tee, 2)]))
    await wait_status(client, shipped, "shipped")
    assert stock_of(sessions, tee) == (3, 0)  # on hand and reserved both down by the 2 picked
    moves = [(m.kind, m.on_hand_delta, m.reserved_delta) for m in stock_movements(sessions, shipped)]
    assert moves == [("reserve", 0, 2), ("pick", -2, -2)]

    # an order held just after confirmation (its pick list on its way to the warehouse), then cancelled
    held, gates = await gated_worker("release_shipment")
    cancelled = await place(client, held, order_doc([(cap, 2)]))
    await wait_status(client, cancelled, "confirmed")
    assert stock_of(sessions, cap) == (5, 2)
    update_handle = await handle(client, cancelled).start_update(
        OrderUpdate.cancel,
        CancelRequest(reason="changed mind"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        result_type=OrderView,
    )
    gates["release_shipment"].set()
    view = await update_handle.result()
    assert view.status == "cancelled"
    assert stock_of(sessions, cap) == (5, 0)  # on hand untouched
    moves = [(m.kind, m.on_hand_delta, m.reserved_delta) for m in stock_movements(sessions, cancelled)]
    assert moves == [("reserve", 0, 2), ("release", 0, -2)]

    assert movement_sums(sessions, tee) == stock_of(sessions, tee)
    assert movement_sums(sessions, cap) == stock_of(sessions, cap)
    await assert_stock_check_clean(settings, tee, cap)


# ---- stock check ----


async def test_stock_check_names_a_level_that_disagrees_with_its_movements(settings, sessions, capsys):
    sku = add_products(sessions, {"VASE": 4})["VASE"]
    await assert_stock_check_clean(settings, sku)

    def shift(delta: int) -> None:
        with sessions.begin() as session:
            session.execute(
                update(t.Stock)
                .where(t.Stock.sku == sku, t.Stock.warehouse == "W1")
                .values(on_hand=t.Stock.on_hand + delta)
            )

    shift(+5)  # a level changed behind the ledger's back
    try:
        status, out = await cli(settings, "stock", "check")
    finally:
        shift(-5)
    assert status == 1
    assert f"{sku}@W1: level on_hand=9 reserved=0, movements sum to on_hand=4 reserved=0" in out.splitlines()
    assert "stock ledger check found" in capsys.readouterr().err
    await assert_stock_check_clean(settings, sku)


async def test_stock_check_finds_a_reservation_left_behind(client, sessions, gated_worker):
    settings, gates = await gated_worker("release_shipment")  # the order rests at confirmed
    sku = add_products(sessions, {"JUG": 3})["JUG"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))
    await wait_status(client, order_id, "confirmed")

    def order_status(status: str | None = None) -> str:
        with sessions.begin() as session:
            order = session.get(t.Order, order_id)
            assert order is not None
            if status:
                order.status = status
            return order.status

    await eventually(lambda: asyncio.to_thread(order_status), lambda s: s == "confirmed")
    with sessions() as session:
        (reservation,) = session.scalars(select(t.Reservation).where(t.Reservation.order_id == order_id))
    assert reservation.status == "active"

    order_status("cancelled")  # as if the cancellation had forgotten to release its stock
    try:
        status, out = await cli(settings, "stock", "check")
    finally:
        order_status("confirmed")
    assert status == 1
    expected = (
        f"reservation {reservation.id} of {sku}@W1 is left behind by order {order_id} "
        "(cancelled, shipment allocated)"
    )
    assert expected in out.splitlines()

    gates["release_shipment"].set()
    await wait_status(client, order_id, "shipped")
    await assert_stock_check_clean(settings, sku)


# ---- stock adjust and stock receive ----


async def test_stock_adjust_is_a_cycle_count_correction(settings, sessions):
    sku = add_products(sessions, {"BOWL": 10})["BOWL"]

    status, out = await cli(settings, "stock", "adjust", sku, "W1", "-3", "--reason", "cycle count")

    assert (status, out) == (0, f"{sku}@W1: on hand 7, reserved 0, available 7\n")
    assert stock_of(sessions, sku) == (7, 0)
    last = movements_of(sessions, sku)[-1]
    assert (last.kind, last.on_hand_delta, last.reserved_delta, last.reason) == (
        "adjust",
        -3,
        0,
        "cycle count",
    )
    await assert_stock_check_clean(settings, sku)


async def test_stock_adjust_below_the_reserved_units_is_refused(client, sessions, gated_worker, capsys):
    settings, gates = await gated_worker("release_shipment")  # the order rests at confirmed, reserved
    sku = add_products(sessions, {"PLATE": 7})["PLATE"]
    order_id = await place(client, settings, order_doc([(sku, 5)]))
    await wait_status(client, order_id, "confirmed")
    before = len(movements_of(sessions, sku))

    status, out = await cli(settings, "stock", "adjust", sku, "W1", "-3", "--reason", "cycle count")

    assert (status, out) == (2, "")
    assert f"{sku} in W1: on hand 7 -3 would fall below the 5 units reserved" in capsys.readouterr().err
    assert stock_of(sessions, sku) == (7, 5)
    assert len(movements_of(sessions, sku)) == before
    gates["release_shipment"].set()
    await wait_status(client, order_id, "shipped")
    assert stock_of(sessions, sku) == (2, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NO-SUCH-SKU", "W1", "-1"], "unknown SKU NO-SUCH-SKU"),
        (["{sku}", "NOWHERE", "1"], "unknown warehouse NOWHERE"),
        (["{sku}", "W1", "0"], "non-zero delta"),
        (["{sku}", "W1", "-9"], "would fall below"),  # below zero
    ],
)
async def test_stock_adjust_refuses_invalid_input(settings, sessions, capsys, args, message):
    sku = add_products(sessions, {"CUP": 4})["CUP"]
    argv = [a.format(sku=sku) for a in args]
    status, out = await cli(settings, "stock", "adjust", *argv, "--reason", "cycle count")
    assert (status, out) == (2, "")
    assert message in capsys.readouterr().err
    assert stock_of(sessions, sku) == (4, 0)


async def test_stock_receive_books_goods_in(settings, sessions, capsys):
    sku = add_products(sessions, {"TRAY": 10})["TRAY"]

    status, out = await cli(settings, "stock", "receive", sku, "W1", "7")

    assert (status, out) == (0, f"{sku}@W1: on hand 17, reserved 0, available 17\n")
    last = movements_of(sessions, sku)[-1]
    assert (last.kind, last.on_hand_delta, last.reserved_delta, last.purchase_order_id) == (
        "receive",
        7,
        0,
        None,
    )
    status, out = await cli(settings, "stock", "--sku", sku, "--json")
    assert json.loads(out) == [
        {
            "sku": sku,
            "warehouse": "W1",
            "on_hand": 17,
            "reserved": 0,
            "available": 17,
            "reorder_point": None,
            "reorder_qty": None,
            "count_requested_at": None,
            "count_reason": None,
        }
    ]

    assert await cli(settings, "stock", "receive", sku, "W1", "0") == (2, "")
    assert "positive quantity" in capsys.readouterr().err
    with sessions() as session:
        count = session.scalar(select(func.count(t.StockMovement.id)).where(t.StockMovement.sku == sku))
    assert count == 2  # the catalog load and the receipt
    await assert_stock_check_clean(settings, sku)
