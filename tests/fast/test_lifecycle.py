"""The order's main line and its early exits: placed -> delivered -> completed, declined, held, backordered."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models import search_attributes as sa
from models.events import ReasonCode
from models.orders import OrderStatus, PaymentStatus
from tests.fast.driver import Shop, new_sku
from tests.fast.fakes import DECLINED_TOKEN, World
from worker import build_activities  # noqa: F401  (the names the fakes must match)


async def test_every_real_activity_has_a_fake(world: World) -> None:
    import inspect

    from activities.forecast import ForecastActivities
    from activities.fulfilment import FulfilmentActivities
    from activities.inventory import InventoryActivities
    from activities.notifications import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.replenishment import ReplenishmentActivities
    from activities.returns import ReturnActivities
    from sandbox.activities import SandboxPartyActivities

    real = {
        name
        for cls in (
            ForecastActivities,
            FulfilmentActivities,
            InventoryActivities,
            NotificationActivities,
            OrderActivities,
            PaymentActivities,
            ReplenishmentActivities,
            ReturnActivities,
            SandboxPartyActivities,
        )
        for name, fn in inspect.getmembers(cls)
        if hasattr(fn, "__temporal_activity_definition")
    }
    fakes = {fn.__temporal_activity_definition.name for fn in world.activities()}
    assert real == fakes


@pytest.mark.history("completed_with_feedback", plain=True)
async def test_placed_delivered_completed_with_feedback(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("MUG"), price="12.50", stock={"W1": 10})
    order = await shop.place([(sku, 2)])

    view = await shop.settled(order)
    assert view.status == OrderStatus.confirmed
    assert view.payment_status == PaymentStatus.authorized
    assert view.total == Decimal("25.00")
    assert world.level(sku) == (10, 2)  # reserved, still on the shelf
    assert view.releases_at is not None and view.expected_delivery is not None
    assert view.expected_delivery - view.placed_at >= shop.policy.delivery_sla

    await shop.to_carrier(order)
    view = await shop.view(order)
    assert view.payment_status == PaymentStatus.captured
    assert view.payment.captured == Decimal("25.00")
    assert world.level(sku) == (8, 0)  # picked off the shelf

    view = await shop.deliver_all(order)
    assert view.return_window_ends is not None
    await shop.feedback(order, 5, "lovely mug")
    await shop.until(order, lambda v: v.feedback is not None)
    await shop.written(order, "feedback_received")

    await shop.skip(order, shop.policy.return_window)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed
    assert final.payment.authorized == final.payment.captured == Decimal("25.00")
    assert final.payment.refunded == 0
    assert world.money(order) == {"authorization": Decimal("25.00"), "capture": Decimal("25.00")}
    assert world.feedback[order].score == 5
    types = world.event_types(order)
    for expected in (
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
    ):
        assert expected in types, expected
    assert types[-1] == "order_completed"
    assert world.last_status(order) == "completed"
    assert world.messages(order) == ["order_confirmed", "order_shipped", "order_delivered"]
    assert "delivery_overdue" not in types


@pytest.mark.history("payment_declined", plain=True)
async def test_declined_card_rejects_and_reserves_nothing(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("LAMP"), stock={"W1": 3})
    order = await shop.place([(sku, 1)], token=DECLINED_TOKEN)
    final = await shop.result(order)
    assert final.status == OrderStatus.rejected
    assert final.payment_status == PaymentStatus.declined
    assert world.level(sku) == (3, 0)
    assert world.money(order) == {}
    assert "order_rejected" in world.event_types(order)
    assert world.messages(order) == ["order_rejected"]
    # a business refusal is not a stuck step: no step_stuck, no NeedsAttention (tests/test_stuck_steps.py)
    assert "step_stuck" not in [e.type for e in final.events]
    description = await shop.handle(order).describe()
    assert description.typed_search_attributes.get(sa.NEEDS_ATTENTION) is None


async def test_unknown_sku_is_rejected_before_the_gateway(shop: Shop, world: World) -> None:
    order = await shop.place([("NO-SUCH-SKU", 1)])
    final = await shop.result(order)
    assert final.status == OrderStatus.rejected
    assert world.money(order) == {}
    assert "unknown SKU" in world.events[order][max(world.events[order])].detail


@pytest.mark.history("held_then_released")
async def test_held_then_released_goes_on(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("TV"), price="900.00", stock={"W1": 2})
    order = await shop.place([(sku, 1)], policy={"review_above": Decimal("500")})
    view = await shop.settled(order)
    assert view.status == OrderStatus.on_hold
    assert "above the review limit" in (view.hold_reason or "")
    assert [e.reason_code for e in view.events if e.type == "order_on_hold"] == [
        ReasonCode.above_review_limit
    ]
    assert world.level(sku) == (2, 0)  # nothing reserved while held
    await shop.skip(order, shop.policy.hold_timeout / 2)  # a day and a half later support looks at it
    view = await shop.release(order)
    assert view.status != OrderStatus.on_hold
    view = await shop.status(order, OrderStatus.confirmed)
    assert world.level(sku) == (2, 1)
    assert view.payment.authorized == Decimal("900.00")
    assert "hold_released" in [e.type for e in view.events]
    await shop.messaged(order, "order_on_hold")


@pytest.mark.history("hold_timeout")
async def test_hold_timeout_cancels_and_voids(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("TV"), price="900.00", stock={"W1": 2})
    order = await shop.place([(sku, 1)], customer={"id": "C-9", "name": "F", "email": "fraud@example.com"})
    view = await shop.settled(order)
    assert view.status == OrderStatus.on_hold and "blocklist" in (view.hold_reason or "")
    assert [e.reason_code for e in view.events if e.type == "order_on_hold"] == [
        ReasonCode.blocklisted_customer
    ]
    await shop.skip(order, shop.policy.hold_timeout)
    final = await shop.result(order)
    assert final.status == OrderStatus.cancelled
    assert final.payment_status == PaymentStatus.voided
    assert world.money(order) == {"authorization": Decimal("900.00"), "void": Decimal("900.00")}
    assert world.level(sku) == (2, 0)
    (cancelled,) = [e for e in final.events if e.type == "order_cancelled"]
    assert (cancelled.detail, cancelled.reason_code) == (
        "on hold for longer than 3 days, 0:00:00",
        ReasonCode.hold_timeout,
    )
    assert [e.detail for e in final.events if e.type == "compensated"] == ["void the authorization"]
    assert world.messages(order) == ["order_on_hold", "order_cancelled"]
    _, body = world.rendered(order, "order_cancelled")
    assert "on hold for longer than" in body and "nothing was charged" in body
    assert world.last_status(order) == "cancelled"  # what the orders row mirrors


async def test_release_refused_when_not_on_hold(shop: Shop, world: World) -> None:
    from services.orders import Refused

    sku = world.add_product(new_sku("PEN"), stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    with pytest.raises(Refused, match="not on hold"):
        await shop.release(order)
