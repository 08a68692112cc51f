"""The payments ledger: one `payments` row per answer the payment gateway gave, keyed by the request's
idempotency key, and the invariants the rows keep.

- Idempotent: a key already recorded returns the original outcome (a decline declines again) and
  never reaches the gateway, so money never moves twice, also across a worker restart. A key asked
  but not recorded (the worker died in between) is asked again: the gateway answers a repeated key
  with its original answer (adapters/payments.py).
- One authorization per order; an edit that raises the total adds an increment to it (more held
  under the same reference), and a void releases part of what it holds (an edit that lowers the
  total, a partial cancellation) or all that is left (the end of fulfilment, a compensation).
- Invariants: captured + voided <= authorized (a capture takes only what is still held),
  refunded <= captured. A request that would break one is refused (`PaymentRejected`) before it
  reaches the gateway, and checked again, under a lock on the authorization, when the answer is
  recorded.

The gateway is asked outside any transaction: a provider's answer may take seconds, and the sandbox
gateway counts its simulated failures in a transaction of its own (on SQLite, where every
transaction takes the write lock, one held around it would wait for ever).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adapters.payments import (
    GatewayReceipt,
    GatewayUnavailable,
    PaymentDeclined,
    PaymentGateway,
    PaymentRejected,
)
from db import SessionFactory
from models.events import PaymentKind
from models.tables import Payment


@dataclass(frozen=True)
class LedgerTotals:
    authorized: Decimal  # the authorization and its increments
    captured: Decimal
    refunded: Decimal  # every refund kind
    voided: Decimal  # released by voids, in part or in full

    @property
    def open_authorization(self) -> Decimal:
        """What the authorization still holds: approved, neither captured nor voided."""
        return max(self.authorized - self.captured - self.voided, Decimal(0))


def ledger_totals(session: Session, order_id: str) -> LedgerTotals:
    rows = session.execute(
        select(Payment.kind, func.coalesce(func.sum(Payment.amount), 0), func.count())
        .where(Payment.order_id == order_id, Payment.status == "approved")
        .group_by(Payment.kind)
    ).all()
    sums = {kind: (Decimal(total), count) for kind, total, count in rows}
    zero = (Decimal("0"), 0)
    return LedgerTotals(
        authorized=sum((sums.get(kind, zero)[0] for kind in PaymentKind.holds()), Decimal("0")),
        captured=sums.get(PaymentKind.capture, zero)[0],
        refunded=sum((sums.get(kind, zero)[0] for kind in PaymentKind.refunds()), Decimal("0")),
        voided=sums.get(PaymentKind.void, zero)[0],
    )


@dataclass(frozen=True)
class _Movement:
    """A request the ledger allows, as it will be recorded."""

    order_id: str
    kind: PaymentKind
    amount: Decimal
    currency: str
    authorization: str = ""  # the reference of the authorization it moves money under (not for one)


# What a request would record, read in the given transaction (locking the order's authorization when
# told to); raises PaymentRejected when it would break an invariant; None: nothing to ask for.
_Plan = Callable[[Session, bool], _Movement | None]
_Ask = Callable[[_Movement], GatewayReceipt]


class PaymentLedger:
    """The order's payments: each method asks the gateway and records its answer."""

    def __init__(self, sessions: SessionFactory, gateway: PaymentGateway) -> None:
        self._sessions = sessions
        self._gateway = gateway

    def authorize(self, key: str, order_id: str, amount: Decimal, currency: str, token: str) -> Payment:
        def plan(session: Session, lock: bool) -> _Movement:
            return _Movement(order_id, PaymentKind.authorization, amount, currency)

        def ask(movement: _Movement) -> GatewayReceipt:
            return self._gateway.authorize(key, order_id, amount, currency, token)

        row = self._through_gateway(key, plan, ask)
        assert row is not None
        return row

    def capture(self, key: str, order_id: str, amount: Decimal) -> Payment:
        return self._move(key, order_id, PaymentKind.capture, amount, self._gateway.capture)

    def refund(self, key: str, order_id: str, amount: Decimal) -> Payment:
        return self._move(key, order_id, PaymentKind.refund, amount, self._gateway.refund)

    def goodwill_refund(self, key: str, order_id: str, amount: Decimal) -> Payment:
        """Support's goodwill refund: the gateway's refund, booked as its own kind, within the same
        invariant (every refund together <= captured)."""
        return self._move(key, order_id, PaymentKind.goodwill_refund, amount, self._gateway.refund)

    def increment(self, key: str, order_id: str, amount: Decimal, token: str) -> Payment:
        """Hold `amount` more under the order's authorization (an edit raised the total). The gateway
        may decline it (PaymentDeclined, recorded like an authorization's decline): the card's issuer
        does not extend the hold. Nothing is held twice for one key."""

        def plan(session: Session, lock: bool) -> _Movement:
            authorization = _authorization(session, order_id, lock)
            if authorization is None:
                raise PaymentRejected(f"increment refused: order {order_id} has no approved authorization")
            if amount <= 0:
                raise PaymentRejected(f"increment refused: {amount} is not more than 0")
            return _Movement(
                order_id, PaymentKind.increment, amount, authorization.currency, authorization.reference
            )

        def ask(movement: _Movement) -> GatewayReceipt:
            return self._gateway.increment(key, movement.authorization, amount, movement.currency, token)

        row = self._through_gateway(key, plan, ask)
        assert row is not None
        return row

    def void(self, key: str, order_id: str, token: str = "", amount: Decimal | None = None) -> Payment | None:
        """Void `amount` of what is authorized and not captured (None: all of it); None when there is
        no approved authorization. A part larger than what is still held is refused."""

        def plan(session: Session, lock: bool) -> _Movement | None:
            authorization = _authorization(session, order_id, lock)
            if authorization is None:
                return None
            held = ledger_totals(session, order_id).open_authorization
            if amount is not None and not 0 < amount <= held:
                raise PaymentRejected(
                    f"void refused: {amount} is not a part of the {held} the authorization still holds"
                )
            return _Movement(
                order_id,
                PaymentKind.void,
                held if amount is None else amount,
                authorization.currency,
                authorization.reference,
            )

        def ask(movement: _Movement) -> GatewayReceipt:
            return self._gateway.void(key, movement.authorization, movement.amount, movement.currency, token)

        return self._through_gateway(key, plan, ask)

    def _move(
        self,
        key: str,
        order_id: str,
        kind: PaymentKind,
        amount: Decimal,
        send: Callable[[str, str, Decimal, str], GatewayReceipt],
    ) -> Payment:
        """A capture or a refund: money moved under the order's authorization, within its invariants."""

        def plan(session: Session, lock: bool) -> _Movement:
            authorization = _authorization(session, order_id, lock)
            if authorization is None:
                raise PaymentRejected(f"{kind} refused: order {order_id} has no approved authorization")
            _check(kind, ledger_totals(session, order_id), amount)
            return _Movement(order_id, kind, amount, authorization.currency, authorization.reference)

        def ask(movement: _Movement) -> GatewayReceipt:
            return send(key, movement.authorization, movement.amount, movement.currency)

        row = self._through_gateway(key, plan, ask)
        assert row is not None
        return row

    def _through_gateway(self, key: str, plan: _Plan, ask: _Ask) -> Payment | None:
        """The one way a request reaches the gateway: replay a key already recorded; else check the
        request, ask the gateway (outside any transaction), and record its answer, a decline included."""
        with self._sessions.begin() as session:
            if (done := _by_key(session, key)) is not None:
                return _replay(done)
            movement = plan(session, False)
        if movement is None:
            return None
        try:
            receipt = ask(movement)
        except PaymentDeclined as declined:
            self._record(key, plan, declined.reference, declined.code)
            raise
        return self._record(key, plan, receipt.reference)

    def _record(
        self, key: str, plan: _Plan, reference: str, decline_code: str | None = None
    ) -> Payment | None:
        with self._sessions.begin() as session:
            # a concurrent request with the same key may have recorded first: its outcome stands
            if (done := _by_key(session, key)) is not None:
                return _replay(done)
            # again, with the authorization locked: what another request for the order recorded
            # meanwhile counts (a void's remainder, a capture's room)
            movement = plan(session, True)
            if movement is None:  # the authorization is gone (rows are never deleted: it cannot be)
                return None
            row = Payment(
                order_id=movement.order_id,
                kind=movement.kind,
                status="declined" if decline_code else "approved",
                amount=movement.amount,
                currency=movement.currency,
                idempotency_key=key,
                reference=reference,
                decline_code=decline_code,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent request with the same key won: a retry replays it
                raise GatewayUnavailable(f"concurrent request for {key}") from exc
            return row


def _check(kind: PaymentKind, totals: LedgerTotals, amount: Decimal) -> None:
    if kind == PaymentKind.capture and amount > totals.open_authorization:
        raise PaymentRejected(
            f"capture refused: {amount} is more than the {totals.open_authorization} the authorization "
            f"still holds (authorized {totals.authorized}, captured {totals.captured}, voided {totals.voided})"
        )
    elif kind in PaymentKind.refunds() and totals.refunded + amount > totals.captured:
        raise PaymentRejected(
            f"refund refused: {totals.refunded} + {amount} would exceed captured {totals.captured}"
        )


def _by_key(session: Session, key: str) -> Payment | None:
    return session.scalar(select(Payment).where(Payment.idempotency_key == key))


def _authorization(session: Session, order_id: str, lock: bool) -> Payment | None:
    query = select(Payment).where(
        Payment.order_id == order_id, Payment.kind == PaymentKind.authorization, Payment.status == "approved"
    )
    return session.scalar(query.with_for_update() if lock else query)


def _replay(row: Payment) -> Payment:
    """The same key again: the original outcome."""
    if row.status == "declined":
        raise PaymentDeclined(row.decline_code or "declined")
    return row
