"""The order's money through its life (issue 26): authorized in full, captured per shipment by the share
rule (models/order_money.py), a returned unit refunds its discounted price and tax, a lost parcel its
share of the shipping too. Every figure to the cent."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.orders import OrderInput, OrderStatus, ReturnStatus, ShipmentStatus
from models.shipping import CarrierEventType, Resolution
from services import orders as orders_service
from tests.fast.driver import Shop, new_sku
from tests.fast.fakes import World
from tests.helpers import money_order_doc

D = Decimal


async def _place(shop: Shop, world: World) -> tuple[str, str, str]:
    mug = world.add_product(new_sku("MUG"), price="10.00", stock={"W1": 5})
    lamp = world.add_product(new_sku("LAMP"), price="10.00", stock={"W2": 5})
    doc = money_order_doc(mug, lamp)
    placed = await orders_service.place_order(
        shop.client, shop.settings, OrderInput.model_validate(doc), shop.policy
    )
    return placed.order_id, mug, lamp


async def test_authorized_in_full_captured_by_shares_and_returns_refund_line_and_tax(
    shop: Shop, world: World
) -> None:
    order, mug, lamp = await _place(shop, world)
    view = await shop.settled(order)
    assert (view.subtotal, view.discounts, view.shipping, view.tax, view.total) == (
        D("40.00"),
        D("3.00"),
        D("5.00"),
        D("8.40"),
        D("50.40"),
    )
    assert view.payment.authorized == D("50.40")
    # mugs 32.40 and the lamp 12.00, the shipping's 6.00 shared 32.40 : 12.00 (rounded down, the rest last)
    amounts = {s.lines[0].sku: s.amount for s in view.shipments}
    assert sum(amounts.values(), D(0)) == D("50.40")
    assert {amounts[mug] - D("32.40"), amounts[lamp] - D("12.00")} == {D("4.37"), D("1.63")}

    await shop.to_carrier(order)
    view = await shop.deliver_all(order)
    assert view.payment.captured == D("50.40")

    first = await shop.request_return(order, mug, 1)
    await shop.receive_return(order, first.rma, "good")
    view = await shop.status(order, OrderStatus.partially_returned)
    assert view.payment.refunded == D("10.80")  # (30.00 - 3.00 + 5.40) / 3: no shipping
    second = await shop.request_return(order, mug, 2)
    await shop.receive_return(order, second.rma, "good")
    view = await shop.until(order, lambda v: v.payment.refunded == D("32.40"), "both returns refunded")
    assert world.money(order)["refund"] == D("32.40")


async def test_nothing_delivered_refunds_everything_shipping_included(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    view = await shop.to_carrier(order)
    for shipment in view.shipments:
        await shop.carrier(order, shipment.id, CarrierEventType.in_transit)
        await shop.carrier(order, shipment.id, CarrierEventType.lost)
    await shop.status(order, OrderStatus.delivery_exception)
    for shipment in view.shipments:
        await shop.resolve(order, shipment.id, Resolution.refund)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed
    assert final.payment.captured == final.payment.refunded == D("50.40")


@pytest.mark.history("money_reship_short_pick")
async def test_a_short_picked_reship_is_not_charged_again(shop: Shop, world: World) -> None:
    """The one path whose commands issue 26 changes (so it ships as a new build): a reship carries no
    charge, and the units its warehouse could not find move on with that nothing (models/order_money.py
    `split` of the shipment's 0.00). Before, they were charged again at list price: a second capture."""
    sku = world.add_product(new_sku("CLOCK"), price="50.00", stock={"W1": 2, "W2": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await shop.to_carrier(order)
    lost = view.shipments[0]
    await shop.carrier(order, lost.id, CarrierEventType.in_transit)
    await shop.carrier(order, lost.id, CarrierEventType.lost)
    await shop.status(order, OrderStatus.delivery_exception)
    await shop.resolve(order, lost.id, Resolution.reship)
    view = await shop.until(order, lambda v: len(v.shipments) == 2)
    reship = view.shipments[1]
    assert reship.amount == 0
    await shop.until(order, lambda v: v.shipments[1].status == ShipmentStatus.released)
    await shop.pick(reship, found={sku: 0})
    view = await shop.until(order, lambda v: len(v.shipments) == 3)
    moved = view.shipments[2]
    assert moved.replaces == reship.id and moved.amount == 0
    await shop.until(order, lambda v: v.shipments[2].status == ShipmentStatus.released)
    await shop.ship(order, moved)
    view = await shop.deliver_all(order)
    assert (view.payment.authorized, view.payment.captured, view.payment.refunded) == (
        D("50.00"),
        D("50.00"),
        D("0.00"),
    )
    assert world.money(order) == {"authorization": D("50.00"), "capture": D("50.00")}


async def _exchange_a_mug(shop: Shop, world: World, price: str) -> tuple[str, str]:
    """The money order delivered, then one of its discounted, taxed mugs (it charged 10.80: 10.00 less
    1.00 of the discount, plus 1.80 VAT) exchanged for a product at catalog `price`."""
    order, mug, _ = await _place(shop, world)
    await shop.settled(order)
    await shop.to_carrier(order)
    await shop.deliver_all(order)
    other = world.add_product(new_sku("CUP"), price=price, stock={"W1": 3})
    ret = await shop.request_return(order, mug, 1, exchange_sku=other)
    await shop.receive_return(order, ret.rma, "good")
    await shop.until(order, lambda v: v.returns[0].status == ReturnStatus.exchanged, "exchanged")
    return order, other


@pytest.mark.history("money_exchange")
async def test_an_exchange_at_the_same_catalog_price_charges_the_discount_back(
    shop: Shop, world: World
) -> None:
    """The replacement costs its catalog 10.00 plus the mug's 20 % VAT (12.00); the mug credits what was
    paid for it (10.80): 1.20 more, its share of the discount and that share's tax. (Unit prices alone
    would have made it 0.00.)"""
    order, other = await _exchange_a_mug(shop, world, "10.00")
    view = await shop.until(order, lambda v: v.payment.captured == D("51.60"), "the difference captured")
    assert (view.payment.authorized, view.payment.refunded) == (D("51.60"), D("0.00"))
    replacement = next(s for s in view.shipments if s.exchange_for)
    assert (replacement.lines[0].sku, replacement.amount) == (other, D("1.20"))
    assert world.money(order) == {"authorization": D("51.60"), "capture": D("51.60")}


async def test_an_exchange_for_a_cheaper_product_refunds_what_was_paid_less_its_taxed_price(
    shop: Shop, world: World
) -> None:
    """A 5.00 replacement with 20 % VAT charges 6.00: 10.80 - 6.00 = 4.80 back (unit prices: 5.00)."""
    order, _ = await _exchange_a_mug(shop, world, "5.00")
    view = await shop.until(order, lambda v: v.payment.refunded > 0, "the difference refunded")
    assert (view.payment.captured, view.payment.refunded) == (D("50.40"), D("4.80"))
    assert view.returns[0].refund_amount == D("4.80")
    assert view.status == OrderStatus.delivered  # the customer keeps goods: not a returned order
