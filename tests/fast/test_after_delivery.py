"""Returns and exchanges in the return window, incidents and stuck steps, and the other workflows."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest

from models.forecast import FORECAST_WORKFLOW, ForecastRequest, ForecastRun
from models.orders import OrderStatus, PaymentStatus, ReturnStatus, ShipmentStatus
from models.shipping import CarrierEventType
from models.steps import PurchaseOrderView, ReplenishRequest
from models.workflow_names import (
    REPLENISHMENT_WORKFLOW,
    sandbox_carrier_workflow_id,
    sandbox_warehouse_workflow_id,
)
from services.orders import Refused
from tests.fast.driver import Shop, eventually, new_sku
from tests.fast.fakes import World


async def _delivered(shop: Shop, world: World, qty: int = 2, price: str = "20.00") -> tuple[str, str]:
    sku = world.add_product(new_sku("SHOE"), price=price, stock={"W1": 5})
    order = await shop.place([(sku, qty)])
    await shop.settled(order)
    await shop.to_carrier(order)
    await shop.deliver_all(order)
    return order, sku


@pytest.mark.history("return_good")
async def test_return_in_good_condition_is_restocked_and_refunded(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world)
    assert world.level(sku) == (3, 0)
    ret = await shop.request_return(order, sku, 1)
    assert ret.status == ReturnStatus.requested and ret.lines[0].warehouse == "W1"
    await shop.receive_return(order, ret.rma, "good")
    view = await shop.status(order, OrderStatus.partially_returned)
    assert view.payment.refunded == Decimal("20.00")
    assert view.payment_status == PaymentStatus.partially_refunded
    assert world.level(sku) == (4, 0)
    assert world.return_outcomes[ret.rma].status == ReturnStatus.refunded
    assert {"return_authorized", "refund_issued"} <= set(world.messages(order))
    second = await shop.request_return(order, sku, 1)
    await shop.receive_return(order, second.rma, "good")
    view = await shop.status(order, OrderStatus.returned)
    assert view.payment_status == PaymentStatus.refunded
    with pytest.raises(Refused, match="not delivered with order|remain returnable"):
        await shop.request_return(order, sku, 1)
    await shop.skip(order, shop.policy.return_window)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed
    assert world.money(order)["refund"] == Decimal("40.00")


@pytest.mark.history("return_damaged")
async def test_damaged_return_is_written_off_and_refunded(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    ret = await shop.request_return(order, sku, 1)
    await shop.receive_return(order, ret.rma, "damaged")
    view = await shop.status(order, OrderStatus.returned)
    assert view.payment.refunded == Decimal("20.00")
    assert world.level(sku) == (4, 0)  # not restocked
    assert any("written off" in e.detail for e in view.events if e.type == "return_received")


async def test_return_never_received_expires_without_refund(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    ret = await shop.request_return(order, sku, 1)
    await shop.skip(order, shop.policy.return_receipt_timeout)
    view = await shop.until(order, lambda v: v.returns[0].status == ReturnStatus.expired)
    assert view.payment.refunded == 0
    await shop.written(order, "return_expired")
    await shop.messaged(order, "return_expired")
    with pytest.raises(Refused, match="expired"):
        await shop.receive_return(order, ret.rma, "good")


async def test_return_refused_after_the_window(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    await shop.skip(order, shop.policy.return_window - timedelta(hours=1))
    await shop.request_return(order, sku, 1)  # just in time: the window waits for it to settle
    view = await shop.view(order)
    assert view.status == OrderStatus.delivered and len(view.returns) == 1


@pytest.mark.parametrize(("price", "paid_back"), [("20.00", Decimal("0")), ("15.00", Decimal("5.00"))])
async def test_exchange_ships_a_replacement(shop: Shop, world: World, price: str, paid_back: Decimal) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    other = world.add_product(new_sku("SHOE-42"), price=price, stock={"W1": 3})
    ret = await shop.request_return(order, sku, 1, exchange_sku=other)
    await shop.receive_return(order, ret.rma, "good")
    view = await shop.until(order, lambda v: v.returns[0].status == ReturnStatus.exchanged)
    replacement = next(s for s in view.shipments if s.exchange_for == ret.rma)
    assert replacement.status == ShipmentStatus.shipped and replacement.tracking_number
    assert view.status == OrderStatus.delivered  # the customer keeps goods: not a returned order
    assert view.payment.refunded == paid_back
    assert world.level(other) == (2, 0)
    assert world.level(sku) == (5, 0)  # the returned pair restocked
    await shop.messaged(order, "exchange_shipped")  # written once the flow pauses after the view showed it
    from models.orders import DeliveryConfirmation
    from models.workflow_names import OrderSignal

    await shop.handle(order).signal(
        OrderSignal.confirm_delivery, DeliveryConfirmation(shipment_id=replacement.id)
    )
    view = await shop.until(
        order,
        lambda v: next(s for s in v.shipments if s.id == replacement.id).status == ShipmentStatus.delivered,
    )
    await shop.skip(order, shop.policy.return_window)
    assert (await shop.result(order)).status == OrderStatus.completed


@pytest.mark.history("exchange")
async def test_exchange_costing_more_authorizes_and_captures_the_difference(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    other = world.add_product(new_sku("SHOE-XL"), price="35.00", stock={"W1": 3})
    ret = await shop.request_return(order, sku, 1, exchange_sku=other)
    await shop.receive_return(order, ret.rma, "good")
    await shop.until(order, lambda v: bool(v.returns) and v.returns[0].status == ReturnStatus.exchanged)
    view = await shop.view(order)
    assert view.payment.authorized == Decimal("35.00")
    assert view.payment.captured == Decimal("35.00")


async def test_exchange_out_of_stock_refunds_instead(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    other = world.add_product(new_sku("SHOE-SOLD-OUT"), price="20.00", stock={"W1": 0})
    ret = await shop.request_return(order, sku, 1, exchange_sku=other)
    await shop.receive_return(order, ret.rma, "good")
    view = await shop.status(order, OrderStatus.returned)
    assert view.returns[0].status == ReturnStatus.refunded
    assert "exchange_failed" in [e.type for e in view.events]


async def test_exchange_for_unknown_sku_is_refused(shop: Shop, world: World) -> None:
    order, sku = await _delivered(shop, world, qty=1)
    with pytest.raises(Refused, match="unknown or not active"):
        await shop.request_return(order, sku, 1, exchange_sku="NOPE-1")


@pytest.mark.history("compensation_incident")
async def test_compensation_that_keeps_failing_is_an_incident(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    world.fail("void_payment", times=shop.policy.compensation_attempts)
    before = world.calls["void_payment"]
    cancel = asyncio.create_task(shop.cancel(order))
    # the stock went back; the void is retrying
    await shop.until(order, lambda v: "compensated" in [e.type for e in v.events])
    await shop.skip(order, timedelta(hours=1))  # the compensation's back-off, all 20 attempts
    view = await asyncio.wait_for(cancel, 20)
    assert view.status == OrderStatus.cancelled
    assert world.calls["void_payment"] - before == shop.policy.compensation_attempts
    assert "compensation_failed" in world.event_types(order)
    incident = world.message(order, "compensation_failed")
    assert incident.to_support and incident.context["what"] == "void the authorization"
    assert world.level(sku) == (4, 0)
    assert view.payment_status == PaymentStatus.authorized  # the hold stays on the card: support's to settle
    described = await shop.handle(order).describe()
    assert any(
        k.name == "NeedsAttention" and v
        for k, v in ((p.key, p.value) for p in described.typed_search_attributes)
    )


@pytest.mark.history("step_stuck_then_recovered")
async def test_step_stuck_then_recovered(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    world.fail("authorize_payment", times=7, message="gateway unreachable")
    before = world.calls["authorize_payment"]
    order = await shop.place([(sku, 1)])
    await shop.skip(order, timedelta(minutes=5))  # the retries' back-off
    view = await shop.status(order, OrderStatus.confirmed)
    types = [e.type for e in view.events]
    assert types.index("step_stuck") < types.index("step_recovered") < types.index("payment_authorized")
    stuck = next(e for e in view.events if e.type == "step_stuck")
    assert "failed 5 attempts" in stuck.detail and "gateway unreachable" in stuck.detail
    assert world.calls["authorize_payment"] - before == 8


async def test_authorization_event_counts_every_gateway_attempt(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    world.fail("authorize_payment", times=7, message="gateway unreachable")
    before = world.calls["authorize_payment"]
    order = await shop.place([(sku, 1)])
    await shop.skip(order, timedelta(minutes=5))
    view = await shop.status(order, OrderStatus.confirmed)
    assert world.calls["authorize_payment"] - before == 8
    assert "after 8 attempts" in next(e.detail for e in view.events if e.type == "payment_authorized")


@pytest.mark.history("replenishment")
async def test_replenishment_orders_waits_receives_and_serves_backorders(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("FLOUR"), price="3.00", stock={"W1": 0})
    world.stock[(sku, "W1")].reorder_point = 2
    world.stock[(sku, "W1")].reorder_quantity = 20
    world.on_order[sku] = 1  # an earlier purchase order: the order below waits rather than being refused
    waiting = await shop.place([(sku, 4)])
    assert (await shop.settled(waiting)).status == OrderStatus.backordered
    request = ReplenishRequest(sku=sku, warehouse="W1", quantity=20, lead_time=timedelta(days=5))
    handle = await shop.client.start_workflow(
        REPLENISHMENT_WORKFLOW, request, id=f"replenish-{sku}-W1", task_queue=world.task_queue
    )
    await eventually(
        lambda: handle.query("purchase_order"), lambda po: po is not None, "purchase order raised"
    )
    assert world.on_order[sku] == 21
    await shop.env.fast_forward(handle, request.lead_time)  # the supplier delivers on schedule
    result = await asyncio.wait_for(handle.result(), 20)
    po = PurchaseOrderView.model_validate(result) if isinstance(result, dict) else result
    assert po.status == "received" and po.received_quantity == 20
    view = await shop.status(waiting, OrderStatus.confirmed)  # offered through retry_reservation
    assert world.level(sku) == (20, 4)
    assert view.payment.authorized == Decimal("12.00")


async def test_order_taking_stock_below_reorder_point_starts_replenishment(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("SUGAR"), price="2.00", stock={"W1": 5})
    world.stock[(sku, "W1")].reorder_point = 3
    world.stock[(sku, "W1")].reorder_quantity = 10
    order = await shop.place([(sku, 3)])
    await shop.settled(order)
    assert f"replenish-{sku}-W1" in world.replenishments
    assert world.calls["raise_purchase_order"] >= 1


@pytest.mark.history("forecast")
@pytest.mark.parametrize("apply", [False, True])
async def test_forecast_workflow(shop: Shop, world: World, apply: bool) -> None:
    handle = await shop.client.start_workflow(
        FORECAST_WORKFLOW,
        ForecastRequest(apply=apply, as_of=date(2026, 1, 31)),
        id=f"forecast-{new_sku('run')}",
        task_queue=world.task_queue,
        result_type=ForecastRun,
    )
    run = await asyncio.wait_for(handle.result(), 20)
    assert run.recommendations == len({sku for sku, _ in world.stock})
    assert world.forecast_runs[-1] == date(2026, 1, 31)
    assert run.applied == 0 and run.replenishing == []


@pytest.mark.history("sandbox_parties")
async def test_sandbox_warehouse_and_carrier_drive_the_order(shop: Shop, world: World) -> None:
    """The sandbox parties date their reports by their own clocks. Time skipping gives every workflow a
    clock of its own, so this order skips no release window (release_delay 0): its clock and the
    parties' stay together, as on one machine, and their skipped pick, pack and transit times put them
    seconds ahead, which the order takes (up to a day)."""
    world.sandbox_parties = True
    sku = world.add_product(new_sku("TEA"), price="8.00", stock={"W1": 3})
    order = await shop.place([(sku, 2)], policy={"release_delay": timedelta(0)})
    view = await shop.released(order)
    shipment = view.shipments[0]
    warehouse = shop.client.get_workflow_handle(sandbox_warehouse_workflow_id(shipment.id))
    await asyncio.wait_for(shop.env.fast_forward(warehouse), 20)  # pick and pack time, then the reports
    assert await warehouse.result() == "handed over"
    view = await shop.status(order, OrderStatus.shipped)
    tracking = view.shipments[0].tracking_number
    assert tracking
    carrier = shop.client.get_workflow_handle(sandbox_carrier_workflow_id(tracking))
    await asyncio.wait_for(shop.env.fast_forward(carrier), 20)  # its transit time
    assert await carrier.result() == CarrierEventType.delivered.value
    view = await shop.status(order, OrderStatus.delivered)
    assert view.payment.captured == Decimal("16.00")
    assert [t.type for t in view.shipments[0].tracking][-1] == CarrierEventType.delivered
    assert world.level(sku) == (1, 0)
