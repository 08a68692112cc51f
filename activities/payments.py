"""Payment steps: the payments ledger asks the gateway and records its answer (domain/payment_ledger.py);
idempotency keys come from the workflow id and step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import refuse
from adapters.payments import GatewayUnavailable, PaymentDeclined, PaymentRejected
from domain.payment_ledger import PaymentLedger
from models.steps import ErrorType, PaymentRequest, PaymentResult
from models.tables import Payment


class PaymentActivities:
    def __init__(self, ledger: PaymentLedger) -> None:
        self._ledger = ledger

    @activity.defn
    def authorize_payment(self, request: PaymentRequest) -> PaymentResult:
        with _gateway_errors():
            row = self._ledger.authorize(
                request.idempotency_key, request.order_id, request.amount, request.currency, request.token
            )
        # the attempt that got the answer: the order's events tell how often the gateway was tried
        attempt = activity.info().attempt if activity.in_activity() else 1
        return _result(row).model_copy(update={"attempt": attempt})

    @activity.defn
    def increment_authorization(self, request: PaymentRequest) -> PaymentResult:
        """Hold `amount` more under the order's authorization (an edit raised the total); a decline is
        final: the edit is refused."""
        with _gateway_errors():
            return _result(
                self._ledger.increment(
                    request.idempotency_key, request.order_id, request.amount, request.token
                )
            )

    @activity.defn
    def capture_payment(self, request: PaymentRequest) -> PaymentResult:
        with _gateway_errors():
            return _result(self._ledger.capture(request.idempotency_key, request.order_id, request.amount))

    @activity.defn
    def refund_payment(self, request: PaymentRequest) -> PaymentResult:
        with _gateway_errors():
            return _result(self._ledger.refund(request.idempotency_key, request.order_id, request.amount))

    @activity.defn
    def refund_goodwill(self, request: PaymentRequest) -> PaymentResult:
        """Support's goodwill refund: the gateway's refund, its own kind in the ledger."""
        with _gateway_errors():
            return _result(
                self._ledger.goodwill_refund(request.idempotency_key, request.order_id, request.amount)
            )

    @activity.defn
    def void_payment(self, request: PaymentRequest) -> PaymentResult | None:
        """Release all the authorization still holds (`amount` is what the order expects it to be)."""
        with _gateway_errors():
            row = self._ledger.void(request.idempotency_key, request.order_id, request.token)
        return None if row is None else _result(row)

    @activity.defn
    def void_part(self, request: PaymentRequest) -> PaymentResult | None:
        """Release `amount` of what the authorization holds (an edit lowered the total, lines were
        cancelled); the rest stays held for the shipments still to capture."""
        with _gateway_errors():
            row = self._ledger.void(request.idempotency_key, request.order_id, request.token, request.amount)
        return None if row is None else _result(row)


def _result(row: Payment) -> PaymentResult:
    return PaymentResult(reference=row.reference, amount=Decimal(row.amount), kind=row.kind)


@contextmanager
def _gateway_errors() -> Iterator[None]:
    """Map the gateway's and the ledger's outcomes to Temporal: declines and invariant breaches are final,
    outages are retried."""
    try:
        yield
    except PaymentDeclined as exc:
        raise refuse(ErrorType.payment_declined, str(exc)) from exc
    except PaymentRejected as exc:
        # a request breaking a ledger invariant is a bug somewhere: logged with its traceback
        raise refuse(ErrorType.payment_rejected, str(exc), benign=False) from exc
    except GatewayUnavailable as exc:
        raise ApplicationError(str(exc), type="GatewayUnavailable") from exc
