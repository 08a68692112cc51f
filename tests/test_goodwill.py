"""Goodwill refunds through the doors (HTTP API, command line, console) on the real stack: a dev
server, the real worker, the real ledger and database (docs/orders.md, support's actions)."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from adapters.payments import GatewayUnavailable, PaymentRejected
from config import Settings
from db import SessionFactory
from domain.api_keys import Role
from domain.journal import journal
from domain.reports import Period
from models import tables as t
from sandbox.gateway import sandbox_ledger
from services.orders import confirm_delivery, order_view
from tests.helpers import (
    add_products,
    as_,
    assert_ledger_invariants,
    cli,
    events,
    eventually,
    ledger,
    order_doc,
    outbox,
    place,
    unique,
    wait_status,
)
from tests.test_console_session import sign_in

pytestmark = pytest.mark.usefixtures("worker")


async def delivered(client: Client, settings: Settings, sessions: SessionFactory, **policy: timedelta) -> str:
    """An order of 2 x 40.00 EUR, shipped (80.00 captured) and delivered, its return window open."""
    skus = add_products(sessions, {"GW": 10}, price="40.00")
    order_id = await place(client, settings, order_doc([(skus["GW"], 2)]), **policy)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")
    return order_id


def goodwill_rows(sessions: SessionFactory, order_id: str) -> list[t.Payment]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Payment)
                .where(t.Payment.order_id == order_id, t.Payment.kind == "goodwill_refund")
                .order_by(t.Payment.id)
            )
        )


async def test_support_refunds_within_the_limit(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id = await delivered(client, settings, sessions)
    answer = await http.post(
        f"/orders/{order_id}/refunds",
        json={"amount": "5.00", "reason": "late_delivery", "note": "two days late"},
        headers=as_(api_keys, Role.support) | {"Idempotency-Key": f"gw-{order_id}"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["amount"], body["currency"], body["reason"]) == ("5.00", "EUR", "late_delivery")

    # the ledger: its own kind, the gateway's refund, within the capture
    (row,) = goodwill_rows(sessions, order_id)
    assert (row.status, Decimal(row.amount), row.currency, row.reference) == (
        "approved",
        Decimal("5.00"),
        "EUR",
        body["reference"],
    )
    assert ledger(sessions, order_id) == {
        "authorization": Decimal("80.00"),
        "capture": Decimal("80.00"),
        "goodwill_refund": Decimal("5.00"),
    }
    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.authorized >= totals.captured >= totals.refunded == Decimal("5.00")

    # the view, the story (with the reason code) and the customer's message
    view = await order_view(client, order_id)
    assert (view.payment.refunded, view.payment.goodwill_refunded) == (Decimal("5.00"), Decimal("5.00"))
    assert view.payment_status == "partially_refunded"
    await eventually(
        lambda: events(sessions, order_id), lambda es: any(e.type == "goodwill_refund_issued" for e in es)
    )
    (event,) = [e for e in events(sessions, order_id) if e.type == "goodwill_refund_issued"]
    assert event.reason_code == "late_delivery" and "two days late" in event.detail
    await eventually(lambda: outbox(sessions, order_id), lambda kinds: "goodwill_refund_issued" in kinds)
    with sessions() as session:
        message = session.scalars(
            select(t.Notification).where(
                t.Notification.order_id == order_id, t.Notification.kind == "goodwill_refund_issued"
            )
        ).one()
    assert "5.00 EUR" in message.body and "late delivery" in message.body

    # the finance journal: a cash row of its own kind, negative
    today = datetime.now(UTC).date()
    entries = journal(sessions, Period(today - timedelta(days=1), today + timedelta(days=1)))
    (entry,) = [r for r in entries.rows if r.order_id == order_id and r.kind == "goodwill_refund"]
    assert (entry.book, entry.amount, entry.signed_amount) == ("cash", Decimal("5.00"), Decimal("-5.00"))
    assert entries.balanced

    # the order page shows it
    got = await http.get(f"/orders/{order_id}", headers=as_(api_keys, Role.support))
    assert got.json()["payment"]["goodwill_refunded"] == "5.00"


async def test_above_the_limit_needs_an_admin(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id = await delivered(client, settings, sessions)
    url, big = f"/orders/{order_id}/refunds", {"amount": "60.00", "reason": "damaged_item"}
    refused = await http.post(url, json=big, headers=as_(api_keys, Role.support))
    assert refused.status_code == 403, refused.text
    assert "50.00" in refused.json()["detail"] and "OMS_GOODWILL_LIMIT" in refused.json()["detail"]
    assert goodwill_rows(sessions, order_id) == []
    for role in (Role.source, Role.warehouse):  # not theirs at all
        assert (await http.post(url, json=big, headers=as_(api_keys, role))).status_code == 403

    done = await http.post(url, json=big, headers=as_(api_keys, Role.admin))
    assert done.status_code == 201, done.text
    assert [Decimal(r.amount) for r in goodwill_rows(sessions, order_id)] == [Decimal("60.00")]
    assert_ledger_invariants(sessions, order_id)


async def test_more_than_refundable_is_refused_and_nothing_moves(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id = await delivered(client, settings, sessions)
    admin, url = as_(api_keys, Role.admin), f"/orders/{order_id}/refunds"
    assert (
        await http.post(url, json={"amount": "70.00", "reason": "other"}, headers=admin)
    ).status_code == 201
    before = ledger(sessions, order_id)
    too_much = await http.post(url, json={"amount": "10.01", "reason": "other"}, headers=admin)
    assert too_much.status_code == 422, too_much.text
    assert "at most 10.00 EUR" in too_much.json()["detail"]
    for body in (
        {"amount": "0.00", "reason": "other"},
        {"amount": "-1", "reason": "other"},
        {"amount": "1.001", "reason": "other"},
        {"amount": "1.00", "reason": "because"},
    ):
        answer = await http.post(url, json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.text)
    wrong = await http.post(url, json={"amount": "1.00", "reason": "other", "currency": "USD"}, headers=admin)
    assert wrong.status_code == 422 and "not USD" in wrong.json()["detail"]
    assert ledger(sessions, order_id) == before
    view = await order_view(client, order_id)
    assert view.payment.refunded == Decimal("70.00") and len(view.goodwill_refunds) == 1
    # what is left, exactly, is still refundable
    assert (
        await http.post(url, json={"amount": "10.00", "reason": "other"}, headers=admin)
    ).status_code == 201
    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.authorized >= totals.captured == totals.refunded == Decimal("80.00")
    assert (await order_view(client, order_id)).payment_status == "refunded"


async def test_a_retried_request_refunds_once(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id = await delivered(client, settings, sessions)
    url = f"/orders/{order_id}/refunds"
    headers = as_(api_keys, Role.support) | {"Idempotency-Key": f"retry-{order_id}"}
    body = {"amount": "7.50", "reason": "service_issue"}
    first, second = await asyncio.gather(
        http.post(url, json=body, headers=headers), http.post(url, json=body, headers=headers)
    )
    third = await http.post(url, json=body, headers=headers)
    assert [a.status_code for a in (first, second, third)] == [201, 201, 201], [first.text, second.text]
    assert first.json() == second.json() == third.json()
    assert [Decimal(r.amount) for r in goodwill_rows(sessions, order_id)] == [Decimal("7.50")]
    view = await order_view(client, order_id)
    assert view.payment.goodwill_refunded == Decimal("7.50") and len(view.goodwill_refunds) == 1
    kinds = await outbox(sessions, order_id)
    assert kinds.count("goodwill_refund_issued") == 1
    # another key is another refund
    other = await http.post(url, json=body, headers=as_(api_keys, Role.support))
    assert other.status_code == 201
    assert len(goodwill_rows(sessions, order_id)) == 2
    assert_ledger_invariants(sessions, order_id)


async def test_refused_before_capture_and_after_the_order_closed(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    support = as_(api_keys, Role.support)
    skus = add_products(sessions, {"HOLD": 5}, price="40.00")
    held = await place(client, settings, order_doc([(skus["HOLD"], 1)]), release_delay=timedelta(minutes=10))
    await wait_status(client, held, "confirmed")
    early = await http.post(
        f"/orders/{held}/refunds", json={"amount": "1.00", "reason": "other"}, headers=support
    )
    assert early.status_code == 409 and "nothing has been captured" in early.json()["detail"]

    closed = await delivered(client, settings, sessions, return_window=timedelta(seconds=1))
    await wait_status(client, closed, "completed")
    await eventually(
        lambda: client.get_workflow_handle(f"order-{closed}").describe(), lambda d: d.close_time is not None
    )
    late = await http.post(
        f"/orders/{closed}/refunds", json={"amount": "1.00", "reason": "other"}, headers=support
    )
    assert late.status_code == 409 and "is closed" in late.json()["detail"]
    assert goodwill_rows(sessions, held) == goodwill_rows(sessions, closed) == []
    unknown = await http.post(
        "/orders/NOPE-1/refunds", json={"amount": "1.00", "reason": "other"}, headers=support
    )
    assert unknown.status_code == 404


async def test_command_line_and_console(
    capsys: pytest.CaptureFixture[str],
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id = await delivered(client, settings, sessions)
    status, out = await cli(
        settings, "refund", order_id, "3.00", "--reason", "price_adjustment", "--note", "promo"
    )
    assert status == 0, out
    assert f"{order_id}: goodwill refund 3.00 EUR (price_adjustment)" in out
    status, out = await cli(settings, "refund", order_id, "100.00", "--reason", "other")
    assert status == 1 and "at most 77.00 EUR" in capsys.readouterr().err
    status, out = await cli(settings, "refund", order_id, "3.001", "--reason", "other")
    assert status == 2 and "invalid refund" in capsys.readouterr().err

    # the console: sign in as support, the form is on the order page
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    page = await http.get(f"/console/orders/{order_id}")
    assert page.status_code == 200 and "Goodwill refund" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    key = re.search(r'name="key" value="([^"]+)"', page.text)
    assert csrf and key
    form = {"csrf": csrf[1], "key": key[1], "amount": "4.00", "reason": "damaged_item", "note": "chipped"}
    url = f"/console/orders/{order_id}/refunds"
    done = await http.post(url, data=form)
    again = await http.post(url, data=form)  # the form sent twice: one refund
    assert (done.status_code, again.status_code) == (303, 303)
    assert [Decimal(r.amount) for r in goodwill_rows(sessions, order_id)] == [
        Decimal("3.00"),
        Decimal("4.00"),
    ]
    over = await http.post(url, data=form | {"amount": "51.00", "key": "console-other"})
    assert over.status_code == 403 and "OMS_GOODWILL_LIMIT" in over.text
    page = await http.get(f"/console/orders/{order_id}")
    assert "chipped" in page.text and "of which goodwill 7.00" in page.text
    assert_ledger_invariants(sessions, order_id)


# ---- the ledger: every refund kind within the capture ----


def test_the_ledger_counts_goodwill_and_return_refunds_together(sessions: SessionFactory) -> None:
    ledger_ = sandbox_ledger(sessions)
    order_id = unique("GWL")
    ledger_.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    ledger_.capture(f"{order_id}:capture", order_id, Decimal("40.00"))
    ledger_.refund(f"{order_id}:refund", order_id, Decimal("25.00"))
    with pytest.raises(PaymentRejected):
        ledger_.goodwill_refund(f"{order_id}:goodwill:1", order_id, Decimal("15.01"))
    row = ledger_.goodwill_refund(f"{order_id}:goodwill:2", order_id, Decimal("15.00"))
    assert row.kind == "goodwill_refund"
    again = ledger_.goodwill_refund(f"{order_id}:goodwill:2", order_id, Decimal("15.00"))  # replayed
    assert again.id == row.id
    with pytest.raises(PaymentRejected):
        ledger_.refund(f"{order_id}:refund:2", order_id, Decimal("0.01"))
    totals = assert_ledger_invariants(sessions, order_id)
    assert (totals.authorized, totals.captured, totals.refunded) == (
        Decimal("50.00"),
        Decimal("40.00"),
        Decimal("40.00"),
    )


def test_concurrent_goodwill_refunds_never_exceed_the_capture(sessions: SessionFactory) -> None:
    """Ten requests at once for 20.00 each on 50.00 captured: two go through, whatever the timing
    (the ledger checks again under the authorization's lock when it records the gateway's answer)."""
    ledger_ = sandbox_ledger(sessions)
    order_id = unique("GWC")
    ledger_.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    ledger_.capture(f"{order_id}:capture", order_id, Decimal("50.00"))

    def refund(n: int) -> str:
        try:
            ledger_.goodwill_refund(f"{order_id}:goodwill:{n}", order_id, Decimal("20.00"))
        except PaymentRejected:
            return "refused"
        except GatewayUnavailable:  # a write conflict: a retry would ask again
            return "retry"
        return "refunded"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(refund, range(10)))
    assert outcomes.count("refunded") == 2, outcomes
    totals = assert_ledger_invariants(sessions, order_id)
    assert totals.authorized >= totals.captured >= totals.refunded == Decimal("40.00")
