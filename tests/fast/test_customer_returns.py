"""Issue 26: returns the customer starts (the tracking page): the order's `customer_return` update, then
support's `decide_return` (approve: the RMA goes the existing return path; decline), or approval at once
under the auto-approval limit."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from models.orders import OrderStatus, PaymentStatus, ReturnStatus
from services.orders import Refused
from tests.fast.driver import Shop, new_sku
from tests.fast.fakes import World


async def _delivered(shop: Shop, world: World) -> tuple[str, str, str]:
    shoe = world.add_product(new_sku("SHOE"), price="20.00", stock={"W1": 5})
    sock = world.add_product(new_sku("SOCK"), price="5.00", stock={"W1": 5})
    order = await shop.place([(shoe, 2), (sock, 3)])
    await shop.settled(order)
    await shop.to_carrier(order)
    await shop.deliver_all(order)
    return order, shoe, sock


@pytest.mark.history("customer_return_approved")
async def test_customer_request_waits_for_approval_then_takes_the_return_path(
    shop: Shop, world: World
) -> None:
    order, shoe, sock = await _delivered(shop, world)
    ret = await shop.customer_return(order, {shoe: 1, sock: 2}, "damaged")
    assert ret.status == ReturnStatus.pending_approval and ret.by_customer
    assert {(line.sku, line.quantity) for line in ret.lines} == {(shoe, 1), (sock, 2)}
    await shop.messaged(order, "return_requested")
    assert "return_authorized" not in world.messages(order)
    again = await shop.customer_return(order, {sock: 2, shoe: 1}, "damaged")
    assert again.rma == ret.rma  # the same request: answered, nothing new
    with pytest.raises(Refused, match=f"only 1 unit\\(s\\) of {shoe} remain returnable, not 2"):
        await shop.customer_return(order, {shoe: 2}, "damaged")  # 2 delivered, 1 already requested
    approved = await shop.decide_return(order, ret.rma, approve=True)
    assert approved.status == ReturnStatus.requested and approved.decided_by == "agent-1"
    assert (await shop.decide_return(order, ret.rma, approve=True)).rma == ret.rma  # again: the same
    with pytest.raises(Refused, match="already approved"):
        await shop.decide_return(order, ret.rma, approve=False)
    await shop.messaged(order, "return_authorized")
    await shop.receive_return(order, ret.rma, "good")
    view = await shop.status(order, OrderStatus.partially_returned)
    assert (
        view.payment.refunded == Decimal("30.00") and view.payment_status == PaymentStatus.partially_refunded
    )
    assert world.return_outcomes[ret.rma].status == ReturnStatus.refunded
    assert {"return_requested", "return_authorized", "refund_issued"} <= {e.type for e in view.events}
    await shop.skip(order, shop.policy.return_window)
    assert (await shop.result(order)).status == OrderStatus.completed
    assert world.money(order)["refund"] == Decimal("30.00")


@pytest.mark.history("customer_return_auto_approved")
async def test_customer_request_within_the_limit_is_approved_at_once(shop: Shop, world: World) -> None:
    order, shoe, sock = await _delivered(shop, world)
    ret = await shop.customer_return(order, {sock: 3}, "no_longer_needed", limit="15.00")
    assert ret.status == ReturnStatus.requested and ret.decided_by and "auto" in ret.decided_by
    await shop.messaged(order, "return_authorized")
    assert "return_requested" not in world.messages(order)
    above = await shop.customer_return(order, {shoe: 1}, "no_longer_needed", limit="15.00")
    assert above.status == ReturnStatus.pending_approval  # 20.00 is above the limit
    await shop.receive_return(order, ret.rma, "good")
    # the refund, then the status it leads to (a step later: polled for, not read at once)
    await shop.until(order, lambda v: v.payment.refunded == Decimal("15.00"), "the refund")
    await shop.until(order, lambda v: v.status == OrderStatus.partially_returned, "partially returned")


@pytest.mark.history("customer_return_declined")
async def test_declined_request_frees_its_units_and_the_order_closes(shop: Shop, world: World) -> None:
    order, shoe, _ = await _delivered(shop, world)
    ret = await shop.customer_return(order, {shoe: 2}, "not_as_described")
    declined = await shop.decide_return(order, ret.rma, approve=False, note="worn outdoors")
    assert declined.status == ReturnStatus.declined and declined.decision_note == "worn outdoors"
    await shop.messaged(order, "return_declined")
    with pytest.raises(Refused, match="already declined"):
        await shop.decide_return(order, ret.rma, approve=True)
    assert (await shop.customer_return(order, {shoe: 2}, "not_as_described")).rma == ret.rma  # the same
    other = await shop.customer_return(order, {shoe: 2}, "defective")  # the units are free again
    assert other.rma != ret.rma and other.status == ReturnStatus.pending_approval
    await shop.skip(order, shop.policy.return_window)  # a request waiting for support holds the order open
    view = await shop.view(order)
    assert view.status == OrderStatus.delivered
    await shop.decide_return(order, other.rma, approve=False)
    final = await shop.result(order)
    assert final.status == OrderStatus.completed and final.payment.refunded == 0


async def test_customer_requests_refused_with_their_reason(shop: Shop, world: World) -> None:
    order, shoe, _ = await _delivered(shop, world)
    with pytest.raises(Refused, match="SKU NOPE was not delivered"):
        await shop.customer_return(order, {shoe: 1, "NOPE": 1})
    with pytest.raises(Refused, match="no return request RMA-x"):
        await shop.decide_return(order, "RMA-x", approve=True)
    support = await shop.request_return(order, shoe, 1)
    with pytest.raises(Refused, match="no return request"):
        await shop.decide_return(order, support.rma, approve=True)  # support's own RMA needs no decision
    waiting = await shop.customer_return(order, {shoe: 1}, "damaged")
    await shop.skip(order, shop.policy.return_window)  # the request waiting for support holds it open
    with pytest.raises(Refused, match="return window of order .* closed"):
        await shop.customer_return(order, {shoe: 1}, "other")
    assert [r.rma for r in (await shop.view(order)).returns if r.by_customer] == [waiting.rma]


async def test_the_same_request_twice_at_once_is_one_request(shop: Shop, world: World) -> None:
    order, shoe, sock = await _delivered(shop, world)
    first, second = await asyncio.gather(
        shop.customer_return(order, {shoe: 2, sock: 1}, "wrong_item"),
        shop.customer_return(order, {sock: 1, shoe: 2}, "wrong_item"),
    )
    assert first.rma == second.rma
    view = await shop.view(order)
    assert [r.rma for r in view.returns] == [first.rma]
    assert world.messages(order).count("return_requested") == 1
