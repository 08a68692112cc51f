"""Warehouses and carriers as parties: short picks, lost parcels, failed deliveries, the delivery SLA."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.events import ReasonCode
from models.orders import OrderStatus, PaymentStatus, ShipmentStatus
from models.shipping import CarrierEventType, Resolution
from services.orders import Refused
from tests.fast.driver import Shop, eventually, new_sku
from tests.fast.fakes import World


async def _released(shop: Shop, order: str):  # type: ignore[no-untyped-def]
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    return await shop.released(order)


@pytest.mark.history("short_pick_reallocated")
async def test_short_pick_reallocated_to_another_warehouse(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("VASE"), price="20.00", stock={"W1": 3, "W2": 5})
    order = await shop.place([(sku, 3)])
    view = await _released(shop, order)
    (first,) = view.shipments
    assert first.warehouse == "W1"
    outcome = await shop.pick(first, found={sku: 1})
    assert "re-allocated to" in outcome.detail
    view = await shop.until(order, lambda v: len(v.shipments) == 2)
    second = view.shipments[1]
    assert second.warehouse == "W2" and second.replaces == first.id
    assert second.lines[0].quantity == 2
    assert world.level(sku, "W1") == (0, 0)  # 1 picked, 2 written off: the shelf count was wrong
    assert world.level(sku, "W2") == (5, 2)
    await shop.until(order, lambda v: v.shipments[1].status == ShipmentStatus.released)
    for s in (await shop.view(order)).shipments:
        if s.status == ShipmentStatus.picked:
            await shop.pack(s.id)
            await shop.hand_over(s.id)
        else:
            await shop.ship(order, s)
    view = await shop.status(order, OrderStatus.shipped)
    assert view.payment.captured == Decimal("60.00")
    view = await shop.deliver_all(order)
    assert view.payment_status == PaymentStatus.captured


@pytest.mark.history("short_pick_backordered")
async def test_short_pick_backordered_then_filled(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("VASE"), price="20.00", stock={"W1": 3})
    world.on_order[sku] = 10
    order = await shop.place([(sku, 3)])
    view = await _released(shop, order)
    outcome = await shop.pick(view.shipments[0], found={sku: 1})
    assert "backordered as" in outcome.detail
    view = await shop.until(order, lambda v: any(s.status == ShipmentStatus.backordered for s in v.shipments))
    placeholder = next(s for s in view.shipments if s.status == ShipmentStatus.backordered)
    assert placeholder.amount == Decimal("40.00")
    world.receive_stock(sku, "W1", 4)
    assert await shop.retry_reservation(order) is True
    view = await shop.until(order, lambda v: len(v.shipments) == 3)
    assert view.shipments[1].status == ShipmentStatus.resolved
    assert view.shipments[2].lines[0].quantity == 2 and view.shipments[2].replaces == placeholder.id
    assert world.level(sku) == (4, 2)


async def test_short_pick_backorder_times_out_and_lines_are_cancelled(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("VASE"), price="20.00", stock={"W1": 3})
    world.on_order[sku] = 10
    order = await shop.place([(sku, 3)])
    view = await _released(shop, order)
    await shop.pick(view.shipments[0], found={sku: 1})
    await shop.until(order, lambda v: any(s.status == ShipmentStatus.backordered for s in v.shipments))
    await shop.skip(order, shop.policy.backorder_timeout)
    view = await shop.until(order, lambda v: v.shipments[-1].status == ShipmentStatus.cancelled)
    assert "lines_cancelled" in [e.type for e in view.events]
    first = view.shipments[0]
    await shop.pack(first.id)
    await shop.hand_over(first.id)
    await shop.status(order, OrderStatus.shipped)
    view = await shop.deliver_all(order)
    assert view.payment.captured == Decimal("20.00")  # only the unit sent
    assert view.payment_status == PaymentStatus.captured
    # the rest of the authorization released: the order's step right after the last delivery
    money = await eventually(lambda: world.money(order), lambda m: "void" in m, "the rest released")
    assert money["void"] == money["authorization"] - Decimal("20.00") > 0
    await shop.messaged(order, "lines_cancelled")


@pytest.mark.history("short_pick_lines_cancelled")
async def test_short_pick_with_nothing_on_order_cancels_those_lines(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("VASE"), price="20.00", stock={"W1": 3})
    other = world.add_product(new_sku("BOWL"), price="5.00", stock={"W1": 2})
    order = await shop.place([(sku, 3), (other, 2)])
    view = await _released(shop, order)
    outcome = await shop.pick(view.shipments[0], found={sku: 0})
    assert "those lines cancelled" in outcome.detail
    await shop.pack(view.shipments[0].id)
    await shop.hand_over(view.shipments[0].id)
    view = await shop.status(order, OrderStatus.shipped)
    assert view.payment.captured == Decimal("10.00")
    assert view.shipments[0].lines[0].sku == other


async def test_nothing_found_at_all_completes_with_nothing_delivered(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("GHOST"), price="20.00", stock={"W1": 1})
    order = await shop.place([(sku, 1)], policy={"short_pick": "cancel_lines"})
    view = await _released(shop, order)
    outcome = await shop.pick(view.shipments[0], found={sku: 0})
    assert outcome.detail.endswith("those lines cancelled")
    final = await shop.result(order)
    assert any("nothing left to send" in e.detail for e in final.events if e.type == "shipment_cancelled")
    assert final.status == OrderStatus.completed
    assert final.payment_status == PaymentStatus.voided
    assert final.events[-1].detail == "nothing was delivered"


async def test_carrier_refusal_cancels_the_order(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("SOFA"), price="300.00", stock={"W1": 1})
    address = {"name": "A", "line1": "Nowhere 1", "city": "X", "postal_code": "ZZ1 1ZZ", "country": "GB"}
    order = await shop.place([(sku, 1)], shipping_address=address)
    view = await _released(shop, order)
    await shop.pick(view.shipments[0])
    outcome = await shop.pack(view.shipments[0].id)
    assert "ended before acting on it" in outcome.detail  # the warehouse is told the order is over
    final = await shop.result(order)
    assert final.status == OrderStatus.cancelled
    assert "no service to postal code" in next(e.detail for e in final.events if e.type == "order_cancelled")
    assert world.level(sku) == (1, 0)
    assert final.payment_status == PaymentStatus.voided


@pytest.mark.history("lost_parcel")
@pytest.mark.parametrize("choice", [Resolution.reship, Resolution.refund])
async def test_lost_parcel_settled_by_support(shop: Shop, world: World, choice: Resolution) -> None:
    sku = world.add_product(new_sku("CLOCK"), price="50.00", stock={"W1": 3})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    lost = view.shipments[0]
    await shop.carrier(order, lost.id, CarrierEventType.in_transit)
    await shop.carrier(order, lost.id, CarrierEventType.lost)
    view = await shop.status(order, OrderStatus.delivery_exception)
    assert view.shipments[0].status == ShipmentStatus.exception
    await shop.messaged(order, "parcel_lost")
    await shop.resolve(order, lost.id, choice)
    view = await shop.until(order, lambda v: v.shipments[0].status == ShipmentStatus.resolved)
    assert [e.reason_code for e in view.events if e.type == "shipment_resolved"] == [None]  # support chose
    assert [c.shipment_id for c in world.claims if c.order_id == order] == [lost.id]
    if choice == Resolution.reship:
        new = view.shipments[1]
        assert new.replaces == lost.id and new.amount == 0  # not charged again
        await shop.ship(order, new)
        view = await shop.deliver_all(order)
        assert view.payment.captured == Decimal("50.00") and view.payment.refunded == 0
        assert world.level(sku) == (1, 0)
        await shop.messaged(order, "parcel_reshipped")
    else:
        final = await shop.result(order)
        assert final.status == OrderStatus.completed  # nothing reached the customer
        assert [e.reason_code for e in final.events if e.type == "order_completed"] == [
            ReasonCode.nothing_delivered
        ]
        assert final.payment_status == PaymentStatus.refunded
        assert world.money(order)["refund"] == Decimal("50.00")
        await shop.messaged(order, "parcel_refunded")


@pytest.mark.history("lost_parcel_refunded_by_timeout")
async def test_lost_parcel_refunded_when_support_does_not_choose(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("CLOCK"), price="50.00", stock={"W1": 3})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    await shop.carrier(order, view.shipments[0].id, CarrierEventType.lost)
    await shop.status(order, OrderStatus.delivery_exception)
    await shop.skip(order, shop.policy.exception_timeout)
    final = await shop.result(order)
    assert final.payment.refunded == Decimal("50.00")
    assert final.shipments[0].resolution == Resolution.refund
    (resolved,) = [e for e in final.events if e.type == "shipment_resolved"]
    assert "no choice within 3 days" in resolved.detail
    assert resolved.reason_code == ReasonCode.exception_timeout


async def test_reship_with_no_stock_refunds_instead(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("CLOCK"), price="50.00", stock={"W1": 1})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    await shop.carrier(order, view.shipments[0].id, CarrierEventType.lost)
    await shop.status(order, OrderStatus.delivery_exception)
    await shop.resolve(order, view.shipments[0].id, Resolution.reship)
    final = await shop.result(order)
    assert final.payment_status == PaymentStatus.refunded
    assert any("nothing in stock to reship" in e.detail for e in final.events)


async def test_failed_deliveries_then_delivered(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("PLANT"), stock={"W1": 2})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    s = view.shipments[0].id
    for attempt in (1, 2):
        outcome = await shop.carrier(order, s, CarrierEventType.delivery_failed, attempt=attempt)
        assert f"attempt {attempt} of 3" in outcome.detail
    await shop.carrier(order, s, CarrierEventType.exception)  # held up, carries on
    view = await shop.status(order, OrderStatus.delivery_exception)
    await shop.carrier(order, s, CarrierEventType.out_for_delivery)
    await shop.status(order, OrderStatus.shipped)
    await shop.carrier(order, s, CarrierEventType.delivered)
    view = await shop.status(order, OrderStatus.delivered)
    assert view.shipments[0].delivery_attempts == 2
    with pytest.raises(Refused, match="already delivered"):
        await shop.carrier(order, s, CarrierEventType.delivered)


@pytest.mark.history("three_failed_deliveries")
async def test_three_failed_deliveries_come_back_and_are_restocked(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("PLANT"), price="25.00", stock={"W1": 2})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    s = view.shipments[0].id
    for attempt in (1, 2, 3):
        await shop.carrier(order, s, CarrierEventType.delivery_failed, attempt=attempt)
    view = await shop.status(order, OrderStatus.delivery_exception)
    assert "coming back" in (view.shipments[0].trouble or "")
    assert world.level(sku) == (1, 0)
    await shop.resolve(order, s, Resolution.refund)
    final = await shop.result(order)
    assert world.level(sku) == (2, 0)  # returned to sender: on the shelf again
    assert [c.reason for c in world.claims if c.order_id == order] == ["returned_to_sender"]
    assert final.payment_status == PaymentStatus.refunded


async def test_delivery_sla_overdue_flags_then_delivery_clears_the_wait(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BIKE"), price="400.00", stock={"W1": 1})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    assert not view.overdue
    await shop.skip(order, shop.policy.delivery_sla)
    view = await shop.until(order, lambda v: v.overdue)
    assert "delivery_overdue" in [e.type for e in view.events]
    message = world.message(order, "delivery_overdue")
    assert message.to_support and message.context["sla"] == "7 days, 0:00:00"
    await shop.deliver_all(order)
    await shop.skip(order, shop.policy.return_window)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed and final.overdue


async def test_overdue_delivery_is_flagged_once_and_the_order_keeps_waiting(shop: Shop, world: World) -> None:
    """Moved from tests/test_overdue.py (its 2 s SLA waited out in real time)."""
    from temporalio.client import WorkflowExecutionStatus

    from models import search_attributes as sa
    from services.orders import confirm_delivery

    sku = world.add_product(new_sku("DESK"), stock={"W1": 2})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    (shipment,) = (await shop.to_carrier(order)).shipments
    await shop.skip(order, shop.policy.delivery_sla)

    view = await shop.until(order, lambda v: v.overdue)
    assert view.status == OrderStatus.shipped
    (overdue,) = [e for e in view.events if e.type == "delivery_overdue"]
    assert overdue.detail.startswith(
        f"{shipment.id}: no delivery confirmation 7 days, 0:00:00 after shipping"
    )
    await shop.messaged(order, "delivery_overdue")
    assert world.message(order, "delivery_overdue").to_support  # the outbox sends it to SUPPORT_ADDRESS
    subject, body = world.rendered(order, "delivery_overdue")
    assert subject == f"[support] Order {order} delivery overdue"
    assert shipment.tracking_number and shipment.tracking_number in body
    description = await shop.handle(order).describe()
    assert description.typed_search_attributes.get(sa.DELIVERY_OVERDUE) is True
    assert description.status == WorkflowExecutionStatus.RUNNING

    await confirm_delivery(shop.client, order)
    view = await shop.status(order, OrderStatus.delivered)
    assert view.overdue  # it was late; the record stays
    assert [e.type for e in view.events].count("delivery_overdue") == 1
    await shop.messaged(order, "order_delivered")
    assert world.messages(order).count("delivery_overdue") == 1


async def test_an_order_delivered_within_its_sla_is_never_flagged(shop: Shop, world: World) -> None:
    """Moved from tests/test_overdue.py."""
    from models import search_attributes as sa
    from tests.helpers import timers

    sku = world.add_product(new_sku("CHAIR"), stock={"W1": 2})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    (shipment,) = (await shop.to_carrier(order)).shipments
    await shop.deliver_all(order)

    # the delivery ended the SLA's wait: its timer was canceled and can never fire
    await eventually(
        lambda: timers(shop.client, order),
        lambda t: t.get(f"delivery SLA for {shipment.id}") == "canceled",
        "the SLA timer canceled",
    )
    await shop.skip(order, shop.policy.delivery_sla)  # the SLA's time passes (inside the return window)
    view = await shop.view(order)
    assert not view.overdue
    assert "delivery_overdue" not in [e.type for e in view.events]
    await shop.messaged(order, "order_delivered")
    assert "delivery_overdue" not in world.event_types(order)
    assert "delivery_overdue" not in world.messages(order)
    description = await shop.handle(order).describe()
    assert description.typed_search_attributes.get(sa.DELIVERY_OVERDUE) is None


async def test_reports_out_of_order_or_duplicated_are_refused(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOX"), stock={"W1": 2})
    order = await shop.place([(sku, 1)])
    view = await _released(shop, order)
    s = view.shipments[0]
    with pytest.raises(Refused, match="out of order"):
        await shop.hand_over(s.id)
    await shop.pick(s)
    with pytest.raises(Refused, match="duplicate"):
        await shop.pick(s)
    with pytest.raises(Refused, match="not part of order"):
        await shop.report(f"{order}-S9", "picked", lines=[])


async def test_pack_straight_after_release_confirms_the_pick(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOX"), price="4.00", stock={"W1": 3})
    order = await shop.place([(sku, 2)])
    view = await _released(shop, order)
    s = view.shipments[0]
    outcome = await shop.report(s.id, "packed", lines=[{"sku": sku, "quantity": 2}], parcels_g=[700])
    assert "2 units picked" in outcome.detail and "label" in outcome.detail
    await shop.hand_over(s.id)
    view = await shop.status(order, OrderStatus.shipped)
    assert view.shipments[0].parcels_g == [700] and world.level(sku) == (1, 0)


async def test_support_confirms_a_delivery_the_carrier_did_not_report(shop: Shop, world: World) -> None:
    from services.orders import confirm_delivery

    sku = world.add_product(new_sku("BOX"), stock={"W1": 3})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    assert await confirm_delivery(shop.client, order, by="agent-1") == [view.shipments[0].id]
    view = await shop.status(order, OrderStatus.delivered)
    assert view.shipments[0].tracking[-1].type == CarrierEventType.delivered


async def test_a_workflow_started_with_unreadable_input_fails_at_once(shop: Shop, world: World) -> None:
    from temporalio.client import WorkflowFailureError

    from models.workflow_names import ORDER_WORKFLOW

    handle = await shop.client.start_workflow(
        ORDER_WORKFLOW, {"order": {"lines": []}}, id=f"order-{new_sku('BAD')}", task_queue=world.task_queue
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "cannot read its input" in str(failed.value.cause)
