"""Orders held for review (amount limit, blocklist), release, the hold timeout, and support notes."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from cli.common import CLI_ACTOR
from models import search_attributes as sa
from models import tables as t
from services.orders import cancel_order, handle, order_view
from tests.helpers import (
    add_products,
    assert_ledger_invariants,
    cli,
    eventually,
    ledger,
    notifications,
    order_doc,
    outbox,
    place,
    stock_of,
    unique,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("worker")


async def test_an_order_above_the_review_limit_waits_for_release(client, settings, sessions, capsys):
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    order_id = await place(client, settings, order_doc([(skus["TV"], 1)]), review_above=Decimal("500"))

    view = await wait_status(client, order_id, "on_hold")
    assert view.hold_reason == "order total 900.00 is above the review limit 500"
    assert view.payment_status == "authorized"
    assert ledger(sessions, order_id) == {"authorization": Decimal("900.00")}
    assert stock_of(sessions, skus["TV"]) == (3, 0)  # nothing reserved while held
    assert view.shipments == []
    with sessions() as session:
        assert session.query(t.Reservation).filter_by(order_id=order_id).count() == 0
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == ("on_hold", "authorized")
    (held,) = [e for e in view.events if e.type == "order_on_hold"]
    assert (held.detail, held.reason_code) == (view.hold_reason, "above_review_limit")
    with sessions() as session:  # the events row carries the code the reports group by
        row = session.query(t.OrderEvent).filter_by(order_id=order_id, type="order_on_hold").one()
        assert row.reason_code == "above_review_limit"
    assert await eventually(lambda: outbox(sessions, order_id), bool) == ["order_on_hold"]
    assert notifications(sessions, order_id)[0].recipient == "ada@example.com"

    # released: reserved and confirmed, and (no release window in the tests) maybe sent to the warehouse
    status, out = await cli(settings, "release", order_id)
    assert status == 0 and out in {f"{order_id} released: {s}\n" for s in ("confirmed", "picking")}
    view = await wait_status(client, order_id, "shipped")
    assert view.payment_status == "captured"
    assert ledger(sessions, order_id) == {"authorization": Decimal("900.00"), "capture": Decimal("900.00")}
    assert stock_of(sessions, skus["TV"]) == (2, 0)
    types = [e.type for e in view.events]
    assert types.index("order_on_hold") < types.index("hold_released") < types.index("stock_reserved")
    assert_ledger_invariants(sessions, order_id)

    capsys.readouterr()
    assert await cli(settings, "release", order_id) == (1, "")
    assert f"order {order_id} is shipped, not on hold" in capsys.readouterr().err


async def test_the_review_limit_and_the_order_total_attribute_weigh_the_grand_total(
    client, settings, sessions
):
    """Review above 100.00: 90.00 of goods with 15.00 shipping (105.00) is held; 110.00 of goods less
    a 20.00 discount (90.00) is not. By the subtotal it would be the other way round."""
    chair = add_products(sessions, {"CHAIR": 3}, price="90.00")["CHAIR"]
    shipped = order_doc([(chair, 1)], shipping_lines=[{"title": "Express", "price": "15.00"}])
    shipped["lines"][0]["unit_price"] = "90.00"
    held_id = await place(client, settings, shipped, review_above=Decimal("100"))
    held = await wait_status(client, held_id, "on_hold")
    assert held.hold_reason == "order total 105.00 is above the review limit 100"
    assert held.payment.authorized == Decimal("105.00")
    attrs = (await handle(client, held_id).describe()).typed_search_attributes
    assert attrs.get(sa.ORDER_TOTAL) == 105.00  # what operators search and the order list show

    desk = add_products(sessions, {"DESK": 3}, price="110.00")["DESK"]
    discounted = order_doc([(desk, 1)])
    discounted["lines"][0] |= {"unit_price": "110.00", "discount_allocations": [{"amount": "20.00"}]}
    passed_id = await place(client, settings, discounted, review_above=Decimal("100"))
    passed = await wait_status(client, passed_id, "shipped")
    assert passed.hold_reason is None and "order_on_hold" not in [e.type for e in passed.events]
    assert (passed.subtotal, passed.total, passed.payment.captured) == (
        Decimal("110.00"),
        Decimal("90.00"),
        Decimal("90.00"),
    )
    attrs = (await handle(client, passed_id).describe()).typed_search_attributes
    assert attrs.get(sa.ORDER_TOTAL) == 90.00


async def test_release_of_an_order_that_was_never_held_is_refused(client, settings, sessions, capsys):
    skus = add_products(sessions, {"PEN": 3})
    order_id = await place(client, settings, order_doc([(skus["PEN"], 1)]))
    await wait_status(client, order_id, "shipped")

    assert await cli(settings, "release", order_id) == (1, "")
    assert f"order {order_id} is shipped, not on hold" in capsys.readouterr().err
    assert "hold_released" not in [e.type for e in (await order_view(client, order_id)).events]
    assert await cli(settings, "release", "NO-SUCH-ORDER") == (1, "")
    assert "unknown order NO-SUCH-ORDER" in capsys.readouterr().err


async def test_blocklisted_customer_is_held_whatever_the_case_of_the_address(client, settings, sessions):
    email = f"{unique('fraud').lower()}@example.com"
    skus = add_products(sessions, {"RING": 4}, price="20.00")

    status, _ = await cli(settings, "blocklist", "add", email.upper(), "--reason", "chargebacks")
    assert status == 0
    status, listing = await cli(settings, "blocklist", "list")
    assert status == 0
    assert [line.split() for line in listing.splitlines() if email in line] == [[email, "chargebacks"]]

    customer = {**order_doc([])["customer"], "email": email.title()}  # Fraud-Ab12@Example.Com
    held_id = await place(client, settings, order_doc([(skus["RING"], 1)], customer=customer))
    view = await wait_status(client, held_id, "on_hold")
    assert view.hold_reason is not None
    assert "blocklist" in view.hold_reason and "chargebacks" in view.hold_reason
    assert email in view.hold_reason.lower()
    assert stock_of(sessions, skus["RING"]) == (4, 0)

    assert await cli(settings, "blocklist", "remove", email.upper()) == (0, f"{email.upper()} removed\n")
    assert email not in (await cli(settings, "blocklist", "list"))[1]
    clean_id = await place(client, settings, order_doc([(skus["RING"], 1)], customer=customer))
    assert (await wait_status(client, clean_id, "shipped")).hold_reason is None

    # removing the entry does not release an order already held; support still decides
    assert (await order_view(client, held_id)).status == "on_hold"
    view = await cancel_order(client, held_id, "confirmed fraud")
    assert (view.status, view.payment_status) == ("cancelled", "voided")
    for order_id in (held_id, clean_id):
        assert_ledger_invariants(sessions, order_id)


async def test_blocklist_add_confirms_in_plain_english(settings):
    email = f"{unique('typo').lower()}@example.com"
    try:
        assert await cli(settings, "blocklist", "add", email) == (0, f"{email} added\n")
    finally:
        await cli(settings, "blocklist", "remove", email)


async def test_blocklist_needs_an_address(settings, capsys):
    assert await cli(settings, "blocklist", "add") == (2, "")
    assert "blocklist add needs an e-mail address" in capsys.readouterr().err


async def test_a_support_note_shows_in_the_status(client, settings, sessions, capsys):
    skus = add_products(sessions, {"VASE": 2})
    order_id = await place(client, settings, order_doc([(skus["VASE"], 1)]))
    await wait_status(client, order_id, "shipped")
    text = "Customer called: leave it with the neighbour at no. 14"

    assert await cli(settings, "note", order_id, text) == (0, f"note added to {order_id}\n")

    view = await eventually(
        lambda: order_view(client, order_id), lambda v: "support_note" in [e.type for e in v.events]
    )
    # the event log says who wrote it: the command line names the user running it
    assert [e.detail for e in view.events if e.type == "support_note"] == [f"{text} (by {CLI_ACTOR})"]
    status, human = await cli(settings, "status", order_id)
    assert status == 0
    (row,) = [line for line in human.splitlines() if "support_note" in line]
    assert row.split("support_note", 1)[1].strip() == f"{text} (by {CLI_ACTOR})"
    status, raw = await cli(settings, "status", order_id, "--json")
    assert status == 0
    notes = [e for e in json.loads(raw)["events"] if e["type"] == "support_note"]
    assert [e["detail"] for e in notes] == [f"{text} (by {CLI_ACTOR})"]
    assert view.status == "shipped"  # a note changes nothing else

    assert await cli(settings, "note", "NO-SUCH-ORDER", "hello") == (1, "")
    assert "unknown order NO-SUCH-ORDER" in capsys.readouterr().err


async def test_a_note_on_a_closed_order_is_refused(client, settings, sessions, capsys):
    skus = add_products(sessions, {"VASE": 2})
    order_id = await place(client, settings, order_doc([(skus["VASE"], 1)], token="tok_declined"))
    await asyncio.wait_for(handle(client, order_id).result(), timeout=30)

    assert await cli(settings, "note", order_id, "too late") == (1, "")
    assert f"order {order_id} is closed" in capsys.readouterr().err


async def test_place_wait_reports_the_hold_and_its_reason(client, settings, sessions, tmp_path):
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    doc = order_doc([(skus["TV"], 1)])
    path = tmp_path / "order.json"
    path.write_text(json.dumps(doc))
    held = settings.model_copy(update={"review_above": Decimal("500")})
    assert await cli(held, "place", str(path), "--wait") == (
        0,
        f"{doc['order_id']} on_hold: order total 900.00 is above the review limit 500\n",
    )
    assert await cli(settings, "cancel", doc["order_id"], "--reason", "test over") == (
        0,
        f"{doc['order_id']} cancelled; payment voided\n",
    )
