"""Partial cancellation (issue 26): some units of some lines cancelled before they are handed over.

The order of test_money (mugs 32.40 from W1, a lamp 12.00 from W2, shipping 6.00 shared 4.37 : 1.63,
total 50.40) loses one of its three mugs: its shipment keeps 2/3 of its goods and its share of the
shipping goes down in proportion (split of the shipment's 36.77 by 21.60 : 10.80 -> 24.51 kept, 12.26
cancelled), and the order ships the rest, capturing 24.51 + 13.63 = 38.14; the 12.26 is released."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from models.events import ReasonCode
from models.orders import CancelLine, CancelRequest, OrderStatus, PaymentStatus, ShipmentStatus
from models.workflow_names import OrderUpdate
from services import orders as orders_service
from services.orders import Refused
from tests.fast.driver import Shop, new_sku
from tests.fast.fakes import World
from tests.fast.test_money import _place

D = Decimal


@pytest.mark.history("partial_cancel_in_release_window")
async def test_partial_cancel_before_release_ships_the_rest(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    view = await shop.cancel(order, "one is enough", lines={mug: 1})
    assert view.status == OrderStatus.confirmed
    s1 = next(s for s in view.shipments if s.warehouse == "W1")
    s2 = next(s for s in view.shipments if s.warehouse == "W2")
    assert [(x.sku, x.quantity) for x in s1.lines] == [(mug, 2)]
    assert (s1.amount, s2.amount) == (D("24.51"), D("13.63"))
    assert world.level(mug, "W1") == (5, 2)  # one unit's reservation released
    cancelled = [e for e in view.events if e.type == "lines_cancelled"]
    assert len(cancelled) == 1 and cancelled[0].reason_code == ReasonCode.cancelled_by_support
    assert f"1 x {mug}: cancelled: one is enough (by agent-1); 12.26" in cancelled[0].detail
    message = world.message(order, "lines_cancelled_by_request")
    assert message.context["reason"] == "one is enough" and "12.26" in message.context["money"]

    view = await shop.to_carrier(order)
    assert view.payment.captured == D("38.14")
    view = await shop.deliver_all(order)
    view = await shop.until(order, lambda v: any(e.type == "authorization_released" for e in v.events))
    assert world.money(order) == {"authorization": D("50.40"), "capture": D("38.14"), "void": D("12.26")}
    assert world.level(mug, "W1") == (3, 0) and world.level(lamp, "W2") == (4, 0)


@pytest.mark.history("partial_cancel_after_pick")
async def test_partial_cancel_after_pick_restocks(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("BOOK"), price="15.00", stock={"W1": 4})
    order = await shop.place([(sku, 3)])
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    await shop.pick(view.shipments[0])
    await shop.until(order, lambda v: v.shipments[0].status == ShipmentStatus.picked)
    assert world.level(sku) == (1, 0)
    view = await shop.cancel(order, "too many", lines={sku: 2})
    shipment = view.shipments[0]
    assert [(x.quantity, shipment.amount) for x in shipment.lines] == [(1, D("15.00"))]
    assert world.level(sku) == (3, 0)  # two picked units back on the shelf
    await shop.pack(shipment.id)
    await shop.hand_over(shipment.id)
    view = await shop.deliver_all(order)
    view = await shop.until(order, lambda v: any(e.type == "authorization_released" for e in v.events))
    assert world.money(order) == {"authorization": D("45.00"), "capture": D("15.00"), "void": D("30.00")}


async def test_a_shipment_with_nothing_left_is_cancelled(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    view = await shop.cancel(order, lines={lamp: 1})
    s2 = next(s for s in view.shipments if s.warehouse == "W2")
    assert s2.status == ShipmentStatus.cancelled and s2.lines == []
    assert world.level(lamp, "W2") == (5, 0)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    await shop.ship(order, next(s for s in view.shipments if s.warehouse == "W1"))  # the mugs alone
    view = await shop.status(order, OrderStatus.shipped)
    assert view.payment.captured == D("36.77")


async def test_cancelling_every_unit_is_a_whole_cancel(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    await shop.cancel(order, lines={mug: 3, lamp: 1})
    final = await shop.result(order)
    assert final.status == OrderStatus.cancelled
    assert final.payment_status == PaymentStatus.voided
    assert world.money(order) == {"authorization": D("50.40"), "void": D("50.40")}
    assert world.level(mug, "W1") == (5, 0) and world.level(lamp, "W2") == (5, 0)


async def test_refusals_move_nothing(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    with pytest.raises(Refused, match="is not on order"):
        await shop.cancel(order, lines={"NOPE": 1})
    with pytest.raises(Refused, match=f"only 3 x {mug} .* can still be cancelled, not 4"):
        await shop.cancel(order, lines={mug: 4})
    # past the doors' model (a request sent straight to the workflow): the workflow's model refuses it
    zero = CancelRequest.model_construct(
        reason="x", by="agent-1", lines=[CancelLine.model_construct(sku=mug, quantity=0)]
    )
    with pytest.raises(Refused):
        await orders_service.update_order(shop.client, order, OrderUpdate.cancel, object, zero)
    view = await shop.view(order)
    assert sum(s.amount for s in view.shipments) == D("50.40")
    assert world.level(mug, "W1") == (5, 3) and "lines_cancelled" not in world.event_types(order)


async def test_refused_once_packed_or_handed_over_and_once_ended(shop: Shop, world: World) -> None:
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    s1 = next(s for s in view.shipments if s.warehouse == "W1")
    s2 = next(s for s in view.shipments if s.warehouse == "W2")
    await shop.ship(order, s1)  # the mugs are with the carrier
    await shop.pick(s2)
    await shop.pack(s2.id)
    with pytest.raises(Refused, match=f"only 0 x {mug} .*{s1.id} shipped"):
        await shop.cancel(order, lines={mug: 1})
    with pytest.raises(Refused, match=f"only 0 x {lamp} .*{s2.id} packed"):
        await shop.cancel(order, lines={lamp: 1})
    await shop.hand_over(s2.id)
    await shop.status(order, OrderStatus.shipped)
    with pytest.raises(Refused, match="can no longer be cancelled"):
        await shop.cancel(order, lines={lamp: 1})


async def test_refused_once_the_order_ended(shop: Shop, world: World) -> None:
    order, mug, _ = await _place(shop, world)
    await shop.settled(order)
    await shop.cancel(order)
    await shop.result(order)
    with pytest.raises(Refused, match="is closed"):
        await shop.cancel(order, lines={mug: 1})


async def test_a_cancel_racing_a_handover_is_applied_before_it_or_refused(shop: Shop, world: World) -> None:
    """The validator sees the order as it is at that moment: a unit is cancelled only while its shipment is
    not yet packed, so it is either off the shipment (and its amount) before the handover, or refused."""
    order, mug, lamp = await _place(shop, world)
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    s1 = next(s for s in view.shipments if s.warehouse == "W1")
    await shop.pick(s1)
    await shop.pack(s1.id)
    handed, cancelled = await asyncio.gather(
        shop.hand_over(s1.id), shop.cancel(order, lines={mug: 1}), return_exceptions=True
    )
    assert not isinstance(handed, BaseException)
    assert isinstance(cancelled, Refused)  # packed: its units go with the parcel
    view = await shop.view(order)
    assert next(s for s in view.shipments if s.id == s1.id).amount == D("36.77")
    assert view.payment.captured == D("36.77") and world.level(mug, "W1") == (2, 0)
    # the other shipment, not yet picked, gives up its lamp while the first one's parcel leaves
    s2 = next(s for s in view.shipments if s.warehouse == "W2")
    view = await shop.cancel(order, lines={lamp: 1})
    assert next(s for s in view.shipments if s.id == s2.id).status == ShipmentStatus.cancelled
