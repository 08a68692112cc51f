"""The payment gateway: what a payment provider (Stripe, Adyen, the sandbox's) answers, and how.

The order's payment steps and `reconcile` go through the payments ledger (domain/payment_ledger.py),
which asks a `PaymentGateway` and records its answers. A real provider is one class implementing the
Protocol; the sandbox's, which reacts to test tokens, is sandbox/gateway.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class PaymentDeclined(Exception):
    """The provider declined the payment (the card, its funds): final, the order is rejected."""

    def __init__(self, code: str, explanation: str = "", reference: str = "") -> None:
        super().__init__(f"payment declined: {code}" + (f" ({explanation})" if explanation else ""))
        self.code = code  # recorded in the ledger: a repeat of the request declines with it again
        self.reference = reference  # the provider's id of the declined attempt, where it gives one


class PaymentRejected(Exception):
    """The request would break a ledger invariant (e.g. capture more than authorized): a bug somewhere,
    refused by the ledger before it reaches the provider, or by the provider itself."""


class GatewayUnavailable(Exception):
    """A transient failure: the same request with the same key may be retried."""


@dataclass(frozen=True)
class GatewayReceipt:
    """The provider's answer to a request that went through."""

    reference: str  # the provider's id of this money movement (a charge, a PSP reference)


class PaymentGateway(Protocol):
    """A payment provider. Every request carries an idempotency key, and the same key again must get
    the original answer without moving money twice: the ledger asks again when a worker died between
    the provider's answer and its record. `authorization` is the reference the authorization got.

    Raises PaymentDeclined (authorize), PaymentRejected and GatewayUnavailable."""

    def authorize(
        self, key: str, order_id: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        """Hold `amount` on the card `token` stands for; `order_id` is our reference for the payment."""
        ...

    def increment(
        self, key: str, authorization: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        """Hold `amount` more under the authorization (an incremental authorization); the issuer may
        decline it (PaymentDeclined), and the authorization then holds what it held."""
        ...

    def capture(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        """Take `amount` of what the authorization holds."""
        ...

    def refund(self, key: str, authorization: str, amount: Decimal, currency: str) -> GatewayReceipt:
        """Give back `amount` of what was captured under the authorization."""
        ...

    def void(
        self, key: str, authorization: str, amount: Decimal, currency: str, token: str
    ) -> GatewayReceipt:
        """Release `amount` of what the authorization still holds (a part, or all that is left). `token` is the
        card the authorization was made with: a provider finds the payment by `authorization` and may
        ignore it; the sandbox's reacts to test tokens."""
        ...
