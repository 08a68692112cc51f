"""Goodwill refunds: support's update on a running order (workflows/order.py, `goodwill_refund`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from models.orders import OrderStatus, PaymentStatus
from services.orders import Refused, Unprocessable
from tests.fast.driver import Shop, new_sku
from tests.fast.fakes import World


async def _delivered(shop: Shop, world: World) -> str:
    sku = world.add_product(new_sku("MUG"), price="30.00", stock={"W1": 5})
    order = await shop.place([(sku, 2)])
    await shop.settled(order)
    await shop.to_carrier(order)
    await shop.deliver_all(order)
    return order


@pytest.mark.history("goodwill_refund")
async def test_goodwill_refund_after_delivery(shop: Shop, world: World) -> None:
    order = await _delivered(shop, world)
    refund = await shop.goodwill(order, "5.00", "late_delivery", key="gw-1", note="two days late")
    assert (refund.amount, refund.currency, refund.reason) == (Decimal("5.00"), "EUR", "late_delivery")
    again = await shop.goodwill(order, "5.00", "late_delivery", key="gw-1", note="two days late")
    assert again == refund  # the same key: refunded once
    view = await shop.view(order)
    assert (view.payment.refunded, view.payment.goodwill_refunded) == (Decimal("5.00"), Decimal("5.00"))
    assert view.payment_status == PaymentStatus.partially_refunded
    assert [g.key for g in view.goodwill_refunds] == ["gw-1"]
    event = next(e for e in view.events if e.type == "goodwill_refund_issued")
    assert event.reason_code == "late_delivery" and "two days late" in event.detail
    await shop.messaged(order, "goodwill_refund_issued")
    assert world.money(order)["goodwill_refund"] == Decimal("5.00")
    assert world.calls["refund_goodwill"] == 1
    with pytest.raises(Unprocessable, match="at most 55.00 EUR"):
        await shop.goodwill(order, "55.01", "other")
    await shop.skip(order, shop.policy.return_window)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed and final.payment.goodwill_refunded == Decimal("5.00")


async def test_goodwill_refund_is_refused_before_capture_and_in_another_currency(
    shop: Shop, world: World
) -> None:
    sku = world.add_product(new_sku("MUG"), price="30.00", stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    with pytest.raises(Refused, match="nothing has been captured"):
        await shop.goodwill(order, "5.00")
    await shop.to_carrier(order)
    with pytest.raises(Unprocessable, match="paid in EUR, not USD"):
        await shop.goodwill(order, "5.00", currency="USD")
    assert "goodwill_refund" not in world.money(order)


async def test_concurrent_goodwill_refunds_never_exceed_the_capture(shop: Shop, world: World) -> None:
    order = await _delivered(shop, world)  # 60.00 captured
    results = await asyncio.gather(
        *(shop.goodwill(order, "25.00", key=f"c-{n}") for n in range(3)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], Unprocessable), results
    assert world.money(order)["goodwill_refund"] == Decimal("50.00")
    view = await shop.view(order)
    assert view.payment.refunded == Decimal("50.00")
