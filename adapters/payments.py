"""Sandbox payment gateway: a real ledger in the database that reacts to documented test tokens.

Tokens: tok_visa approves; tok_declined and tok_insufficient_funds decline; tok_flaky fails
transiently twice per authorization and then approves; tok_flaky_void approves but its void fails
transiently twice; tok_void_unavailable approves but its void never goes through (an outage); any other
token is declined with `unknown_test_token`. The transient failures are counted per request in
`gateway_attempts`, so a worker restart does not start the count again. Every request carries an
idempotency key: repeating a key returns the original outcome and never moves money twice. The ledger
enforces captured <= authorized, refunded <= captured and no capture after a void.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import SessionFactory
from models.events import PaymentKind
from models.tables import GatewayAttempt, Payment, utcnow

DECLINES = {"tok_declined": "card_declined", "tok_insufficient_funds": "insufficient_funds"}
# token -> (operation, failures before it goes through; None: never)
TRANSIENT_FAILURES: dict[str, tuple[str, int | None]] = {
    "tok_flaky": (PaymentKind.authorization, 2),
    "tok_flaky_void": (PaymentKind.void, 2),
    "tok_void_unavailable": (PaymentKind.void, None),
}
APPROVES = {"tok_visa"}
TEST_TOKENS = APPROVES | DECLINES.keys() | TRANSIENT_FAILURES.keys()
UNKNOWN_TOKEN = "unknown_test_token"  # the decline code of a token the sandbox does not know


class PaymentDeclined(Exception):
    def __init__(self, code: str) -> None:
        hint = (
            " (not one of the sandbox gateway's test tokens, e.g. tok_visa)" if code == UNKNOWN_TOKEN else ""
        )
        super().__init__(f"payment declined: {code}{hint}")
        self.code = code


class PaymentRejected(Exception):
    """The request would break a ledger invariant (e.g. capture more than authorized)."""


class GatewayUnavailable(Exception):
    """A transient failure: the same request with the same key may be retried."""


@dataclass(frozen=True)
class LedgerTotals:
    authorized: Decimal
    captured: Decimal
    refunded: Decimal
    voided: bool


class SandboxGateway:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def authorize(self, key: str, order_id: str, amount: Decimal, currency: str, token: str) -> Payment:
        with self._sessions.begin() as session:
            if (done := _by_key(session, key)) is not None:
                return _replay(done)
            # a simulated outage is counted in this transaction and raised once that has committed
            outage = _transient_failure(session, key, token, PaymentKind.authorization)
            code = DECLINES.get(token) or (None if token in TEST_TOKENS else UNKNOWN_TOKEN)
            row = (
                None
                if outage
                else _record(session, order_id, PaymentKind.authorization, amount, currency, key, code)
            )
        if outage is not None:
            raise outage
        if code is not None:
            raise PaymentDeclined(code)
        assert row is not None
        return row

    def capture(self, key: str, order_id: str, amount: Decimal) -> Payment:
        return self._move(key, order_id, PaymentKind.capture, amount, _check_capture)

    def refund(self, key: str, order_id: str, amount: Decimal) -> Payment:
        return self._move(key, order_id, PaymentKind.refund, amount, _check_refund)

    def void(self, key: str, order_id: str, token: str = "") -> Payment | None:
        """Void what is authorized and not captured; None when there is no approved authorization."""
        with self._sessions.begin() as session:
            if (done := _by_key(session, key)) is not None:
                return done
            if (outage := _transient_failure(session, key, token, PaymentKind.void)) is None:
                auth = _authorization(session, order_id, lock=True)
                if auth is None:
                    return None
                totals = ledger_totals(session, order_id)
                remaining = totals.authorized - totals.captured if not totals.voided else Decimal("0")
                return _record(session, order_id, PaymentKind.void, remaining, auth.currency, key)
        raise outage

    def _move(self, key: str, order_id: str, kind: PaymentKind, amount: Decimal, check) -> Payment:  # type: ignore[no-untyped-def]
        with self._sessions.begin() as session:
            if (done := _by_key(session, key)) is not None:
                return _replay(done)
            auth = _authorization(session, order_id, lock=True)
            if auth is None:
                raise PaymentRejected(f"{kind} refused: order {order_id} has no approved authorization")
            check(ledger_totals(session, order_id), amount)
            return _record(session, order_id, kind, amount, auth.currency, key)


def ledger_totals(session: Session, order_id: str) -> LedgerTotals:
    rows = session.execute(
        select(Payment.kind, func.coalesce(func.sum(Payment.amount), 0), func.count())
        .where(Payment.order_id == order_id, Payment.status == "approved")
        .group_by(Payment.kind)
    ).all()
    sums = {kind: (Decimal(total), count) for kind, total, count in rows}
    zero = (Decimal("0"), 0)
    return LedgerTotals(
        authorized=sums.get(PaymentKind.authorization, zero)[0],
        captured=sums.get(PaymentKind.capture, zero)[0],
        refunded=sums.get(PaymentKind.refund, zero)[0],
        voided=sums.get(PaymentKind.void, zero)[1] > 0,
    )


def _check_capture(totals: LedgerTotals, amount: Decimal) -> None:
    if totals.voided:
        raise PaymentRejected("capture refused: the authorization was voided")
    if totals.captured + amount > totals.authorized:
        raise PaymentRejected(
            f"capture refused: {totals.captured} + {amount} would exceed authorized {totals.authorized}"
        )


def _check_refund(totals: LedgerTotals, amount: Decimal) -> None:
    if totals.refunded + amount > totals.captured:
        raise PaymentRejected(
            f"refund refused: {totals.refunded} + {amount} would exceed captured {totals.captured}"
        )


def _transient_failure(session: Session, key: str, token: str, operation: str) -> GatewayUnavailable | None:
    """The outage a test token simulates for this request, if any; every failure is counted in the
    database (in the caller's transaction, which must commit before raising it)."""
    failing, failures = TRANSIENT_FAILURES.get(token, ("", 0))
    if failing != operation:
        return None
    row = session.get(GatewayAttempt, key, with_for_update=True)
    if row is not None and failures is not None and row.failures >= failures:
        return None
    if row is None:
        row = GatewayAttempt(idempotency_key=key, operation=operation, failures=0)
        session.add(row)
    row.failures += 1
    row.updated_at = utcnow()
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent attempt counted first: this one is retried
        raise GatewayUnavailable(f"concurrent request for {key}") from exc
    return GatewayUnavailable(f"gateway timeout ({operation} attempt {row.failures} for {key})")


def _by_key(session: Session, key: str) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.idempotency_key == key))


def _authorization(session: Session, order_id: str, lock: bool) -> Payment | None:
    query = select(Payment).where(
        Payment.order_id == order_id, Payment.kind == PaymentKind.authorization, Payment.status == "approved"
    )
    return session.scalar(query.with_for_update() if lock else query)


def _replay(row: Payment) -> Payment:
    """The same key again: the gateway answers with the original outcome."""
    if row.status == "declined":
        raise PaymentDeclined(row.decline_code or "declined")
    return row


def _record(
    session: Session,
    order_id: str,
    kind: PaymentKind,
    amount: Decimal,
    currency: str,
    key: str,
    decline_code: str | None = None,
) -> Payment:
    row = Payment(
        order_id=order_id,
        kind=kind,
        status="declined" if decline_code else "approved",
        amount=amount,
        currency=currency,
        idempotency_key=key,
        reference=f"pay_{uuid.uuid4().hex[:16]}",
        decline_code=decline_code,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request with the same key won: let the retry replay it
        raise GatewayUnavailable(f"concurrent request for {key}") from exc
    return row
