"""Line edits before release (issue 26, workflows/line_edits.py): add a line, change a quantity, remove
one; the stock re-reserved, the hold on the card grown (an increment) or shrunk (a void of part of it),
each shipment's amount shared out again, to the cent; refusals move nothing."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from models.orders import EditIn, EditLineIn, EditRequest, OrderInput, OrderStatus, OrderView, ShipmentStatus
from models.workflow_names import OrderUpdate
from services import orders as orders_service
from services.orders import Refused, Unprocessable
from tests.fast.driver import WAIT, Shop, eventually, new_sku
from tests.fast.fakes import NO_INCREMENT_TOKEN, SLOW_CITY, World
from tests.fast.test_edits import BERLIN
from tests.helpers import money_order_doc

D = Decimal


async def _edit(shop: Shop, order: str, **fields: object) -> object:
    return await orders_service.edit_order(shop.client, order, EditIn.model_validate(fields), by="agent-1")


async def _money_order(shop: Shop, world: World, token: str = "tok_visa") -> tuple[str, str, str]:
    """money_order_doc: 3 mugs (W1) and a lamp (W2), 50.40 with shipping, VAT at 0.2 and a discount."""
    mug = world.add_product(new_sku("MUG"), price="10.00", stock={"W1": 6})
    lamp = world.add_product(new_sku("LAMP"), price="10.00", stock={"W2": 5})
    doc = money_order_doc(mug, lamp)
    doc["payment"] = {"method": "card", "token": token}
    placed = await orders_service.place_order(
        shop.client, shop.settings, OrderInput.model_validate(doc), shop.policy
    )
    await shop.settled(placed.order_id)
    return placed.order_id, mug, lamp


def _figures(view: object) -> tuple[Decimal | None, ...]:
    return (view.subtotal, view.discounts, view.shipping, view.tax, view.total)  # type: ignore[attr-defined]


@pytest.mark.history("edit_lines_up")
async def test_adding_units_reserves_them_and_holds_the_difference(shop: Shop, world: World) -> None:
    order, mug, lamp = await _money_order(shop, world)
    tea = world.add_product(new_sku("TEA"), price="5.00", stock={"W1": 3})
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 4}, {"sku": tea, "quantity": 1}])
    # mugs: 40.00 less 4.00 (the discount scales: 3.00 x 4/3) plus 7.20 VAT (5.40 x 4/3); the tea at the
    # catalog's 5.00 taxed at the order's 0.2 (1.00); the lamp and the shipping as they were
    assert _figures(view) == (D("55.00"), D("4.00"), D("5.00"), D("11.20"), D("67.20"))
    assert [(x.sku, x.quantity, x.discount, x.tax) for x in view.lines] == [
        (mug, 4, D("4.00"), D("7.20")),
        (lamp, 1, D("0.00"), D("2.00")),
        (tea, 1, D("0.00"), D("1.00")),
    ]
    assert view.payment.authorized == D("67.20")
    assert world.money(order) == {"authorization": D("50.40"), "increment": D("16.80")}
    # the units added are a shipment of their own; every shipment's amount shared out again
    added = view.shipments[-1]
    assert (added.warehouse, sorted((x.sku, x.quantity) for x in added.lines)) == (
        "W1",
        sorted([(mug, 1), (tea, 1)]),
    )
    assert sum((s.amount for s in view.shipments), D(0)) == D("67.20")
    assert world.level(mug, "W1") == (6, 4) and world.level(tea, "W1") == (3, 1)
    assert world.edited_lines[order].total == D("67.20")
    edited = [e.detail for e in view.events if e.type == "order_edited"]
    assert edited == [
        f"lines now 4 x {mug}, 1 x {lamp}, 1 x {tea}; total 50.40 EUR -> 67.20 EUR (by agent-1)"
    ]
    await shop.messaged(order, "order_edited")
    assert "67.20" in world.message(order, "order_edited").context["change"]

    await shop.to_carrier(order)
    view = await shop.deliver_all(order)
    assert view.payment.captured == D("67.20")
    assert world.money(order) == {"authorization": D("50.40"), "increment": D("16.80"), "capture": D("67.20")}
    assert world.level(mug, "W1") == (2, 0) and world.level(tea, "W1") == (2, 0)


@pytest.mark.history("edit_lines_down")
async def test_removing_units_releases_them_and_the_hold_and_going_back_restores_the_figures(
    shop: Shop, world: World
) -> None:
    order, mug, lamp = await _money_order(shop, world)
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 1}, {"sku": lamp, "quantity": 0}])
    # one mug: 10.00 less 1.00, 1.80 VAT; the shipping stays (6.00 with its VAT)
    assert _figures(view) == (D("10.00"), D("1.00"), D("5.00"), D("2.80"), D("16.80"))
    assert world.money(order) == {"authorization": D("50.40"), "void": D("33.60")}
    lamp_shipment = next(s for s in view.shipments if s.warehouse == "W2")
    assert lamp_shipment.status == ShipmentStatus.cancelled and lamp_shipment.amount == 0
    assert world.level(mug, "W1") == (6, 1) and world.level(lamp, "W2") == (5, 0)
    assert any(e.type == "authorization_released" and "33.60" in e.detail for e in view.events)

    # back to the order as placed: the placed figures exactly (the discount and VAT scale back), the
    # lamp at the price it was placed at, whatever the catalog says now
    world.catalog[lamp].price = D("99.00")
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 3}, {"sku": lamp, "quantity": 1}])
    assert _figures(view) == (D("40.00"), D("3.00"), D("5.00"), D("8.40"), D("50.40"))
    assert world.money(order) == {"authorization": D("50.40"), "void": D("33.60"), "increment": D("33.60")}
    live = [s for s in view.shipments if s.status != ShipmentStatus.cancelled]
    assert sum((s.amount for s in live), D(0)) == D("50.40")
    await shop.to_carrier(order)
    view = await shop.deliver_all(order)
    assert view.payment.captured == D("50.40")
    assert world.level(mug, "W1") == (3, 0) and world.level(lamp, "W2") == (4, 0)


async def test_refused_edits_move_nothing(shop: Shop, world: World) -> None:
    order, mug, lamp = await _money_order(shop, world)
    before = (world.level(mug, "W1"), world.level(lamp, "W2"), world.money(order))

    def unchanged() -> None:
        assert (world.level(mug, "W1"), world.level(lamp, "W2"), world.money(order)) == before
        assert order not in world.edited_lines

    with pytest.raises(Refused, match=f"needs 4 x {mug} more: out of stock"):
        await _edit(shop, order, lines=[{"sku": mug, "quantity": 7}])
    unchanged()
    with pytest.raises(Unprocessable, match="cannot add NO-SUCH-SKU: SKU NO-SUCH-SKU is unknown"):
        await _edit(shop, order, lines=[{"sku": "NO-SUCH-SKU", "quantity": 1}])
    unchanged()
    with pytest.raises(Unprocessable, match="cannot remove every line"):
        await _edit(shop, order, lines=[{"sku": mug, "quantity": 0}, {"sku": lamp, "quantity": 0}])
    unchanged()
    with pytest.raises(Exception, match=f"SKU {mug} named more than once"):
        await _edit(shop, order, lines=[{"sku": mug, "quantity": 1}, {"sku": mug, "quantity": 2}])
    unchanged()
    # the workflow's validator says the same to a caller that sends the update itself, past the door
    twice = EditRequest(
        lines=[EditLineIn(sku=mug, quantity=1), EditLineIn(sku=mug, quantity=2)], by="agent-1"
    )
    with pytest.raises(Unprocessable, match=f"SKU {mug} named more than once"):
        await orders_service.update_order(
            shop.client, order, OrderUpdate.edit, OrderView, twice, refusals={"EditInvalid": Unprocessable}
        )
    unchanged()
    crown = world.add_product(new_sku("CROWN"), price="5000000.00", stock={"W1": 1})
    with pytest.raises(Unprocessable, match="the edited total .* is more than an order can be"):
        await _edit(shop, order, lines=[{"sku": crown, "quantity": 10_000}])
    unchanged()
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 3}])  # as it is: nothing to do
    assert not [e for e in view.events if e.type == "order_edited"]
    unchanged()
    # released: lines can no longer change
    await shop.skip(order, shop.policy.release_delay)
    await shop.released(order)
    with pytest.raises(Refused, match="released to the warehouse: its lines can no longer be changed"):
        await _edit(shop, order, lines=[{"sku": mug, "quantity": 2}])
    unchanged()


async def test_a_card_whose_hold_cannot_grow_refuses_the_edit_and_releases_the_units(
    shop: Shop, world: World
) -> None:
    order, mug, lamp = await _money_order(shop, world, token=NO_INCREMENT_TOKEN)
    with pytest.raises(
        Refused, match="hold could not grow by 10.80 EUR .*incremental_authorization_unavailable"
    ):
        await _edit(shop, order, lines=[{"sku": mug, "quantity": 4}])
    view = await shop.view(order)
    assert world.level(mug, "W1") == (6, 3)  # the unit reserved for the edit went back
    assert world.money(order) == {"authorization": D("50.40")}
    assert _figures(view) == (D("40.00"), D("3.00"), D("5.00"), D("8.40"), D("50.40"))
    assert not [e for e in view.events if e.type == "order_edited"]
    # a lower total needs no more hold: that edit goes through
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 2}])
    assert view.total == D("39.60") and world.money(order)["void"] == D("10.80")


async def test_a_cancel_during_an_edit_undoes_the_edit_too(shop: Shop, world: World) -> None:
    """The edit (lines, then a slow address step) finishes first; the cancellation's compensation then
    releases the units the edit added and the whole hold, the increment with it."""
    order, mug, lamp = await _money_order(shop, world)
    editing = asyncio.create_task(
        _edit(
            shop, order, lines=[{"sku": mug, "quantity": 5}], shipping_address={**BERLIN, "city": SLOW_CITY}
        )
    )
    await eventually(lambda: order in world.edits_begun, bool, "the edit under way")
    cancelled = await shop.cancel(order, "changed their mind")
    await asyncio.wait_for(editing, WAIT)
    assert cancelled.status == OrderStatus.cancelled
    assert world.level(mug, "W1") == (6, 0) and world.level(lamp, "W2") == (5, 0)
    money = world.money(order)
    assert money["increment"] == D("21.60") and money["void"] == money["authorization"] + money["increment"]


async def test_a_partial_cancel_releases_its_part_of_the_hold_at_once(shop: Shop, world: World) -> None:
    order, mug, _ = await _money_order(shop, world)
    await shop.cancel(order, "one is enough", lines={mug: 1})
    assert world.money(order) == {"authorization": D("50.40"), "void": D("12.26")}
    # an edit after it starts from what is left: 2 mugs back to 3 holds the 12.26 again
    view = await _edit(shop, order, lines=[{"sku": mug, "quantity": 3}])
    assert view.total == D("50.40")
    assert world.money(order) == {"authorization": D("50.40"), "void": D("12.26"), "increment": D("12.26")}
