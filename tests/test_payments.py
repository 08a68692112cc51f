"""Payments: declined cards, a flaky gateway, and the sandbox ledger's invariants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from adapters.payments import PaymentDeclined, PaymentRejected, SandboxGateway, ledger_totals
from config import Settings
from db import SessionFactory
from models import tables as t
from services.orders import handle
from tests.helpers import (
    add_products,
    events,
    ledger,
    notifications,
    order_doc,
    place,
    rejection,
    stock_of,
    unique,
    wait_status,
)


def payments(sessions: SessionFactory, order_id: str) -> list[t.Payment]:
    with sessions() as session:
        return list(session.scalars(select(t.Payment).where(t.Payment.order_id == order_id)))


# ---- through the workflow ----


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("token", "code"), [("tok_declined", "card_declined"), ("tok_insufficient_funds", "insufficient_funds")]
)
async def test_declined_card_rejects_the_order_without_reserving(
    client: Client, settings: Settings, sessions: SessionFactory, token: str, code: str
):
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 2)], token=token))

    result = await rejection(client, order_id)

    assert (await handle(client, order_id).describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (result.status, result.payment_status) == ("rejected", "declined")
    reason = f"payment declined: {code}"
    assert [e.detail for e in events(sessions, order_id) if e.type == "order_rejected"] == [reason]
    assert stock_of(sessions, skus["TEE"]) == (5, 0)
    (payment,) = payments(sessions, order_id)
    assert (payment.kind, payment.status, payment.decline_code) == ("authorization", "declined", code)
    assert payment.amount == Decimal("39.80")
    assert ledger(sessions, order_id) == {}
    with sessions() as session:
        assert session.scalar(select(func.count()).where(t.Reservation.order_id == order_id)) == 0
        row = session.get(t.Order, order_id)
        assert row is not None and (row.status, row.payment_status) == ("rejected", "declined")
    (notice,) = notifications(sessions, order_id)
    assert notice.kind == "order_rejected" and reason in notice.body


@pytest.mark.usefixtures("worker")
async def test_flaky_gateway_is_retried_until_the_order_ships(
    client: Client, settings: Settings, sessions: SessionFactory
):
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_flaky"))

    view = await wait_status(client, order_id, "shipped")

    assert view.payment_status == "captured"
    auths = [p for p in payments(sessions, order_id) if p.kind == "authorization"]
    assert [(p.status, p.amount) for p in auths] == [("approved", Decimal("19.90"))]
    assert ledger(sessions, order_id) == {"authorization": Decimal("19.90"), "capture": Decimal("19.90")}
    assert stock_of(sessions, skus["TEE"]) == (4, 0)
    history = await handle(client, order_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "authorize_payment"
    }
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    assert len(scheduled) == 1 and attempts == [3]  # two transient failures, then approved


# ---- the gateway's ledger, directly ----


@pytest.fixture
def gateway(sessions: SessionFactory) -> SandboxGateway:
    return SandboxGateway(sessions)


def authorized(gateway: SandboxGateway, amount: str = "50.00") -> str:
    order_id = unique("PAY")
    gateway.authorize(f"{order_id}:authorize", order_id, Decimal(amount), "EUR", "tok_visa")
    return order_id


def totals(sessions: SessionFactory, order_id: str) -> tuple[Decimal, Decimal, Decimal]:
    """(authorized, captured, refunded), after checking the ledger's invariants."""
    with sessions() as session:
        found = ledger_totals(session, order_id)
    assert found.captured <= found.authorized and found.refunded <= found.captured
    return found.authorized, found.captured, found.refunded


def test_capture_beyond_the_authorization_is_refused(gateway, sessions):
    order_id = authorized(gateway)
    with pytest.raises(PaymentRejected):
        gateway.capture(f"{order_id}:capture", order_id, Decimal("50.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), 0, 0)
    assert len(payments(sessions, order_id)) == 1


def test_partial_captures_up_to_the_authorization(gateway, sessions):
    order_id = authorized(gateway)
    gateway.capture(f"{order_id}:capture:1", order_id, Decimal("20.00"))
    gateway.capture(f"{order_id}:capture:2", order_id, Decimal("30.00"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)
    with pytest.raises(PaymentRejected):
        gateway.capture(f"{order_id}:capture:3", order_id, Decimal("0.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)


def test_capture_after_void_is_refused(gateway, sessions):
    order_id = authorized(gateway)
    gateway.capture(f"{order_id}:capture:1", order_id, Decimal("20.00"))
    void = gateway.void(f"{order_id}:void", order_id)
    assert void is not None and void.amount == Decimal("30.00")  # what was left uncaptured
    with pytest.raises(PaymentRejected):
        gateway.capture(f"{order_id}:capture:2", order_id, Decimal("10.00"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("20.00"), 0)


def test_refund_beyond_the_capture_is_refused(gateway, sessions):
    order_id = authorized(gateway)
    gateway.capture(f"{order_id}:capture", order_id, Decimal("30.00"))
    with pytest.raises(PaymentRejected):
        gateway.refund(f"{order_id}:refund:1", order_id, Decimal("30.01"))
    gateway.refund(f"{order_id}:refund:2", order_id, Decimal("30.00"))
    with pytest.raises(PaymentRejected):
        gateway.refund(f"{order_id}:refund:3", order_id, Decimal("0.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("30.00"), Decimal("30.00"))


def test_repeated_key_replays_the_original_outcome(gateway, sessions):
    order_id = unique("PAY")
    first = gateway.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    again = gateway.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    assert (again.id, again.reference) == (first.id, first.reference)
    capture = gateway.capture(f"{order_id}:capture", order_id, Decimal("50.00"))
    # a retry after a lost response: replayed, not refused as a capture beyond the authorization
    replay = gateway.capture(f"{order_id}:capture", order_id, Decimal("50.00"))
    assert (replay.id, replay.reference) == (capture.id, capture.reference)
    assert sorted(p.kind for p in payments(sessions, order_id)) == ["authorization", "capture"]
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)


def test_repeated_declined_key_declines_again_without_a_second_row(gateway, sessions):
    order_id = unique("PAY")
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as declined:
            gateway.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_declined")
        assert declined.value.code == "card_declined"
    (row,) = payments(sessions, order_id)
    assert (row.status, row.decline_code) == ("declined", "card_declined")
    assert totals(sessions, order_id) == (0, 0, 0)


def test_no_authorization_nothing_to_void_capture_or_refund(gateway, sessions):
    order_id = unique("PAY")
    with pytest.raises(PaymentDeclined):
        gateway.authorize(
            f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_insufficient_funds"
        )
    assert gateway.void(f"{order_id}:void", order_id) is None
    with pytest.raises(PaymentRejected):
        gateway.refund(f"{order_id}:refund", order_id, Decimal("1.00"))
    with pytest.raises(PaymentRejected):
        gateway.capture(f"{order_id}:capture", order_id, Decimal("1.00"))
    assert [p.status for p in payments(sessions, order_id)] == ["declined"]  # nothing written
    assert totals(sessions, order_id) == (0, 0, 0)
