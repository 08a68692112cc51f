"""The order as order sources send it, the policy it runs under, and its live view."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from models.choices import Channel, GoodwillReason, OrderStatus, ReturnCondition, ReturnReason
from models.countries import ISO_COUNTRIES
from models.money import Amount
from models.order_money import LineMoney, OrderMoney
from models.shipping import Resolution, ShortPickPolicy, TrackingEvent
from models.text import CONTROL_CHARACTERS

# ---- bounds that match storage (models/tables.py): what passes these always fits its column ----

MAX_QUANTITY = 100_000  # units per order line; far below the INTEGER columns' 2,147,483,647
MAX_MONEY = Decimal("9999999999.99")  # the largest amount a Numeric(12, 2) column holds
MAX_LINES = 200

# CONTROL_CHARACTERS (models/text.py) but newlines and tabs: what prose may not hold.
_CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _no_control_characters(pattern: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and (found := pattern.search(value)) is not None:
            raise ValueError(
                f"must not contain control characters{allowed} (found {found.group()!r} at position {found.start()})"
            )
        return value

    return AfterValidator(check)


# Refuse control characters: in one line of text, and in prose (reasons, notes, comments, instructions).
PlainText = _no_control_characters(CONTROL_CHARACTERS, "")
ProseText = _no_control_characters(_CONTROL_BUT_NEWLINES, " other than newlines and tabs")

# Money as a JSON number or a plain decimal string ("89.90"). Python's Decimal would also read "1_000",
# " 12 " and "1e3" from a string: a source that sends those has a bug, and guessing hides it.
_DECIMAL_TEXT = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")


def _plain_decimal(value: Any) -> Any:
    if isinstance(value, str) and not _DECIMAL_TEXT.match(value):
        raise ValueError(f"{value[:40]!r} is not a plain decimal number (write it like 89.90)")
    return value


Money = Annotated[
    Amount, BeforeValidator(_plain_decimal), Field(ge=0, le=MAX_MONEY, max_digits=12, decimal_places=2)
]

# Times reported from outside (carrier events): an ISO 8601 string (no offset: UTC) within these years.
# Year 1 or 9999 with an offset overflows on conversion to UTC, and no report is from before 2000.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _iso_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):  # a bare number is not a time (seconds? milliseconds?)
        raise ValueError("must be an ISO 8601 date and time, like 2026-12-06T10:15:00Z")
    return value


def _sane_time(value: datetime) -> datetime:
    problem = f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
    try:
        utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError(problem) from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(problem)
    return utc


Timestamp = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_sane_time)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY)]
Text = Annotated[str, Field(min_length=1, max_length=200), PlainText]  # names, address lines (String(200))
OptionalText = Annotated[str, Field(max_length=200), PlainText]  # may be empty
Reason = Annotated[str, Field(min_length=1, max_length=500), ProseText]  # why: cancellations, returns, stock
Instructions = Annotated[str, Field(max_length=500), ProseText]
Prose = Annotated[str, Field(min_length=1, max_length=2000), ProseText]  # support notes
Comment = Annotated[str, Field(max_length=2000), ProseText]  # the customer's feedback
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
# Ids that outside parties make up (their event and report ids, tracking numbers): any printable text.
ExternalId = Annotated[str, Field(min_length=1, max_length=100), PlainText]
TrackingNumber = Annotated[str, Field(min_length=1, max_length=40), PlainText]
# Who asked for a change (an API key's name, or cli:<user>): set by the door, written to the event log.
Actor = Annotated[str | None, Field(default=None, max_length=120), PlainText]


class PaymentStatus(StrEnum):
    pending = "pending"
    authorized = "authorized"
    captured = "captured"
    partially_refunded = "partially_refunded"
    refunded = "refunded"
    voided = "voided"
    declined = "declined"


class ShipmentStatus(StrEnum):
    allocated = "allocated"  # stock reserved; not yet sent to the warehouse (the cancellation window)
    backordered = "backordered"  # units a warehouse could not find, waiting for stock on order
    released = "released"  # the pick list is with the warehouse
    picking = "picking"  # (orders placed before warehouses reported: picked by the worker itself)
    picked = "picked"
    packed = "packed"
    shipped = "shipped"  # handed over to the carrier
    delivered = "delivered"
    exception = "exception"  # lost, or on its way back to us: support chooses reship or refund
    resolved = "resolved"  # an exception settled: reshipped (a new shipment) or refunded
    cancelled = "cancelled"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CustomerIn(_Strict):
    id: Identifier
    name: Text
    email: Annotated[EmailStr, Field(max_length=320)]  # String(320); the syntax allows no control chars
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()./-]{5,30}$")] | None = None  # String(40)


class Address(_Strict):
    name: Text
    line1: Text
    line2: OptionalText | None = None
    city: Text
    postal_code: Annotated[str, Field(min_length=2, max_length=12, pattern=r"^[A-Za-z0-9 -]+$")]
    country: Annotated[str, Field(min_length=2, max_length=2)]

    @field_validator("country")
    @classmethod
    def _iso_country(cls, value: str) -> str:
        if value not in ISO_COUNTRIES:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (like GB, DE, US)")
        return value


# ---- the order's money, named as Shopify's order document names it (docs/orders.md) ----

MAX_MONEY_LINES = 20  # tax lines, discount allocations or codes, shipping lines: per list
TaxRate = Annotated[
    Decimal, BeforeValidator(_plain_decimal), Field(ge=0, le=1, max_digits=7, decimal_places=6)
]


class TaxLineIn(_Strict):
    """One tax on a line or a shipping line: `price` is the tax's amount, `rate` for the record (the
    source computed the amount, with its own rounding: we do not compute it again)."""

    title: Text
    rate: TaxRate
    price: Money


class DiscountAllocationIn(_Strict):
    amount: Money  # the part of a discount this line carries


class DiscountCodeIn(_Strict):
    code: Text
    amount: Money


class ShippingLineIn(_Strict):
    title: Text
    price: Money
    tax_lines: Annotated[list[TaxLineIn], Field(max_length=MAX_MONEY_LINES)] = []


def _prices(items: list[TaxLineIn] | list[ShippingLineIn]) -> Decimal:
    return sum((x.price for x in items), Decimal(0))


def _amounts(items: list[DiscountAllocationIn] | list[DiscountCodeIn]) -> Decimal:
    return sum((x.amount for x in items), Decimal(0))


class LineIn(_Strict):
    sku: Identifier
    quantity: Quantity
    unit_price: Money | None = None
    tax_lines: Annotated[list[TaxLineIn], Field(max_length=MAX_MONEY_LINES)] = []
    discount_allocations: Annotated[list[DiscountAllocationIn], Field(max_length=MAX_MONEY_LINES)] = []

    @property
    def has_money(self) -> bool:
        return bool(self.tax_lines or self.discount_allocations)


class PaymentIn(_Strict):
    method: Literal["card"] = "card"
    token: Annotated[str, Field(min_length=1, max_length=100), PlainText]


class OrderInput(_Strict):
    """An order as placed by any source (web shop, phone, store, marketplace, CSV)."""

    order_id: Identifier | None = None
    channel: Channel
    customer: CustomerIn
    shipping_address: Address
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    payment: PaymentIn
    delivery_instructions: Instructions | None = None
    shipping_lines: Annotated[list[ShippingLineIn], Field(max_length=MAX_MONEY_LINES)] = []
    discount_codes: Annotated[list[DiscountCodeIn], Field(max_length=MAX_MONEY_LINES)] | None = None
    taxes_included: bool = False
    total_price: Money | None = None  # when given: must be the total by our rule, to the cent

    @property
    def has_money(self) -> bool:
        """Whether the document carries money beyond unit prices (then every line must price itself)."""
        return bool(
            self.shipping_lines
            or self.discount_codes is not None
            or self.total_price is not None
            or self.taxes_included
            or any(line.has_money for line in self.lines)
        )

    def money(self, unit_prices: list[Decimal]) -> OrderMoney:
        """The order's money at these unit prices (one per line: the given ones, or the catalog's)."""
        return OrderMoney(
            lines=tuple(
                LineMoney(
                    sku=line.sku,
                    quantity=line.quantity,
                    gross=price * line.quantity,
                    discount=_amounts(line.discount_allocations),
                    tax=_prices(line.tax_lines),
                )
                for line, price in zip(self.lines, unit_prices, strict=True)
            ),
            shipping=_prices(self.shipping_lines),
            shipping_tax=sum((_prices(s.tax_lines) for s in self.shipping_lines), Decimal(0)),
            taxes_included=self.taxes_included,
        )

    @model_validator(mode="after")
    def _money_reconciles(self) -> OrderInput:
        """The money fields must add up to the cent here, at the door: an order whose figures disagree
        is a source's bug, and charging either figure would be a guess."""
        if not self.has_money:
            return self
        unpriced = [str(n) for n, line in enumerate(self.lines, start=1) if line.unit_price is None]
        if unpriced:
            raise ValueError(
                f"line(s) {', '.join(unpriced)} have no unit_price: an order with taxes, discounts, "
                "shipping or a total_price must price every line"
            )
        money = self.money([line.unit_price for line in self.lines if line.unit_price is not None])
        for n, m in enumerate(money.lines, start=1):
            if m.discount > m.gross:
                raise ValueError(
                    f"line {n}: discount allocations {m.discount} exceed the line's price {m.gross}"
                )
        if self.discount_codes is not None:
            codes = _amounts(self.discount_codes)
            if codes != money.discounts:
                raise ValueError(
                    f"discount_codes add up to {codes} but the lines' discount_allocations to "
                    f"{money.discounts}: a difference of {codes - money.discounts}"
                )
        if money.total > MAX_MONEY:
            raise ValueError(f"the order total {money.total} is above the maximum {MAX_MONEY}")
        if self.total_price is not None and self.total_price != money.total:
            raise ValueError(
                f"total_price {self.total_price} differs from the total {money.total} (subtotal "
                f"{money.subtotal} - discounts {money.discounts} + shipping {money.shipping}"
                + ("" if self.taxes_included else f" + tax {money.tax}")
                + f"): a difference of {self.total_price - money.total}"
            )
        return self

    @field_validator("lines")
    @classmethod
    def _total_fits(cls, lines: list[LineIn]) -> list[LineIn]:
        """The total of the prices given must fit the money columns (the validate step checks the
        catalog prices the same way)."""
        total = sum(
            (line.quantity * line.unit_price for line in lines if line.unit_price is not None), Decimal(0)
        )
        if total > MAX_MONEY:
            raise ValueError(f"the order total {total} is above the maximum {MAX_MONEY}")
        return lines


