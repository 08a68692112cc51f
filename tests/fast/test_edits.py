"""Order edits (issue 26): the shipping address before release (workflows/order.py, `edit`), and after
release if the warehouses accept (workflows/address_change.py)."""

from __future__ import annotations

import asyncio

import pytest

from models.orders import Address, EditIn, OrderStatus
from services import orders as orders_service
from services.orders import Refused, Unprocessable
from tests.fast.driver import WAIT, Shop, eventually, new_sku
from tests.fast.fakes import SLOW_CITY, World

SERVED = frozenset({"GB", "DE"})
BERLIN = {
    "name": "Ada",
    "line1": "Unter den Linden 1",
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}


async def _edit(shop: Shop, order: str, **fields: object) -> object:
    edit = EditIn.model_validate(fields)
    return await orders_service.edit_order(shop.client, order, edit, served=SERVED, by="agent-1")


@pytest.mark.history("edit_address")
async def test_address_edit_before_release_ships_to_the_new_address(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("MUG"), price="30.00", stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    view = await _edit(shop, order, shipping_address=BERLIN)
    assert view.status == OrderStatus.confirmed and view.shipping_city == "Berlin"
    assert world.addresses[order]["city"] == "Berlin"
    await shop.written(order, "order_edited")
    await shop.messaged(order, "order_edited")
    assert "Berlin" in world.rendered(order, "order_edited")[1]
    shipped = await shop.to_carrier(order)
    assert {world.shipped_to[s.id] for s in shipped.shipments} == {"Berlin"}
    with pytest.raises(Refused, match="handed over to the carrier"):  # handed over: refused, nothing moved
        await _edit(shop, order, shipping_address={**BERLIN, "city": "Hamburg"})
    assert world.addresses[order]["city"] == "Berlin"


async def test_edits_refused_with_their_reason(shop: Shop, world: World) -> None:
    sku = world.add_product(new_sku("MUG"), price="30.00", stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    with pytest.raises(Unprocessable, match="we do not ship to FR"):
        await _edit(shop, order, shipping_address={**BERLIN, "country": "FR"})
    assert order not in world.addresses
    await shop.cancel(order)
    with pytest.raises(Refused, match="can no longer be edited|is closed|cancelled"):
        await _edit(shop, order, shipping_address=BERLIN)
    assert order not in world.addresses
    Address.model_validate(BERLIN)


async def test_edits_racing_each_other_apply_one_after_the_other(shop: Shop, world: World) -> None:
    """An edit's step is a local activity: a second edit sent meanwhile is validated once the first is
    done (it sees the first's state), and applied after it; the last one wins."""
    sku = world.add_product(new_sku("MUG"), price="30.00", stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    first = asyncio.create_task(_edit(shop, order, shipping_address={**BERLIN, "city": SLOW_CITY}))
    await eventually(lambda: order in world.edits_begun, bool, "the edit under way")
    second = await _edit(shop, order, shipping_address={**BERLIN, "city": "Hamburg"})
    assert first.done()
    await asyncio.wait_for(first, WAIT)
    edited = [e.detail for e in second.events if e.type == "order_edited"]
    assert [d.split(",")[0] for d in edited] == [
        f"shipping address now {SLOW_CITY}",
        "shipping address now Hamburg",
    ]
    assert world.addresses[order]["city"] == "Hamburg"
    shipped = await shop.to_carrier(order)
    assert {world.shipped_to[s.id] for s in shipped.shipments} == {"Hamburg"}


# ---- after release: the warehouses are asked ----

HAMBURG = {**BERLIN, "line1": "Jungfernstieg 7", "city": "Hamburg", "postal_code": "20354"}


async def _released(shop: Shop, world: World, stock: dict[str, int] | None = None) -> tuple[str, list[str]]:
    """An order of one unit per warehouse in `stock`, past its release window: (order, shipment ids)."""
    skus = [
        world.add_product(new_sku("MUG"), price="30.00", stock={w: n})
        for w, n in (stock or {"W1": 5}).items()
    ]
    order = await shop.place([(sku, 1) for sku in skus])
    await shop.settled(order)
    await shop.skip(order, shop.policy.release_delay)
    view = await shop.released(order)
    return order, [s.id for s in view.shipments]


def _edited(world: World, order: str) -> list[str]:
    return [e.detail for _, e in sorted(world.events[order].items()) if e.type == "order_edited"]


@pytest.mark.history("edit_address_after_release")
async def test_address_edit_after_pick_asks_the_warehouse_and_the_label_follows(
    shop: Shop, world: World
) -> None:
    order, (shipment,) = await _released(shop, world)
    await shop.pick((await shop.view(order)).shipments[0])
    view = await _edit(shop, order, shipping_address=HAMBURG)
    assert view.status == OrderStatus.picking and view.shipping_city == "Hamburg"
    (asked,) = [a for a in world.address_asks if a.order_id == order]
    assert (asked.shipment_id, asked.warehouse, asked.address.city, asked.labelled) == (
        shipment,
        "W1",
        "Hamburg",
        False,
    )
    assert world.addresses[order]["city"] == "Hamburg"
    await shop.written(order, "order_edited")
    await shop.messaged(order, "order_edited")
    assert "Hamburg" in world.rendered(order, "order_edited")[1]
    packed = await shop.pack(shipment)  # the label is printed from the edited order
    assert world.shipped_to[shipment] == "Hamburg" and "label" in packed.detail
    await shop.hand_over(shipment)
    await shop.status(order, "shipped")
    await shop.deliver_all(order)


async def test_address_edit_after_pack_relabels_the_parcel(shop: Shop, world: World) -> None:
    order, (shipment,) = await _released(shop, world)
    await shop.pick((await shop.view(order)).shipments[0])
    await shop.pack(shipment)
    first = next(s for s in (await shop.view(order)).shipments if s.id == shipment)
    assert world.shipped_to[shipment] != "Hamburg"
    view = await _edit(shop, order, shipping_address=HAMBURG)
    parcel = next(s for s in view.shipments if s.id == shipment)
    assert world.address_asks[-1].labelled and world.shipped_to[shipment] == "Hamburg"
    assert parcel.tracking_number != first.tracking_number and parcel.label_ref != first.label_ref
    assert world.bookings[first.tracking_number or ""] == "cancelled"  # the old label's booking
    assert world.bookings[parcel.tracking_number or ""] == "booked"
    await shop.written(order, "order_edited")
    relabelled = [e.detail for _, e in sorted(world.events[order].items()) if "relabelled" in e.detail]
    assert relabelled == [
        f"{shipment}: relabelled for the new address: FakeExpress {parcel.tracking_number} ({parcel.label_ref})"
    ]
    await shop.hand_over(shipment)
    shipped = await shop.status(order, "shipped")
    assert shipped.shipments[0].tracking_number == parcel.tracking_number
    await shop.deliver_all(order)  # the carrier reports on the new label's tracking number


async def test_a_warehouse_refusing_refuses_the_edit_and_nothing_changes(shop: Shop, world: World) -> None:
    order, shipments = await _released(shop, world, {"W1": 5, "W2": 5})
    assert len(shipments) == 2
    world.address_refusals["W2"] = "the parcel is already on the conveyor"
    before = await shop.view(order)
    with pytest.raises(Refused, match="warehouse W2 refused the new address .* already on the conveyor"):
        await _edit(shop, order, shipping_address=HAMBURG)
    world.address_refusals.clear()
    after = await shop.view(order)
    assert after.shipping_city == before.shipping_city  # never edited: none in the view
    assert order not in world.addresses and _edited(world, order) == []
    assert "order_edited" not in world.messages(order)
    # W1 had accepted: it was asked to keep the address it had
    asks = [(a.warehouse, a.address.city) for a in world.address_asks if a.order_id == order]
    assert asks == [("W1", "Hamburg"), ("W2", "Hamburg"), ("W1", "London")]
    assert [s.status for s in after.shipments] == [s.status for s in before.shipments]


async def test_edit_refused_once_any_parcel_is_handed_over(shop: Shop, world: World) -> None:
    order, shipments = await _released(shop, world, {"W1": 5, "W2": 5})
    view = await shop.view(order)
    await shop.ship(order, view.shipments[0])
    asked = len(world.address_asks)
    with pytest.raises(Refused, match=rf"handed over to the carrier \({shipments[0]} \(shipped\)\)"):
        await _edit(shop, order, shipping_address=HAMBURG)
    assert len(world.address_asks) == asked and order not in world.addresses and _edited(world, order) == []


async def test_a_report_racing_an_edit_waits_for_it(shop: Shop, world: World) -> None:
    """The warehouse reports the pack while its answer to the address change is on its way: the report
    is acted on once the edit is applied, so the label goes to the new address."""
    order, (shipment,) = await _released(shop, world)
    await shop.pick((await shop.view(order)).shipments[0])
    world.address_stall = 1.5
    try:
        editing = asyncio.create_task(_edit(shop, order, shipping_address=HAMBURG))
        await eventually(
            lambda: [a for a in world.address_asks if a.order_id == order], bool, "the warehouse asked"
        )
        packed = await shop.pack(shipment)
    finally:
        world.address_stall = 0.0
    assert editing.done() and (await editing).shipping_city == "Hamburg"
    assert world.shipped_to[shipment] == "Hamburg" and "label" in packed.detail
    assert not any(a.labelled for a in world.address_asks if a.order_id == order)  # asked before the pack


async def test_an_edit_racing_a_report_being_recorded_is_refused(shop: Shop, world: World) -> None:
    """A pack is being acted on (its label is being booked): the edit is refused, nothing changed, and
    may be sent again once the report is through (then the parcel is relabelled)."""
    order, (shipment,) = await _released(shop, world)
    await shop.pick((await shop.view(order)).shipments[0])
    booked = world.calls["book_carrier"]
    world.fail("book_carrier", 3)
    packing = asyncio.create_task(shop.pack(shipment))
    await eventually(lambda: world.calls["book_carrier"], lambda n: n > booked, "the label being booked")
    with pytest.raises(Refused, match=f"a warehouse report on {shipment} is being recorded"):
        await _edit(shop, order, shipping_address=HAMBURG)
    assert order not in world.addresses and not [a for a in world.address_asks if a.order_id == order]
    await asyncio.wait_for(packing, WAIT)
    view = await _edit(shop, order, shipping_address=HAMBURG)
    assert view.shipping_city == "Hamburg" and world.shipped_to[shipment] == "Hamburg"


async def test_a_carrier_refusing_the_new_label_refuses_the_edit(shop: Shop, world: World) -> None:
    order, (shipment,) = await _released(shop, world)
    await shop.pick((await shop.view(order)).shipments[0])
    await shop.pack(shipment)
    before = next(s for s in (await shop.view(order)).shipments if s.id == shipment)
    with pytest.raises(
        Refused, match=f"the carrier refused the new address for {shipment}: no service to postal code ZZ9"
    ):
        await _edit(shop, order, shipping_address={**HAMBURG, "postal_code": "ZZ9"})
    after = next(s for s in (await shop.view(order)).shipments if s.id == shipment)
    assert (after.tracking_number, after.label_ref) == (before.tracking_number, before.label_ref)
    assert world.bookings[before.tracking_number or ""] == "booked"
    assert order not in world.addresses and _edited(world, order) == []
    assert [a.address.city for a in world.address_asks if a.order_id == order] == ["Hamburg", "London"]
