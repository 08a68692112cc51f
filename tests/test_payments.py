"""Payments: declined cards, a flaky gateway, and the payments ledger's invariants and idempotency."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from adapters.payments import GatewayReceipt, GatewayUnavailable, PaymentDeclined, PaymentRejected
from config import Settings
from db import SessionFactory
from domain.payment_ledger import PaymentLedger, ledger_totals
from models import tables as t
from sandbox.gateway import TEST_TOKENS, SandboxGateway, sandbox_ledger
from services.orders import handle
from tests.helpers import (
    add_products,
    cli,
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

ORDERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "orders.md"  # the test tokens table


def payments(sessions: SessionFactory, order_id: str) -> list[t.Payment]:
    with sessions() as session:
        return list(
            session.scalars(select(t.Payment).where(t.Payment.order_id == order_id).order_by(t.Payment.id))
        )


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
async def test_an_unknown_token_is_declined_not_approved(client: Client, settings: Settings, sessions):
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_mastercard"))

    result = await rejection(client, order_id)

    assert (result.status, result.payment_status) == ("rejected", "declined")
    (reason,) = [e.detail for e in events(sessions, order_id) if e.type == "order_rejected"]
    assert reason.startswith("payment declined: unknown_test_token")
    assert "test tokens" in reason  # says why, not only the code
    (payment,) = payments(sessions, order_id)
    assert (payment.status, payment.decline_code) == ("declined", "unknown_test_token")
    assert stock_of(sessions, skus["TEE"]) == (5, 0)


def test_the_docs_list_every_test_token():
    rows = [line for line in ORDERS_DOC.read_text().splitlines() if line.startswith("| `tok_")]
    listed = {token for row in rows for token in row.split("|")[1].replace("`", "").replace(",", " ").split()}
    assert listed == TEST_TOKENS
    assert any(
        "unknown_test_token" in line for line in ORDERS_DOC.read_text().splitlines() if line.startswith("|")
    )


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
    # the retries show in the order's events
    (authorized,) = [e.detail for e in events(sessions, order_id) if e.type == "payment_authorized"]
    assert authorized.endswith("after 3 attempts"), authorized
    with sessions() as session:
        counted = session.get(t.GatewayAttempt, f"order-{order_id}:authorize")
        assert counted is not None and (counted.operation, counted.failures) == ("authorization", 2)


# ---- the worker's log: refusals one line, retries one line each after the first ----


def activity_records(caplog: pytest.LogCaptureFixture, order_id: str, activity_type: str) -> list:
    return [
        r
        for r in caplog.records
        if r.name == "temporalio.activity"
        and getattr(r, "temporal_activity", {}).get("workflow_id") == f"order-{order_id}"
        and getattr(r, "temporal_activity", {}).get("activity_type") == activity_type
        and r.levelno >= logging.INFO
    ]


@pytest.mark.usefixtures("worker")
async def test_a_declined_card_is_one_log_line_without_a_traceback(
    client: Client, settings: Settings, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)  # the root: the worker's own level, as in worker.py
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_declined"))
    await rejection(client, order_id)

    (record,) = activity_records(caplog, order_id, "authorize_payment")
    assert record.levelno == logging.INFO
    assert record.exc_info is None and record.exc_text is None
    line = caplog.handler.format(record)
    assert "\n" not in line and "Traceback" not in line
    assert "authorize_payment refused: PaymentDeclined: payment declined: card_declined" in line


@pytest.mark.usefixtures("worker")
async def test_a_flaky_gateway_logs_the_traceback_once_then_one_line_per_retry(
    client: Client, settings: Settings, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_flaky"))
    await wait_status(client, order_id, "confirmed", "picking", "packed", "shipped")

    first, second = activity_records(caplog, order_id, "authorize_payment")
    assert first.levelno == logging.WARNING and first.exc_info is not None  # the whole story, once
    assert "authorize_payment attempt 1 failed, will retry: GatewayUnavailable" in first.getMessage()
    assert "Traceback" in caplog.handler.format(first)
    assert second.levelno == logging.WARNING and second.exc_info is None
    line = caplog.handler.format(second)
    assert "\n" not in line
    assert "authorize_payment attempt 2 failed, will retry: GatewayUnavailable: gateway timeout" in line


# ---- place --wait: the exit status tells a rejected order ----


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("token", "status", "outcome"),
    [("tok_visa", 0, "confirmed"), ("tok_declined", 1, "rejected: payment declined: card_declined")],
)
async def test_place_wait_exits_1_when_the_order_is_rejected(
    settings: Settings,
    sessions: SessionFactory,
    tmp_path: Path,
    capsys,
    token: str,
    status: int,
    outcome: str,
):
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    doc = order_doc([(skus["TEE"], 1)], token=token)
    path = tmp_path / "order.json"
    path.write_text(json.dumps(doc))

    code, out = await cli(settings, "place", str(path), "--wait")

    assert (code, out.strip()) == (status, f"{doc['order_id']} {outcome}")
    err = capsys.readouterr().err
    if status:
        assert f"error: order {doc['order_id']} was rejected: payment declined: card_declined" in err
    else:
        assert "error" not in err


# ---- the ledger with the sandbox gateway, directly ----


@pytest.fixture
def payment_ledger(sessions: SessionFactory) -> PaymentLedger:
    return sandbox_ledger(sessions)


def authorized(payment_ledger: PaymentLedger, amount: str = "50.00") -> str:
    order_id = unique("PAY")
    payment_ledger.authorize(f"{order_id}:authorize", order_id, Decimal(amount), "EUR", "tok_visa")
    return order_id


def totals(sessions: SessionFactory, order_id: str) -> tuple[Decimal, Decimal, Decimal]:
    """(authorized, captured, refunded), after checking the ledger's invariants."""
    with sessions() as session:
        found = ledger_totals(session, order_id)
    assert found.captured <= found.authorized and found.refunded <= found.captured
    return found.authorized, found.captured, found.refunded


