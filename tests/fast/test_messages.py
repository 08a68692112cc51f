"""Messages that race on one order: handlers that change its state across an await take turns."""

from __future__ import annotations

from models.orders import Feedback, OrderStatus
from models.workflow_names import OrderSignal
from tests.fast.driver import Shop, eventually, new_sku
from tests.fast.fakes import World


async def test_two_feedbacks_at_once_leave_one_story(shop: Shop, world: World) -> None:
    """Two feedbacks delivered in one workflow task, the first one's step slower: without the
    feedback lock both steps ran at once, the first ended last, and the feedback row kept the first
    while the order's view showed the second. Taking turns, every record names the second."""
    sku = world.add_product(new_sku("MUG"), stock={"W1": 5})
    order = await shop.place([(sku, 1)])
    await shop.settled(order)
    await shop.to_carrier(order)
    await shop.deliver_all(order)

    # a slow feedback holds the order's workflow task open; the two sent meanwhile arrive together
    world.stall_feedback("hold", 1.0)
    world.stall_feedback("first", 0.5)
    calls = world.calls["record_feedback"]
    await shop.feedback(order, 3, "hold")
    await eventually(
        lambda: world.calls["record_feedback"], lambda n: n > calls, "the slow feedback being stored"
    )
    # straight to the order (the door's check queries it, and a query waits for the held task)
    handle = shop.handle(order)
    await handle.signal(OrderSignal.submit_feedback, Feedback(score=1, comment="first", by="customer"))
    await handle.signal(OrderSignal.submit_feedback, Feedback(score=5, comment="second", by="customer"))

    view = await shop.until(
        order, lambda v: [e.type for e in v.events].count("feedback_received") == 3, "three feedbacks"
    )
    await shop.written(order, "feedback_received")
    assert view.status == OrderStatus.delivered
    assert view.feedback is not None and (view.feedback.score, view.feedback.comment) == (5, "second")
    stored = world.feedback[order]
    assert (stored.score, stored.comment) == (5, "second")
    received = [e.detail for e in view.events if e.type == "feedback_received"]
    assert [d.split(" (by")[0] for d in received] == ["score 3: hold", "score 1: first", "score 5: second"]
