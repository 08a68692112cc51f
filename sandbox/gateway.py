"""The sandbox payment gateway: a `PaymentGateway` (adapters/payments.py) that reacts to documented
test tokens. The ledger and its invariants are the product's (domain/payment_ledger.py), as with a
real provider.

Tokens: tok_visa approves; tok_declined and tok_insufficient_funds decline; tok_flaky fails
transiently twice per authorization and then approves; tok_flaky_void approves but its void fails
transiently twice; tok_void_unavailable approves but its void never goes through (an outage); any other
token is declined with `unknown_test_token`. tok_no_increment approves an authorization but declines
any increment of it (`incremental_authorization_unavailable`, as many cards do). The transient failures are counted per request in
`gateway_attempts`, so a worker restart does not start the count again. Like a real provider it is
idempotent per key: the same key always gets the same answer and reference.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.payments import GatewayReceipt, GatewayUnavailable, PaymentDeclined
from db import SessionFactory
from domain.payment_ledger import PaymentLedger
from models.events import PaymentKind
from models.tables import GatewayAttempt, utcnow

DECLINES = {"tok_declined": "card_declined", "tok_insufficient_funds": "insufficient_funds"}
# token -> (operation, failures before it goes through; None: never)
TRANSIENT_FAILURES: dict[str, tuple[str, int | None]] = {
    "tok_flaky": (PaymentKind.authorization, 2),
    "tok_flaky_void": (PaymentKind.void, 2),
    "tok_void_unavailable": (PaymentKind.void, None),
}
# approve the authorization, decline its increments
NO_INCREMENTS = {"tok_no_increment": "incremental_authorization_unavailable"}
APPROVES = {"tok_visa"} | NO_INCREMENTS.keys()
TEST_TOKENS = APPROVES | DECLINES.keys() | TRANSIENT_FAILURES.keys()
UNKNOWN_TOKEN = "unknown_test_token"  # the decline code of a token the sandbox does not know
UNKNOWN_TOKEN_HINT = "not one of the sandbox gateway's test tokens, e.g. tok_visa"


class SandboxGateway:
    """Approves, declines or fails as the request's test token says; moves no money."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions  # for the count of simulated failures only

    def authorize(
        self, key: str, order_id: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        self._fail_as_the_token_says(key, token, PaymentKind.authorization)
        if code := DECLINES.get(token):
            raise PaymentDeclined(code, reference=_reference(key))
        if token not in TEST_TOKENS:
            raise PaymentDeclined(UNKNOWN_TOKEN, UNKNOWN_TOKEN_HINT, reference=_reference(key))
        return GatewayReceipt(_reference(key))

    def increment(
        self, key: str, authorization: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        if code := NO_INCREMENTS.get(token):
            raise PaymentDeclined(code, "the card does not allow the hold to grow", reference=_reference(key))
        return GatewayReceipt(_reference(key))

    def capture(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        return GatewayReceipt(_reference(key))

    def refund(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        return GatewayReceipt(_reference(key))

    def void(
        self, key: str, authorization: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        self._fail_as_the_token_says(key, token, PaymentKind.void)
        return GatewayReceipt(_reference(key))

    def _fail_as_the_token_says(self, key: str, token: str, operation: str) -> None:
        """Raise the outage a test token simulates for this request, if any, once its count committed."""
        failing, failures = TRANSIENT_FAILURES.get(token, ("", 0))
        if failing != operation:
            return  # the token simulates nothing here: no transaction
        with self._sessions.begin() as session:
            outage = _transient_failure(session, key, operation, failures)
        if outage is not None:
            raise outage


def sandbox_ledger(sessions: SessionFactory) -> PaymentLedger:
    """The payments ledger recording what the sandbox gateway answers (tests, chaos's plants)."""
    return PaymentLedger(sessions, SandboxGateway(sessions))


def _reference(key: str) -> str:
    """The gateway's reference of a request: derived from its key, so a repeat gets the original one."""
    return f"pay_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _transient_failure(
    session: Session, key: str, operation: str, failures: int | None
) -> GatewayUnavailable | None:
    """The outage of this request, unless it has failed `failures` times already (None: it always
    fails); every failure is counted in the database (in the caller's transaction, which must commit
    before raising it)."""
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
