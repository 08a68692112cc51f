"""Backorders, and every way an order is stopped: support's cancel and Temporal's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from models.events import ReasonCode
from models.orders import OrderStatus, PaymentStatus, ShipmentStatus
from services.orders import Refused
from tests.fast.driver import Shop, eventually, new_sku
from tests.fast.fakes import World


@pytest.mark.history("backordered_then_filled")
async def test_backordered_then_filled_when_stock_arrives(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("KETTLE"), price="30.00", stock={"W1": 1})
    world.on_order[sku] = 10
    order = await shop.place([(sku, 3)])
    view = await shop.settled(order)
    assert view.status == OrderStatus.backordered
    assert view.payment_status == PaymentStatus.authorized
    assert world.level(sku) == (1, 0)
    assert world.messages(order) == ["order_backordered"]
    assert [e.reason_code for e in view.events if e.type == "order_backordered"] == [ReasonCode.out_of_stock]
    await shop.skip(order, shop.policy.backorder_timeout / 2)
    world.receive_stock(sku, "W1", 5)
    assert await shop.retry_reservation(order) is True
    view = await shop.status(order, OrderStatus.confirmed)
    assert world.level(sku) == (6, 3)
    assert [s.lines[0].quantity for s in view.shipments] == [3]


async def test_offer_of_too_little_stock_keeps_waiting(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("KETTLE"), stock={"W1": 0})
    world.on_order[sku] = 10
    order = await shop.place([(sku, 3)])
    assert (await shop.settled(order)).status == OrderStatus.backordered
    world.receive_stock(sku, "W1", 1)
    assert await shop.retry_reservation(order) is False
    assert (await shop.view(order)).status == OrderStatus.backordered


@pytest.mark.history("backorder_timeout")
async def test_backorder_timeout_cancels(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("KETTLE"), price="30.00", stock={"W1": 0})
    world.on_order[sku] = 4
    order = await shop.place([(sku, 2)])
    assert (await shop.settled(order)).status == OrderStatus.backordered
    await shop.skip(order, shop.policy.backorder_timeout)
    final = await shop.result(order)
    assert final.status == OrderStatus.cancelled
    assert final.payment_status == PaymentStatus.voided
    cancelled = next(e for e in final.events if e.type == "order_cancelled")
    assert "still out of stock 7 days, 0:00:00 after backordering" in cancelled.detail
    assert cancelled.reason_code == ReasonCode.backorder_timeout
    assert world.money(order) == {"authorization": Decimal("60.00"), "void": Decimal("60.00")}
    assert world.messages(order) == ["order_backordered", "order_cancelled"]
    assert "nothing was charged" in world.rendered(order, "order_cancelled")[1]
    assert world.level(sku) == (0, 0)
    assert world.on_order[sku] == 4  # the stock on order stays on order


async def test_out_of_stock_and_nothing_on_order_rejects(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("RARE"), stock={"W1": 1})
    order = await shop.place([(sku, 2)])
    final = await shop.result(order)
    assert final.status == OrderStatus.rejected
    assert world.money(order) == {"authorization": Decimal("20.00"), "void": Decimal("20.00")}
    assert final.payment_status == PaymentStatus.voided
    assert world.level(sku) == (1, 0)


async def test_two_warehouses_make_two_shipments(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("CHAIR"), price="40.00", stock={"W1": 1, "W2": 5})
    other = world.add_product(new_sku("DESK"), price="100.00", stock={"W1": 1})
    order = await shop.place([(sku, 2), (other, 1)])
    view = await shop.settled(order)
    assert view.status == OrderStatus.confirmed
    assert {s.warehouse for s in view.shipments} == {"W1", "W2"}
    assert sum(s.amount for s in view.shipments) == view.total == Decimal("180.00")


@pytest.mark.history("cancelled_in_release_window")
async def test_cancel_inside_the_release_window(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    order = await shop.place([(sku, 2)])
    await shop.settled(order)
    view = await shop.cancel(order)
    assert view.status == OrderStatus.cancelled
    final = await shop.result(order)
    assert final.payment_status == PaymentStatus.voided
    assert world.level(sku) == (4, 0)
    assert all(r.shipment_id.rpartition("-S")[0] != order for r in world.released)  # never sent
    assert world.money(order) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}
    cancelled = next(e for e in final.events if e.type == "order_cancelled")
    assert "customer changed their mind (by agent-1)" in cancelled.detail
    assert world.messages(order)[-1] == "order_cancelled"
    assert world.message(order, "order_cancelled").context["money"] == (
        "The authorization on your card was released; nothing was charged."
    )


async def _picked(shop: Shop, world: World, qty: int = 2) -> tuple[str, str, str]:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    order = await shop.place([(sku, qty)])
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    shipment = view.shipments[0]
    await shop.pick(shipment)
    await shop.until(order, lambda v: v.shipments[0].status == ShipmentStatus.picked)
    return order, sku, shipment.id


async def test_cancel_after_pick_restocks(shop: Shop, world: World) -> None:
    order, sku, _ = await _picked(shop, world)
    assert world.level(sku) == (2, 0)
    view = await shop.cancel(order)
    assert view.status == OrderStatus.cancelled
    final = await shop.result(order)
    assert world.level(sku) == (4, 0)  # back on the shelf
    assert final.payment_status == PaymentStatus.voided
    assert final.shipments[0].status == ShipmentStatus.cancelled
    assert any("back on the shelf" in e.detail for e in final.events if e.type == "compensated")


@pytest.mark.history("cancelled_after_pack")
async def test_cancel_after_pack_cancels_the_booking(shop: Shop, world: World) -> None:
    order, sku, shipment_id = await _picked(shop, world)
    outcome = await shop.pack(shipment_id)
    assert "label" in outcome.detail
    view = await shop.view(order)
    tracking = view.shipments[0].tracking_number
    assert tracking and world.bookings[tracking] == "booked"
    await shop.cancel(order)
    final = await shop.result(order)
    assert final.status == OrderStatus.cancelled
    assert world.bookings[tracking] == "cancelled"
    assert world.level(sku) == (4, 0)
    assert world.money(order) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}


async def test_cancel_refused_once_handed_over(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), stock={"W1": 4})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    await shop.to_carrier(order)
    with pytest.raises(Refused, match="can no longer be cancelled"):
        await shop.cancel(order)
    with pytest.raises(Refused, match="already"):
        await shop.pick((await shop.view(order)).shipments[0])


async def _cancelled_from_temporal(shop: Shop, order: str) -> None:
    await shop.handle(order).cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await shop.result(order)
    assert isinstance(failed.value.cause, CancelledError)


async def test_temporal_cancel_on_hold_compensates(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("TV"), price="900.00", stock={"W1": 1})
    order = await shop.place([(sku, 1)], policy={"review_above": Decimal("100")})
    assert (await shop.settled(order)).status == OrderStatus.on_hold
    await _cancelled_from_temporal(shop, order)
    view = await shop.view(order)
    assert view.status == OrderStatus.cancelled
    assert view.payment_status == PaymentStatus.voided
    assert "cancelled from Temporal by an operator" in next(
        e.detail for e in view.events if e.type == "order_cancelled"
    )


async def test_temporal_cancel_while_backordered(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("KETTLE"), stock={"W1": 0})
    world.on_order[sku] = 5
    order = await shop.place([(sku, 1)])
    assert (await shop.settled(order)).status == OrderStatus.backordered
    await _cancelled_from_temporal(shop, order)
    view = await shop.view(order)
    assert view.status == OrderStatus.cancelled and view.payment_status == PaymentStatus.voided


@pytest.mark.history("cancelled_from_temporal_after_pick")
async def test_temporal_cancel_after_pick_restocks(shop: Shop, world: World) -> None:
    order, sku, _ = await _picked(shop, world)
    await _cancelled_from_temporal(shop, order)
    view = await shop.view(order)
    assert view.status == OrderStatus.cancelled
    assert world.level(sku) == (4, 0)
    assert world.money(order) == {"authorization": Decimal("30.00"), "void": Decimal("30.00")}


@pytest.mark.history("cancelled_from_temporal_after_handover")
async def test_temporal_cancel_after_handover_keeps_the_parcel(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    order = await shop.place([(sku, 2)])
    await shop.settled(order)
    await shop.to_carrier(order)
    await _cancelled_from_temporal(shop, order)
    view = await shop.view(order)
    assert view.status == OrderStatus.shipped  # nothing of the order was left to cancel
    assert view.payment.captured == Decimal("30.00") and view.payment.refunded == 0
    assert world.level(sku) == (2, 0)  # the units are on the van, not back on the books
    assert any("already handed to the carrier" in e.detail for e in view.events if e.type == "run_cancelled")


async def test_temporal_cancel_compensation_runs_to_its_end_through_failing_attempts(
    shop: Shop, world: World
) -> None:
    """Moved from tests/test_temporal_cancel.py: the void fails twice (a gateway outage) after the run
    was cancelled, and is retried until it goes through (the compensation is not part of what the
    cancellation interrupts)."""
    sku = world.add_product(new_sku("TV"), price="900.00", stock={"W1": 3})
    order = await shop.place([(sku, 1)], policy={"review_above": Decimal("500")})
    assert (await shop.settled(order)).status == OrderStatus.on_hold
    world.fail("void_payment", times=2)
    before = world.calls["void_payment"]
    await shop.handle(order).cancel()
    await shop.skip(order, timedelta(minutes=1))  # the void's back-off
    with pytest.raises(WorkflowFailureError) as failed:
        await shop.result(order)
    assert isinstance(failed.value.cause, CancelledError)
    view = await shop.view(order)
    assert (view.status, view.payment_status) == (OrderStatus.cancelled, PaymentStatus.voided)
    assert next(e.detail for e in view.events if e.type == "order_cancelled").startswith(
        "cancelled from Temporal by an operator"
    )
    assert world.money(order) == {"authorization": Decimal("900.00"), "void": Decimal("900.00")}
    assert world.calls["void_payment"] - before == 3  # failed twice, then voided
    assert await _attempts_of(shop, order, "void_payment") == [3]  # one void, retried: not three
    assert world.messages(order)[-1] == "order_cancelled"
    assert world.level(sku) == (3, 0)


async def test_a_stuck_order_can_be_cancelled_from_temporal(shop: Shop, world: World) -> None:
    """Moved from tests/test_stuck_steps.py: a step that would retry for ever (the label printer is
    offline) is interrupted by Temporal's cancellation, and the order compensates (the picked units
    back on the shelf, the authorization voided)."""
    from models import search_attributes as sa

    sku = world.add_product(new_sku("MUG"), price="8.00", stock={"W1": 4})
    order = await shop.place([(sku, 2)])
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    (shipment,) = (await shop.released(order)).shipments
    await shop.pick(shipment)
    await shop.until(order, lambda v: v.shipments[0].status == ShipmentStatus.picked)
    # the booking is a regular activity: its back-off is the server's to skip (a local one's is not)
    world.fail("book_carrier", times=10_000, message="label printer offline")
    before = world.calls["book_carrier"]
    pack = asyncio.create_task(shop.pack(shipment.id))  # answered once acted on: never, until the end
    await eventually(lambda: world.calls["book_carrier"], lambda n: n > before, "the carrier being booked")
    await shop.skip(order, timedelta(minutes=2))  # the retries' back-off: stuck, and still retrying
    view = await shop.until(order, lambda v: "step_stuck" in [e.type for e in v.events], "step_stuck")
    (stuck,) = [e for e in view.events if e.type == "step_stuck"]
    assert stuck.detail.startswith(f"book the carrier for {shipment.id}: failed 5 attempts, still retrying")
    assert "label printer offline" in stuck.detail
    attention = (await shop.handle(order).describe()).typed_search_attributes.get(sa.NEEDS_ATTENTION)
    assert attention is True

    await shop.handle(order).cancel()  # the step would retry for ever: it is interrupted
    with pytest.raises(WorkflowFailureError) as failed:
        await shop.result(order)
    assert isinstance(failed.value.cause, CancelledError)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pack, 20)
    view = await shop.view(order)
    assert (view.status, view.payment_status) == (OrderStatus.cancelled, PaymentStatus.voided)
    assert world.level(sku) == (4, 0)  # picked, then put back
    assert world.money(order) == {"authorization": Decimal("16.00"), "void": Decimal("16.00")}
    assert world.messages(order)[-1] == "order_cancelled"
    attention = (await shop.handle(order).describe()).typed_search_attributes.get(sa.NEEDS_ATTENTION)
    assert attention is False  # nothing is stuck any more


async def _attempts_of(shop: Shop, order: str, activity: str) -> list[int]:
    """The attempt each run of `activity` finished on (from the order's history)."""
    from temporalio.api.enums.v1 import EventType

    history = await shop.handle(order).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
