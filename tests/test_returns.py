"""Returns (RMA) and exchanges of delivered orders, through the command line and the real stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus

from cli.common import CLI_ACTOR
from config import Settings
from db import SessionFactory
from models import tables as t
from models.orders import OrderView, ReturnReceipt, ReturnRequest, ReturnView
from services.orders import Refused, add_note, confirm_delivery, handle, order_view, request_return
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
    stock_movements,
    stock_of,
    timers,
    wait_status,
)
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.usefixtures("worker")

OPEN_WINDOW = timedelta(seconds=30)  # long enough to stay open for the whole test


# ---- helpers ----


async def status_json(settings: Settings, order_id: str) -> dict[str, Any]:
    status, out = await cli(settings, "status", order_id, "--json")
    assert status == 0
    return json.loads(out)


async def delivered(
    client: Client, settings: Settings, sessions: SessionFactory, lines: list[tuple[str, int]], **policy: Any
) -> str:
    """Place an order, ship it and confirm its delivery; returns once its return window is open."""
    order_id = await place(client, settings, order_doc(lines), **{"return_window": OPEN_WINDOW, **policy})
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: v.status == "delivered" and v.return_window_ends is not None,
    )
    return order_id


async def until(client: Client, order_id: str, check: Callable[[OrderView], bool]) -> OrderView:
    return await eventually(lambda: order_view(client, order_id), check)


def the_return(view: OrderView, rma: str) -> ReturnView:
    (ret,) = [r for r in view.returns if r.rma == rma]
    return ret


def refund_rows(sessions: SessionFactory, order_id: str) -> list[t.Payment]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Payment)
                .where(t.Payment.order_id == order_id, t.Payment.kind == "refund")
                .order_by(t.Payment.id)
            )
        )


def payments_of(sessions: SessionFactory, order_id: str, kind: str) -> list[Decimal]:
    with sessions() as session:
        return [
            Decimal(p.amount)
            for p in session.scalars(
                select(t.Payment)
                .where(t.Payment.order_id == order_id, t.Payment.kind == kind, t.Payment.status == "approved")
                .order_by(t.Payment.id)
            )
        ]


def return_rows(sessions: SessionFactory, order_id: str) -> list[tuple[t.Return, list[t.ReturnLine]]]:
    with sessions() as session:
        rows = session.scalars(select(t.Return).where(t.Return.order_id == order_id).order_by(t.Return.rma))
        return [
            (row, list(session.scalars(select(t.ReturnLine).where(t.ReturnLine.rma == row.rma))))
            for row in rows
        ]


def restocks(sessions: SessionFactory, order_id: str, rma: str) -> list[t.StockMovement]:
    return [
        m for m in stock_movements(sessions, order_id) if m.kind == "restock" and m.reason == f"return {rma}"
    ]


async def processed(client: Client, order_id: str, marker: str) -> None:
    """Signals are handled in order: once this note shows, every signal sent before it was handled."""
    await add_note(client, order_id, marker)
    await until(client, order_id, lambda v: marker in [e.detail for e in v.events])


# ---- returns and refunds ----


@pytest.mark.parametrize(
    ("qty", "order_status", "payment_status"),
    [(1, "partially_returned", "partially_refunded"), (3, "returned", "refunded")],
    ids=["partial", "all"],
)
async def test_return_via_the_cli_refunds_and_restocks_into_the_shipping_warehouse(
    client, settings, sessions, capsys, qty, order_status, payment_status
):
    skus = add_products(sessions, {"SHOE": 5}, price="10.00", warehouse="WRET")
    sku = skus["SHOE"]
    order_id = await delivered(client, settings, sessions, [(sku, 3)])
    assert stock_of(sessions, sku, "WRET") == (2, 0)

    status, out = await cli(
        settings, "return", order_id, "--sku", sku, "--qty", str(qty), "--reason", "too small"
    )
    assert status == 0, capsys.readouterr().err
    rma = out.strip()
    assert rma == f"RMA-{order_id}-1"

    doc = await status_json(settings, order_id)
    (ret,) = doc["returns"]
    assert (ret["rma"], ret["status"], ret["reason"]) == (rma, "requested", "too small")
    assert Decimal(ret["refund_amount"]) == 0
    assert ret["lines"] == [{"sku": sku, "quantity": qty, "unit_price": "10.00", "warehouse": "WRET"}]
    (authorized,) = [n for n in notifications(sessions, order_id) if n.kind == "return_authorized"]
    assert rma in authorized.body and "WRET" in authorized.body and authorized.recipient == "ada@example.com"
    ((row, lines),) = return_rows(sessions, order_id)
    assert (row.rma, row.status, row.received_at) == (rma, "requested", None)
    assert [(x.sku, x.warehouse, x.quantity) for x in lines] == [(sku, "WRET", qty)]
    assert stock_of(sessions, sku, "WRET") == (2, 0)  # nothing back until the parcel arrives
    assert refund_rows(sessions, order_id) == []

    assert await cli(settings, "receive-return", order_id, rma) == (0, f"receipt of {rma} (good) recorded\n")
    view = await until(client, order_id, lambda v: v.status == order_status)

    refund = Decimal("10.00") * qty
    assert view.payment_status == payment_status
    assert (the_return(view, rma).status, the_return(view, rma).refund_amount) == ("refunded", refund)
    assert [(p.amount, p.status) for p in refund_rows(sessions, order_id)] == [(refund, "approved")]
    assert stock_of(sessions, sku, "WRET") == (2 + qty, 0)
    (restock,) = restocks(sessions, order_id, rma)
    assert (restock.sku, restock.warehouse, restock.on_hand_delta, restock.reserved_delta) == (
        sku,
        "WRET",
        qty,
        0,
    )
    doc = await status_json(settings, order_id)
    assert (doc["status"], doc["payment_status"]) == (order_status, payment_status)
    assert {k: Decimal(v) for k, v in doc["payment"].items()} == {
        "authorized": Decimal("30.00"),
        "captured": Decimal("30.00"),
        "refunded": refund,
        "goodwill_refunded": Decimal("0.00"),
        "voided": Decimal("0.00"),  # captured in full: nothing left to release
    }
    ((row, _),) = return_rows(sessions, order_id)
    assert (row.status, row.refund_amount, row.condition) == ("refunded", refund, "good")
    assert row.received_at is not None
    (mail,) = [n for n in notifications(sessions, order_id) if n.kind == "refund_issued"]
    assert f"refunded {refund:.2f} EUR" in mail.body
    totals = assert_ledger_invariants(sessions, order_id)
    assert (totals.authorized, totals.captured, totals.refunded) == (
        Decimal("30.00"),
        Decimal("30.00"),
        refund,
    )
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == (order_status, payment_status)


async def test_returns_that_cannot_be_honoured_are_refused_and_change_nothing(
    client, settings, sessions, capsys
):
    skus = add_products(sessions, {"SHOE": 5, "SOCK": 5}, price="10.00")
    order_id = await delivered(client, settings, sessions, [(skus["SHOE"], 2)])
    before = (stock_of(sessions, skus["SHOE"]), ledger(sessions, order_id))

    cases = [
        (
            ["--sku", skus["SHOE"], "--qty", "3"],
            1,
            f"only 2 unit(s) of {skus['SHOE']} remain returnable, not 3",
        ),
        (
            ["--sku", "NO-SUCH-SKU", "--qty", "1"],
            1,
            f"SKU NO-SUCH-SKU was not delivered with order {order_id}",
        ),
        (
            ["--sku", skus["SOCK"], "--qty", "1"],
            1,
            f"SKU {skus['SOCK']} was not delivered with order {order_id}",
        ),
        (
            ["--sku", skus["SHOE"], "--qty", "0"],
            2,
            "invalid return: quantity: Input should be greater than 0",
        ),
    ]
    for args, exit_status, message in cases:
        assert await cli(settings, "return", order_id, *args, "--reason", "x") == (exit_status, ""), args
        assert message in capsys.readouterr().err
    assert await cli(settings, "receive-return", order_id, f"RMA-{order_id}-1") == (1, "")
    assert f"order {order_id} has no return RMA-{order_id}-1" in capsys.readouterr().err

    view = await order_view(client, order_id)
    assert (view.status, view.returns) == ("delivered", [])
    assert return_rows(sessions, order_id) == []
    assert "return_authorized" not in await outbox(sessions, order_id)
    assert (stock_of(sessions, skus["SHOE"]), ledger(sessions, order_id)) == before
    assert_ledger_invariants(sessions, order_id)


async def test_an_order_on_its_way_cannot_be_returned_yet(client, settings, sessions, capsys):
    skus = add_products(sessions, {"SHOE": 5})
    order_id = await place(client, settings, order_doc([(skus["SHOE"], 1)]))
    await wait_status(client, order_id, "shipped")

    assert await cli(settings, "return", order_id, "--sku", skus["SHOE"], "--qty", "1", "--reason", "x") == (
        1,
        "",
    )
    assert f"order {order_id} is shipped: only delivered orders can be returned" in capsys.readouterr().err
    assert (await order_view(client, order_id)).returns == []
    assert return_rows(sessions, order_id) == []


async def test_a_duplicate_receipt_refunds_and_restocks_once(client, settings, sessions):
    skus = add_products(sessions, {"SHOE": 5})
    sku = skus["SHOE"]
    order_id = await delivered(client, settings, sessions, [(sku, 2)])
    rmas = [
        (await cli(settings, "return", order_id, "--sku", sku, "--qty", "1", "--reason", "x"))[1].strip()
        for _ in range(2)
    ]
    assert rmas == [f"RMA-{order_id}-1", f"RMA-{order_id}-2"]

    # the warehouse scans the first parcel twice, the second time after it was refunded
    assert (await cli(settings, "receive-return", order_id, rmas[0]))[0] == 0
    await until(client, order_id, lambda v: v.status == "partially_returned")
    assert (await cli(settings, "receive-return", order_id, rmas[0]))[0] == 0
    # and the second parcel's receipt arrives twice at once
    receipt = ReturnReceipt(rma=rmas[1])
    signal = handle(client, order_id).signal
    await asyncio.gather(*(signal(OrderWorkflow.return_received, receipt) for _ in range(2)))
    await until(client, order_id, lambda v: v.status == "returned")
    await processed(client, order_id, "after the duplicates")

    view = await order_view(client, order_id)
    assert [(r.status, r.refund_amount) for r in view.returns] == [("refunded", Decimal("10.00"))] * 2
    for rma in rmas:
        keys = [p.idempotency_key for p in refund_rows(sessions, order_id)]
        assert [k for k in keys if k.endswith(f":refund:{rma}")] == [f"order-{order_id}:refund:{rma}"]
        assert [m.on_hand_delta for m in restocks(sessions, order_id, rma)] == [1]
        assert [e.detail.split(":")[0] for e in view.events if e.type == "return_received"].count(rma) == 1
    assert len(refund_rows(sessions, order_id)) == 2
    assert stock_of(sessions, sku) == (5, 0)
    assert (await outbox(sessions, order_id)).count("refund_issued") == 2
    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.refunded == totals.captured == Decimal("20.00")


async def test_a_damaged_return_is_refunded_but_not_restocked(client, settings, sessions):
    skus = add_products(sessions, {"VASE": 5}, price="25.00")
    sku = skus["VASE"]
    order_id = await delivered(client, settings, sessions, [(sku, 2)])
    status, out = await cli(settings, "return", order_id, "--sku", sku, "--qty", "2", "--reason", "broken")
    assert status == 0
    rma = out.strip()

    assert await cli(settings, "receive-return", order_id, rma, "--condition", "damaged") == (
        0,
        f"receipt of {rma} (damaged) recorded\n",
    )
    view = await until(client, order_id, lambda v: v.status == "returned")

    assert view.payment_status == "refunded"
    ret = the_return(view, rma)
    assert (ret.status, ret.condition, ret.refund_amount) == ("refunded", "damaged", Decimal("50.00"))
    assert [e.detail for e in view.events if e.type == "return_received"] == [
        f"{rma}: damaged, 2 unit(s) written off (by {CLI_ACTOR})"  # who booked the parcel in
    ]
    assert stock_of(sessions, sku) == (3, 0)  # written off, never back on the shelf
    assert [m.kind for m in stock_movements(sessions, order_id)] == ["reserve", "pick"]
    ((row, _),) = return_rows(sessions, order_id)
    assert (row.status, row.condition, row.refund_amount) == ("refunded", "damaged", Decimal("50.00"))
    assert ledger(sessions, order_id)["refund"] == Decimal("50.00")
    assert_ledger_invariants(sessions, order_id)


async def test_a_return_never_received_expires_without_a_refund(client, settings, sessions):
    skus = add_products(sessions, {"COAT": 5}, price="80.00")
    sku = skus["COAT"]
    order_id = await delivered(
        client, settings, sessions, [(sku, 1)], return_receipt_timeout=timedelta(seconds=2)
    )
    ret = await request_return(client, order_id, ReturnRequest(sku=sku, quantity=1, reason="changed mind"))

    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "return_expired" in kinds, timeout=15)

    view = await order_view(client, order_id)
    assert (the_return(view, ret.rma).status, the_return(view, ret.rma).refund_amount) == ("expired", 0)
    assert (view.status, view.payment_status) == ("delivered", "captured")
    (expired,) = [e for e in view.events if e.type == "return_expired"]
    assert expired.detail == f"{ret.rma}: nothing received within 0:00:02"
    (mail,) = [n for n in notifications(sessions, order_id) if n.kind == "return_expired"]
    assert ret.rma in mail.body and mail.recipient == "ada@example.com"
    assert refund_rows(sessions, order_id) == []
    assert stock_of(sessions, sku) == (4, 0)
    ((row, _),) = return_rows(sessions, order_id)
    assert (row.status, row.refund_amount, row.received_at) == ("expired", 0, None)
    assert_ledger_invariants(sessions, order_id)
    assert (await cli(settings, "receive-return", order_id, ret.rma))[0] == 1  # too late to book it in
    assert refund_rows(sessions, order_id) == [] and stock_of(sessions, sku) == (4, 0)

    # the units are returnable again: the customer may still send them back under a new RMA

    again = await request_return(client, order_id, ReturnRequest(sku=sku, quantity=1, reason="found it"))
    assert again.rma == f"RMA-{order_id}-2"


@pytest.mark.parametrize(
    "exchange",
    [
        False,
        True,
    ],
    ids=["refund", "exchange"],
)
async def test_concurrent_requests_never_return_more_than_was_delivered(client, settings, sessions, exchange):
    skus = add_products(sessions, {"MUG": 5, "CUP": 5})
    sku = skus["MUG"]
    order_id = await delivered(client, settings, sessions, [(sku, 2)])
    request = ReturnRequest(
        sku=sku, quantity=2, reason="all of them", exchange_sku=skus["CUP"] if exchange else None
    )

    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(request_return(client, order_id, request) for _ in range(3)), return_exceptions=True
            ),
            timeout=5,
        )
    except TimeoutError:
        await handle(client, order_id).terminate("stuck on a failing workflow task")  # stop the retries
        raise

    accepted = [r for r in results if isinstance(r, ReturnView)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert (len(accepted), len(refused)) == (1, 2), results
    view = await order_view(client, order_id)
    assert [(r.rma, sum(x.quantity for x in r.lines)) for r in view.returns] == [(accepted[0].rma, 2)]
    under_return = sum(line.quantity for _, lines in return_rows(sessions, order_id) for line in lines)
    assert under_return == 2
    assert (await outbox(sessions, order_id)).count("return_authorized") == 1


async def test_a_second_return_of_the_same_units_says_they_are_already_returned(client, settings, sessions):
    skus = add_products(sessions, {"MUG": 5})
    sku = skus["MUG"]
    order_id = await delivered(client, settings, sessions, [(sku, 1)])
    await request_return(client, order_id, ReturnRequest(sku=sku, quantity=1, reason="first"))
    with pytest.raises(Refused) as refused:
        await request_return(client, order_id, ReturnRequest(sku=sku, quantity=1, reason="second"))
    assert "was not delivered" not in str(refused.value)
    assert "remain returnable" in str(refused.value)


# ---- exchanges ----


async def test_exchange_for_the_same_price_ships_a_replacement(client, settings, sessions, capsys):
    skus = add_products(sessions, {"RED": 5, "BLUE": 5}, price="15.00")
    red, blue = skus["RED"], skus["BLUE"]
    order_id = await delivered(client, settings, sessions, [(red, 2)])
    before = ledger(sessions, order_id)

    status, out = await cli(
        settings,
        "return",
        order_id,
        "--sku",
        red,
        "--qty",
        "2",
        "--reason",
        "wrong colour",
        "--exchange-sku",
        blue,
    )
    assert status == 0, capsys.readouterr().err
    rma = out.strip()
    assert the_return(await order_view(client, order_id), rma).exchange_sku == blue
    assert stock_of(sessions, blue) == (5, 0)  # nothing reserved before the parcel is back

    assert (await cli(settings, "receive-return", order_id, rma))[0] == 0
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "exchange_shipped" in kinds)

    view = await order_view(client, order_id)
    assert the_return(view, rma).status == "exchanged"
    assert the_return(view, rma).refund_amount == 0
    original, replacement = view.shipments
    assert original.exchange_for is None
    assert (replacement.exchange_for, replacement.status) == (rma, "shipped")
    assert [(x.sku, x.quantity) for x in replacement.lines] == [(blue, 2)]
    assert replacement.tracking_number and replacement.tracking_number != original.tracking_number
    with sessions() as session:
        row = session.get(t.Shipment, replacement.id)
        assert row is not None and (row.order_id, row.status) == (order_id, "shipped")
        assert row.tracking_number == replacement.tracking_number
    assert stock_of(sessions, blue) == (3, 0)  # picked for the replacement
    assert stock_of(sessions, red) == (5, 0)  # the returned units are back on the shelf
    assert refund_rows(sessions, order_id) == []
    assert ledger(sessions, order_id) == before  # same price: no money moves
    (mail,) = [n for n in notifications(sessions, order_id) if n.kind == "exchange_shipped"]
    assert replacement.tracking_number in mail.body and blue in mail.body
    ((row, _),) = return_rows(sessions, order_id)
    assert (row.status, row.exchange_sku, row.refund_amount) == ("exchanged", blue, 0)
    assert (view.status, view.payment_status) == ("delivered", "captured")

    assert await cli(settings, "deliver", order_id, "--shipment", replacement.id) == (
        0,
        f"delivery confirmed for {replacement.id}\n",
    )
    view = await until(client, order_id, lambda v: v.shipments[1].status == "delivered")
    assert view.shipments[1].delivered_at is not None
    assert_ledger_invariants(sessions, order_id)


@pytest.mark.parametrize(
    ("new_price", "authorized", "captured", "refunded"),
    [
        ("15.00", ["20.00", "10.00"], ["20.00", "10.00"], []),  # 2 x 5.00 more: authorized and captured
        ("6.00", ["20.00"], ["20.00"], ["8.00"]),  # 2 x 4.00 less: refunded
    ],
    ids=["pricier", "cheaper"],
)
async def test_exchange_for_a_different_price_settles_the_difference(
    client, settings, sessions, new_price, authorized, captured, refunded
):
    old = add_products(sessions, {"OLD": 5}, price="10.00")["OLD"]
    new = add_products(sessions, {"NEW": 5}, price=new_price)["NEW"]
    order_id = await delivered(client, settings, sessions, [(old, 2)])

    ret = await request_return(
        client, order_id, ReturnRequest(sku=old, quantity=2, reason="upgrade", exchange_sku=new)
    )
    assert (await cli(settings, "receive-return", order_id, ret.rma))[0] == 0
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "exchange_shipped" in kinds)

    view = await order_view(client, order_id)
    assert the_return(view, ret.rma).status == "exchanged"
    assert [Decimal(a) for a in authorized] == payments_of(sessions, order_id, "authorization")
    assert [Decimal(c) for c in captured] == payments_of(sessions, order_id, "capture")
    assert [Decimal(r) for r in refunded] == payments_of(sessions, order_id, "refund")
    assert the_return(view, ret.rma).refund_amount == sum((Decimal(r) for r in refunded), Decimal(0))
    assert view.payment.captured == sum(Decimal(c) for c in captured)
    assert view.payment.refunded == sum((Decimal(r) for r in refunded), Decimal(0))
    assert stock_of(sessions, new) == (3, 0) and stock_of(sessions, old) == (5, 0)
    (mail,) = [n for n in notifications(sessions, order_id) if n.kind == "exchange_shipped"]
    assert "difference of" in mail.body
    assert_ledger_invariants(sessions, order_id)


async def test_exchange_for_an_unknown_sku_is_refused_at_request_time(client, settings, sessions):
    skus = add_products(sessions, {"RED": 5})
    order_id = await delivered(client, settings, sessions, [(skus["RED"], 1)])
    request = ReturnRequest(sku=skus["RED"], quantity=1, reason="x", exchange_sku="NO-SUCH-SKU")

    try:
        with pytest.raises(Refused, match="SKU NO-SUCH-SKU is unknown or not active"):
            await asyncio.wait_for(request_return(client, order_id, request), timeout=3)
    except TimeoutError:
        await handle(client, order_id).terminate("stuck on a failing workflow task")  # stop the retries
        raise
    view = await order_view(client, order_id)
    assert (view.status, view.returns) == ("delivered", [])
    assert return_rows(sessions, order_id) == []


async def test_an_exchange_for_a_cheaper_sku_does_not_make_the_order_returned(client, settings, sessions):
    old = add_products(sessions, {"OLD": 5}, price="10.00")["OLD"]
    new = add_products(sessions, {"NEW": 5}, price="6.00")["NEW"]
    order_id = await delivered(client, settings, sessions, [(old, 1)])
    ret = await request_return(
        client, order_id, ReturnRequest(sku=old, quantity=1, reason="x", exchange_sku=new)
    )
    await cli(settings, "receive-return", order_id, ret.rma)
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "exchange_shipped" in kinds)

    view = await order_view(client, order_id)
    assert the_return(view, ret.rma).status == "exchanged"
    assert view.status == "delivered", [e.type for e in view.events]


async def test_an_exchanged_return_names_its_replacement_shipment(client, settings, sessions):
    skus = add_products(sessions, {"RED": 5, "BLUE": 5})
    order_id = await delivered(client, settings, sessions, [(skus["RED"], 1)])
    ret = await request_return(
        client, order_id, ReturnRequest(sku=skus["RED"], quantity=1, reason="x", exchange_sku=skus["BLUE"])
    )
    await cli(settings, "receive-return", order_id, ret.rma)
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "exchange_shipped" in kinds)

    view = await order_view(client, order_id)
    (replacement,) = [s for s in view.shipments if s.exchange_for == ret.rma]
    assert the_return(view, ret.rma).exchange_shipment_id == replacement.id


# ---- the end of the return window ----


async def test_the_order_completes_when_its_window_ends_and_its_returns_are_settled(
    client, settings, sessions, capsys
):
    skus = add_products(sessions, {"HAT": 5}, price="10.00")
    sku = skus["HAT"]
    order_id = await delivered(client, settings, sessions, [(sku, 2)], return_window=timedelta(seconds=3))
    ret = await request_return(client, order_id, ReturnRequest(sku=sku, quantity=1, reason="too big"))
    await eventually(lambda: timers(client, order_id), lambda t: t.get("return window") == "fired")

    # the window has closed, but the order waits for the parcel of its open return
    assert (await handle(client, order_id).describe()).status == WorkflowExecutionStatus.RUNNING
    assert await cli(settings, "return", order_id, "--sku", sku, "--qty", "1", "--reason", "late") == (1, "")
    assert f"the return window of order {order_id} closed" in capsys.readouterr().err

    assert (await cli(settings, "receive-return", order_id, ret.rma))[0] == 0
    result = await asyncio.wait_for(handle(client, order_id).result(), timeout=30)

    assert (result.status, result.payment_status) == ("completed", "partially_refunded")
    assert [(r.rma, r.status, r.refund_amount) for r in result.returns] == [
        (ret.rma, "refunded", Decimal("10.00"))
    ]
    assert result.events[-1].type == "order_completed"
    with sessions() as session:
        order = session.get(t.Order, order_id)
        assert order is not None and (order.status, order.payment_status) == (
            "completed",
            "partially_refunded",
        )
    assert_ledger_invariants(sessions, order_id)

    # once the order is closed, nothing more can be returned
    assert await cli(settings, "return", order_id, "--sku", sku, "--qty", "1", "--reason", "late") == (1, "")
    assert f"order {order_id} is closed" in capsys.readouterr().err