def test_capture_beyond_the_authorization_is_refused(payment_ledger, sessions):
    order_id = authorized(payment_ledger)
    with pytest.raises(PaymentRejected):
        payment_ledger.capture(f"{order_id}:capture", order_id, Decimal("50.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), 0, 0)
    assert len(payments(sessions, order_id)) == 1


def test_partial_captures_up_to_the_authorization(payment_ledger, sessions):
    order_id = authorized(payment_ledger)
    payment_ledger.capture(f"{order_id}:capture:1", order_id, Decimal("20.00"))
    payment_ledger.capture(f"{order_id}:capture:2", order_id, Decimal("30.00"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)
    with pytest.raises(PaymentRejected):
        payment_ledger.capture(f"{order_id}:capture:3", order_id, Decimal("0.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)


def test_capture_after_void_is_refused(payment_ledger, sessions):
    order_id = authorized(payment_ledger)
    payment_ledger.capture(f"{order_id}:capture:1", order_id, Decimal("20.00"))
    void = payment_ledger.void(f"{order_id}:void", order_id)
    assert void is not None and void.amount == Decimal("30.00")  # what was left uncaptured
    with pytest.raises(PaymentRejected):
        payment_ledger.capture(f"{order_id}:capture:2", order_id, Decimal("10.00"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("20.00"), 0)


def test_refund_beyond_the_capture_is_refused(payment_ledger, sessions):
    order_id = authorized(payment_ledger)
    payment_ledger.capture(f"{order_id}:capture", order_id, Decimal("30.00"))
    with pytest.raises(PaymentRejected):
        payment_ledger.refund(f"{order_id}:refund:1", order_id, Decimal("30.01"))
    payment_ledger.refund(f"{order_id}:refund:2", order_id, Decimal("30.00"))
    with pytest.raises(PaymentRejected):
        payment_ledger.refund(f"{order_id}:refund:3", order_id, Decimal("0.01"))
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("30.00"), Decimal("30.00"))


def test_repeated_key_replays_the_original_outcome(payment_ledger, sessions):
    order_id = unique("PAY")
    first = payment_ledger.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    again = payment_ledger.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_visa")
    assert (again.id, again.reference) == (first.id, first.reference)
    capture = payment_ledger.capture(f"{order_id}:capture", order_id, Decimal("50.00"))
    # a retry after a lost response: replayed, not refused as a capture beyond the authorization
    replay = payment_ledger.capture(f"{order_id}:capture", order_id, Decimal("50.00"))
    assert (replay.id, replay.reference) == (capture.id, capture.reference)
    assert sorted(p.kind for p in payments(sessions, order_id)) == ["authorization", "capture"]
    assert totals(sessions, order_id) == (Decimal("50.00"), Decimal("50.00"), 0)


def test_repeated_declined_key_declines_again_without_a_second_row(payment_ledger, sessions):
    order_id = unique("PAY")
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as declined:
            payment_ledger.authorize(
                f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_declined"
            )
        assert declined.value.code == "card_declined"
    (row,) = payments(sessions, order_id)
    assert (row.status, row.decline_code) == ("declined", "card_declined")
    assert totals(sessions, order_id) == (0, 0, 0)


def test_an_unknown_token_is_declined(payment_ledger, sessions):
    order_id = unique("PAY")
    with pytest.raises(PaymentDeclined) as declined:
        payment_ledger.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_amex")
    assert declined.value.code == "unknown_test_token"
    assert [(p.status, p.decline_code) for p in payments(sessions, order_id)] == [
        ("declined", "unknown_test_token")
    ]


def test_the_flaky_count_survives_a_worker_restart(sessions):
    """The failures are counted in the database: a new ledger and gateway (a restarted worker) go on
    counting."""
    order_id = unique("PAY")
    key = f"{order_id}:authorize"
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            sandbox_ledger(sessions).authorize(key, order_id, Decimal("50.00"), "EUR", "tok_flaky")
        assert payments(sessions, order_id) == []  # an outage writes nothing to the ledger
    row = sandbox_ledger(sessions).authorize(key, order_id, Decimal("50.00"), "EUR", "tok_flaky")
    assert (row.kind, row.status) == ("authorization", "approved")
    with sessions() as session:
        counted = session.get(t.GatewayAttempt, key)
        assert counted is not None and counted.failures == 2
    # the void of tok_flaky_void the same way; tok_void_unavailable never goes through
    for token, outages in (("tok_flaky_void", 2), ("tok_void_unavailable", 4)):
        order_id = unique("PAY")
        sandbox_ledger(sessions).authorize(f"{order_id}:authorize", order_id, Decimal("5.00"), "EUR", token)
        for _ in range(outages):
            with pytest.raises(GatewayUnavailable):
                sandbox_ledger(sessions).void(f"{order_id}:void", order_id, token)
        if token == "tok_flaky_void":
            void = sandbox_ledger(sessions).void(f"{order_id}:void", order_id, token)
            assert void is not None and void.amount == Decimal("5.00")


def test_no_authorization_nothing_to_void_capture_or_refund(payment_ledger, sessions):
    order_id = unique("PAY")
    with pytest.raises(PaymentDeclined):
        payment_ledger.authorize(
            f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_insufficient_funds"
        )
    assert payment_ledger.void(f"{order_id}:void", order_id) is None
    with pytest.raises(PaymentRejected):
        payment_ledger.refund(f"{order_id}:refund", order_id, Decimal("1.00"))
    with pytest.raises(PaymentRejected):
        payment_ledger.capture(f"{order_id}:capture", order_id, Decimal("1.00"))
    assert [p.status for p in payments(sessions, order_id)] == ["declined"]  # nothing written
    assert totals(sessions, order_id) == (0, 0, 0)


# ---- the ledger with any provider: what it asks, and what it records of the answers ----


class CountingProvider:
    """A PaymentGateway that approves everything and counts what it was asked, as a real provider's
    logs would show it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, Decimal]] = []  # (operation, key, amount)

    def _answer(self, operation: str, key: str, amount: Decimal) -> GatewayReceipt:
        self.asked.append((operation, key, amount))
        return GatewayReceipt(f"psp_{len(self.asked)}")

    def authorize(
        self, key: str, order_id: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        return self._answer("authorize", key, amount)

    def capture(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        assert authorization == "psp_1"  # under the authorization the provider gave
        return self._answer("capture", key, amount)

    def refund(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        return self._answer("refund", key, amount)

    def void(
        self, key: str, authorization: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        return self._answer("void", key, amount)


def test_a_recorded_key_or_a_refused_request_never_reaches_the_provider(sessions):
    provider = CountingProvider()
    book = PaymentLedger(sessions, provider)
    order_id = unique("PAY")
    for _ in range(2):  # the second time from the ledger: the provider is not asked again
        book.authorize(f"{order_id}:authorize", order_id, Decimal("50.00"), "EUR", "tok_any")
        book.capture(f"{order_id}:capture", order_id, Decimal("20.00"))
    with pytest.raises(PaymentRejected):
        book.refund(f"{order_id}:refund", order_id, Decimal("20.01"))  # beyond the capture
    void = book.void(f"{order_id}:void", order_id)
    assert void is not None and void.reference == "psp_3"  # the provider's reference, recorded
    assert provider.asked == [
        ("authorize", f"{order_id}:authorize", Decimal("50.00")),
        ("capture", f"{order_id}:capture", Decimal("20.00")),
        ("void", f"{order_id}:void", Decimal("30.00")),  # what the ledger says is still held
    ]
    assert [(p.kind, p.amount, p.reference) for p in payments(sessions, order_id)] == [
        ("authorization", Decimal("50.00"), "psp_1"),
        ("capture", Decimal("20.00"), "psp_2"),
        ("void", Decimal("30.00"), "psp_3"),
    ]


def test_an_answer_lost_before_its_record_is_asked_again_and_recorded_once(sessions):
    """The worker died after the sandbox gateway answered and before the ledger recorded it: the retry
    asks again with the same key, and the gateway answers as the first time."""
    order_id = unique("PAY")
    key = f"{order_id}:authorize"
    lost = SandboxGateway(sessions).authorize(key, order_id, Decimal("50.00"), "EUR", "tok_visa")
    assert payments(sessions, order_id) == []
    row = sandbox_ledger(sessions).authorize(key, order_id, Decimal("50.00"), "EUR", "tok_visa")
    assert row.reference == lost.reference
    assert [(p.kind, p.status, p.amount) for p in payments(sessions, order_id)] == [
        ("authorization", "approved", Decimal("50.00"))
    ]