class OrderPolicy(_Strict):
    """The durations and rules in force when the order was placed; the order keeps them for life."""

    delivery_sla: timedelta
    return_window: timedelta
    hold_timeout: timedelta = timedelta(days=3)
    release_delay: timedelta = timedelta(
        minutes=10
    )  # confirmed -> sent to the warehouses: the cancellation window
    exception_timeout: timedelta = timedelta(
        days=3
    )  # a lost parcel with no support choice by then is refunded
    short_pick: ShortPickPolicy = ShortPickPolicy.backorder
    return_receipt_timeout: timedelta = timedelta(days=14)
    backorder_timeout: timedelta = timedelta(days=7)
    review_above: Decimal | None = None
    compensation_attempts: int = 20  # a compensation that still fails then is an incident for support


class PlaceOrder(_Strict):
    """Workflow input: the order (with its id fixed) and its policy."""

    order: OrderInput
    policy: OrderPolicy
    placed_at: datetime
    placed_by: Actor

    @property
    def order_id(self) -> str:
        assert self.order.order_id is not None
        return self.order.order_id


# ---- the live view (workflow query, `status`) ----


class PricedLine(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price: Amount
    line_total: Amount  # unit price x quantity: before its discount and tax
    discount: Amount = Decimal("0")  # its discount allocations
    tax: Amount = Decimal("0")  # its tax lines

    def money(self) -> LineMoney:
        return LineMoney(
            sku=self.sku, quantity=self.quantity, gross=self.line_total, discount=self.discount, tax=self.tax
        )


class ShipmentLine(BaseModel):
    sku: str
    quantity: int


class ShipmentTrouble(StrEnum):
    """What is wrong with a parcel on its way (its values are ReasonCode's, models/events.py)."""

    lost_parcel = "lost_parcel"
    returned_to_sender = "returned_to_sender"  # reported so, or coming back after failed attempts
    held_up = "held_up"  # a carrier exception (customs, damage): it may move on


class ShipmentView(BaseModel):
    id: str
    warehouse: str
    status: ShipmentStatus = ShipmentStatus.allocated
    carrier: str | None = None
    tracking_number: str | None = None
    lines: list[ShipmentLine] = []
    amount: Amount = Decimal("0")
    weight_g: int | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    exchange_for: str | None = None  # the RMA this replacement shipment serves
    # warehouses and carriers as parties (see models/fulfilment.py)
    replaces: str | None = None  # the shipment whose missing or lost units this one carries
    released_at: datetime | None = None
    picked_lines: list[ShipmentLine] = []  # what the warehouse found
    parcels_g: list[int] = []
    label_ref: str | None = None
    tracking: list[TrackingEvent] = []
    delivery_attempts: int = 0
    trouble: str | None = None  # why the parcel is in trouble now (an exception event, lost, returned)
    trouble_kind: ShipmentTrouble | None = None  # the same, typed: what the workflow branches on
    resolution: Resolution | None = None


class EventView(BaseModel):
    at: datetime
    type: str
    detail: str = ""
    reason_code: str | None = None  # why, as a ReasonCode (models/events.py), where the event has one


class FeedbackView(BaseModel):
    score: int
    comment: str | None = None


# ---- signals from carriers and customers ----


class DeliveryConfirmation(_Strict):
    shipment_id: Identifier | None = None  # None: every shipment that is on its way
    by: Actor


class FeedbackIn(_Strict):
    """The customer's feedback, as a source or support passes it on."""

    score: Annotated[int, Field(strict=True, ge=1, le=5)]
    comment: Comment | None = None


class Feedback(FeedbackIn):
    by: Actor


# ---- support: cancellations, holds, notes; returns and exchanges ----


# What a person or system asks for (`...In`, the bodies of the API and the CLI's arguments), and the
# same with who asked (the workflow's message, `by` set by the door from the caller's identity).


class CancelLine(_Strict):
    sku: Identifier
    quantity: Quantity


def repeated_skus(skus: Iterable[str]) -> str | None:
    """What is wrong with lines that name a SKU more than once (a cancel, an edit, a return), or None."""
    named = Counter(skus)
    twice = sorted(sku for sku, times in named.items() if times > 1)
    return f"SKU {', '.join(twice)} named more than once" if twice else None


class CancelIn(_Strict):
    """A cancellation: of the whole order, or with `lines` of so many units of those SKUs (issue 26)."""

    reason: Reason
    lines: Annotated[list[CancelLine], Field(min_length=1, max_length=200)] | None = None

    @field_validator("lines")
    @classmethod
    def _one_line_per_sku(cls, lines: list[CancelLine] | None) -> list[CancelLine] | None:
        if problem := repeated_skus(line.sku for line in lines or []):
            raise ValueError(problem)
        return lines


class CancelRequest(CancelIn):
    by: Actor


class ReleaseRequest(_Strict):
    by: Actor


class EditLineIn(_Strict):
    sku: Identifier
    quantity: Annotated[int, Field(ge=0, le=10_000)]  # 0 removes the line


class EditIn(_Strict):
    """An order edit (POST /orders/{id}/edits): the new shipping address and/or the order's lines as they
    should be afterwards (a SKU not named keeps its units; 0 removes it; a new SKU is added)."""

    shipping_address: Address | None = None
    lines: Annotated[list[EditLineIn], Field(min_length=1, max_length=MAX_LINES)] | None = None

    @model_validator(mode="after")
    def _something(self) -> EditIn:
        if self.shipping_address is None and self.lines is None:
            raise ValueError("an edit needs a shipping_address and/or lines")
        if problem := repeated_skus(x.sku for x in self.lines or []):
            raise ValueError(problem)
        return self


class EditRequest(_Strict):
    """The order workflow's `edit` update: the new shipping address, already checked by the door against
    the countries served (OMS_SHIP_TO_COUNTRIES), and/or the lines as they should be (a SKU not named
    keeps its units; 0 removes it)."""

    shipping_address: Address | None = None
    lines: list[EditLineIn] | None = None
    by: Actor


class ResendIn(_Strict):
    """Send a message the mail server gave up on again: to `to` (a corrected address) if given."""

    to: Annotated[EmailStr, Field(max_length=320)] | None = None


class NoteIn(_Strict):
    text: Prose


class SupportNote(NoteIn):
    by: Actor


class ReturnIn(_Strict):
    sku: Identifier
    quantity: Quantity
    reason: Reason
    exchange_sku: Identifier | None = None


class ReturnRequest(ReturnIn):
    by: Actor


class CustomerReturnLine(_Strict):
    sku: Identifier
    quantity: Quantity


class CustomerReturnIn(_Strict):
    """A return the customer starts on the tracking page: delivered lines and quantities, and why."""

    lines: Annotated[list[CustomerReturnLine], Field(min_length=1, max_length=200)]
    reason: ReturnReason

    @field_validator("lines")
    @classmethod
    def _one_line_per_sku(cls, lines: list[CustomerReturnLine]) -> list[CustomerReturnLine]:
        if problem := repeated_skus(line.sku for line in lines or []):
            raise ValueError(problem)
        return lines

    def wanted(self) -> dict[str, int]:
        return {line.sku: line.quantity for line in self.lines}


class CustomerReturnRequest(CustomerReturnIn):
    # approved at once when the refund value is at most this (OMS_RETURN_AUTO_APPROVE_LIMIT when asked);
    # 0: support decides
    auto_approve_limit: Annotated[Decimal, Field(ge=0)] = Decimal("0")


class ReturnDecisionIn(_Strict):
    note: Reason | None = None  # why (a decline's reason reaches the customer)


class ReturnDecision(ReturnDecisionIn):
    rma: Identifier
    approve: bool
    by: Actor


class GoodwillIn(_Strict):
    """A goodwill refund: an amount of what was captured and not yet refunded, with a reason code."""

    amount: Annotated[Money, Field(gt=0)]
    reason: GoodwillReason
    note: Instructions | None = None  # free text for the order's story (not sent to the customer)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None  # when given: the order's


class GoodwillRequest(GoodwillIn):
    by: Actor
    key: Identifier  # the request's idempotency key: the same key again refunds once


class GoodwillRefundView(BaseModel):
    key: str
    amount: Amount
    currency: str
    reason: GoodwillReason
    note: str | None = None
    reference: str  # the gateway's
    by: str | None = None
    at: datetime


class ReceiptIn(_Strict):
    condition: ReturnCondition = ReturnCondition.good


class ReturnReceipt(ReceiptIn):
    rma: str
    by: Actor


class ReturnStatus(StrEnum):
    pending_approval = "pending_approval"  # the customer asked; support approves or declines
    declined = "declined"
    requested = "requested"  # authorized (RMA issued): the parcel is awaited
    refunded = "refunded"
    exchanged = "exchanged"
    expired = "expired"


class ReturnLineView(BaseModel):
    sku: str
    quantity: int
    unit_price: Amount
    warehouse: str


class ReturnView(BaseModel):
    rma: str
    status: ReturnStatus = ReturnStatus.requested
    reason: str
    lines: list[ReturnLineView]
    exchange_sku: str | None = None
    exchange_shipment_id: str | None = None
    condition: ReturnCondition | None = None
    refund_amount: Amount = Decimal("0")
    requested_at: datetime
    received_at: datetime | None = None
    by_customer: bool = False  # started by the customer (the tracking page), not by support
    decided_by: str | None = None  # who approved or declined a customer's request
    decision_note: str | None = None


class DiscountCodeView(BaseModel):
    code: str
    amount: Amount


class PaymentTotals(BaseModel):
    authorized: Amount = Decimal("0")
    captured: Amount = Decimal("0")
    refunded: Amount = Decimal("0")  # every refund: returns, parcels, goodwill
    goodwill_refunded: Amount = Decimal("0")  # of which goodwill refunds
    voided: Amount = Decimal("0")  # released from the authorization: never to be captured


class OrderView(BaseModel):
    order_id: str
    status: OrderStatus
    payment_status: PaymentStatus
    channel: Channel
    customer_id: str
    currency: str
    total: Amount | None = None  # what the customer pays: subtotal - discounts + shipping (+ tax)
    subtotal: Amount | None = None  # the lines at their unit prices
    discounts: Amount | None = None
    discount_codes: list[DiscountCodeView] = []  # as placed: the codes behind `discounts`
    shipping: Amount | None = None
    tax: Amount | None = None  # lines' and shipping's; in the prices when taxes_included
    taxes_included: bool = False
    lines: list[PricedLine] = []
    shipments: list[ShipmentView] = []
    events: list[EventView] = []
    placed_at: datetime
    expected_delivery: datetime | None = None
    overdue: bool = False
    feedback: FeedbackView | None = None
    returns: list[ReturnView] = []
    goodwill_refunds: list[GoodwillRefundView] = []
    payment: PaymentTotals = PaymentTotals()
    hold_reason: str | None = None
    return_window_ends: datetime | None = None
    releases_at: datetime | None = None  # when the shipments go to the warehouses (cancellable until then)
    shipping_city: str | None = None  # after an order edit: the city the order now goes to (else as placed)

    def units(self) -> dict[str, int]:
        """The order's units now, per SKU: those of its shipments neither cancelled nor an exchange's
        replacement (the lines as placed less what was cancelled, plus what edits added)."""
        units: dict[str, int] = {}
        for shipment in self.shipments:
            if shipment.status != ShipmentStatus.cancelled and shipment.exchange_for is None:
                for x in shipment.lines:
                    units[x.sku] = units.get(x.sku, 0) + x.quantity
        return units

    def money(self) -> OrderMoney:
        """The priced order's money, as the shares over shipments and returns need it
        (models/order_money.py)."""
        line_tax = sum((line.tax for line in self.lines), Decimal(0))
        return OrderMoney(
            lines=tuple(x.money() for x in self.lines),
            shipping=self.shipping or Decimal(0),
            shipping_tax=(self.tax or Decimal(0)) - line_tax,
            taxes_included=self.taxes_included,
        )


# ---- lists (Temporal visibility) ----


class OrderSummary(BaseModel):
    """One order as the list shows it: what the search attributes say, no personal data."""

    order_id: str
    status: str
    customer_id: str
    channel: str
    total: Amount | None = None
    overdue: bool = False
    needs_attention: bool = False
    started_at: datetime | None = None
    running: bool


class OrderPage(BaseModel):
    orders: list[OrderSummary]
    next_page_token: str | None = None  # pass back for the next page; None on the last one
