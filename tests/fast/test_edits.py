"""Order edits (issue 26): the shipping address before release (workflows/order.py, `edit`)."""

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
    with pytest.raises(Refused, match="released to the warehouse"):  # after release: refused, nothing moved
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
