"""Inputs and results of activities: what crosses between the workflow and the outside world."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel

from models.events import PaymentKind, ReasonCode
from models.orders import (
    Address,
    OrderInput,
    PlaceOrder,
    PricedLine,
    ReturnCondition,
    ReturnLineView,
    ReturnStatus,
    ShipmentLine,
)


class ErrorType:
    """`type` of non-retryable ApplicationErrors: business refusals, never retried."""

    invalid_order = "InvalidOrder"
    payment_declined = "PaymentDeclined"
    payment_rejected = "PaymentRejected"  # a request that would break a ledger invariant
    out_of_stock = "OutOfStock"
    carrier_refused = "CarrierRefused"
    # the database refused the data for good (a value out of range, a NUL, a violated constraint): a hole
    # in the doors' validation, refused rather than retried for ever
    invalid_data = "InvalidData"


class EventRecord(BaseModel):
    order_id: str
    seq: int
    at: datetime
    type: str
    detail: str
    status: str
    payment_status: str
    total: Decimal | None = None
    # why (a refusal, a cancellation, a parcel's trouble): a ReasonCode (models/events.py)
    reason_code: str | None = None


class PricedOrder(BaseModel):
    lines: list[PricedLine]
    total: Decimal  # what the customer pays, what is authorized (docs/orders.md, "The order's money")
    currency: str
    subtotal: Decimal | None = None  # None: priced before issue 26, when the total was the subtotal
    discounts: Decimal = Decimal("0")
    shipping: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    taxes_included: bool = False

    @property
    def shipping_tax(self) -> Decimal:
        return self.tax - sum((line.tax for line in self.lines), Decimal(0))

    @classmethod
    def of(cls, order: OrderInput, lines: list[PricedLine]) -> PricedOrder:
        """The order at these (catalog) prices, one priced line per order line, with its money."""
        money = order.money([line.unit_price for line in lines])
        lines = [
            line.model_copy(update={"discount": m.discount, "tax": m.tax})
            for line, m in zip(lines, money.lines, strict=True)
        ]
        return cls(
            lines=lines,
            total=money.total,
            currency=order.currency,
            subtotal=money.subtotal,
            discounts=money.discounts,
            shipping=money.shipping,
            tax=money.tax,
            taxes_included=money.taxes_included,
        )


class PaymentRequest(BaseModel):
    order_id: str
    idempotency_key: str
    amount: Decimal
    currency: str
    token: str = ""


class PaymentResult(BaseModel):
    reference: str
    amount: Decimal
    kind: PaymentKind
    attempt: int = 1  # the activity attempt that got this answer (older histories: 1)


class StockKey(BaseModel):
    sku: str
    warehouse: str


class AllocatedShipment(BaseModel):
    id: str
    warehouse: str
    lines: list[ShipmentLine]
    # its sku/warehouse pairs at or below their reorder point once reserved (recorded results from
    # before this field read as none: those orders check every pair, see OrderWorkflow._accept)
    low_stock: list[StockKey] = []


class ReserveRequest(BaseModel):
    order_id: str
    lines: list[ShipmentLine]
    shipment_prefix: str
    # the first shipment's number: a later reservation for the same order (units a warehouse could not
    # find, a lost parcel reshipped) continues the order's numbering (-S3, -S4...)
    numbers_from: int = 1
    # warehouses to take from only when no other has the units: a short pick's own, whose shelf was
    # just found wanting (a pick list back to it would likely come back short again)
    take_last: list[str] = []


class ShipmentRef(BaseModel):
    order_id: str
    shipment_id: str
    # the carrier booking's step (its idempotency key's), when it is not the shipment's first one
    # (`ship:<shipment id>`): a label booked again for a new address (RelabelRequest)
    booking: str | None = None


class KeepUnits(BaseModel):
    """A shipment's units cut down to `keep` (a partial cancellation): the reserved units beyond it are
    released, the picked ones put back on the shelf. A SKU of the shipment not in `keep` keeps none.
    Given as what remains, not what goes, so a repeat of the step moves nothing."""

    order_id: str
    shipment_id: str
    keep: list[ShipmentLine]
    why: str = "lines cancelled"  # the stock movements' reason: a partial cancellation, or "edited"


class PackResult(BaseModel):
    weight_g: int
    label: str


class ShipRequest(BaseModel):
    order_id: str
    shipment_id: str
    warehouse: str
    weight_g: int
    address: Address
    # with the label, ask the carrier to report on the parcel (an order's parcels; an exchange is
    # booked and shipped in one step, confirmed by `deliver`)
    track: bool = False


class RelabelRequest(BaseModel):
    """A labelled parcel gets a new label to a new address (an order edit after release): the carrier is
    booked under the step `booking` (the new address's postal code), the booking under `replaces` is
    cancelled, and the shipments row gets the new carrier, tracking number and label. Idempotent: both
    bookings are keyed by their step."""

    order_id: str
    shipment_id: str
    warehouse: str
    weight_g: int
    parcels: int
    address: Address
    booking: str
    replaces: str
    track: bool = True


class ShipResult(BaseModel):
    carrier: str
    tracking_number: str
    shipped_at: datetime


class DeliveryRecord(BaseModel):
    order_id: str
    shipment_id: str
    delivered_at: datetime


class NotificationKind(StrEnum):
    """A message the order sends: to the customer, or (`to_support`) to support. Each has its template
    in activities/notifications.py; the outbox row's `kind`."""

    order_confirmed = "order_confirmed"
    order_rejected = "order_rejected"
    order_shipped = "order_shipped"
    order_delivered = "order_delivered"
    order_on_hold = "order_on_hold"
    order_backordered = "order_backordered"
    order_cancelled = "order_cancelled"
    return_requested = "return_requested"
    return_declined = "return_declined"
    return_authorized = "return_authorized"
    refund_issued = "refund_issued"
    goodwill_refund_issued = "goodwill_refund_issued"
    return_expired = "return_expired"
    exchange_shipped = "exchange_shipped"
    lines_cancelled = "lines_cancelled"  # units a warehouse could not find
    lines_cancelled_by_request = "lines_cancelled_by_request"  # a partial cancellation (issue 26)
    parcel_lost = "parcel_lost"
    parcel_refunded = "parcel_refunded"
    parcel_reshipped = "parcel_reshipped"
    compensation_failed = "compensation_failed"
    delivery_overdue = "delivery_overdue"
    order_edited = "order_edited"


class AddressEdit(BaseModel):
    """The `record_address_edit` step: the order's new shipping address (a dict of models.orders.Address)."""

    order_id: str
    address: dict[str, str | None]


class LineEditRecord(BaseModel):
    """The `record_line_edit` step: the order's lines and money after a line edit, for the orders row
    and `order_lines` (what reports, the journal and the customer's mail read)."""

    order_id: str
    lines: list[PricedLine]
    subtotal: Decimal
    discounts: Decimal
    tax: Decimal
    total: Decimal


class NotificationRequest(BaseModel):
    order_id: str
    kind: NotificationKind
    idempotency_key: str
    context: dict[str, str] = {}
    to_support: bool = False


class EventBatch(BaseModel):
    """What one workflow task of an order recorded, written in one transaction: its events (the last
    one's status mirrored on the orders row) and the messages they cause (the notification outbox)."""

    events: list[EventRecord] = []
    notifications: list[NotificationRequest] = []


class FeedbackRecord(BaseModel):
    order_id: str
    score: int
    comment: str | None = None


class ScreenRequest(BaseModel):
    order_id: str
    email: str
    total: Decimal
    review_above: Decimal | None

    @classmethod
    def of(cls, request: PlaceOrder, total: Decimal) -> ScreenRequest:
        """What the review rule looks at in a placed order priced at `total`."""
        return cls(
            order_id=request.order_id,
            email=str(request.order.customer.email),
            total=total,
            review_above=request.policy.review_above,
        )


class Admission(BaseModel):
    """A lean order's first step: recorded, priced, and why it must be held for review (or None)."""

    priced: PricedOrder
    hold_reason: str | None
    hold_code: ReasonCode | None = None  # the hold's reason as a code


class PriceRequest(BaseModel):
    sku: str
    currency: str


class ReturnRecord(BaseModel):
    order_id: str
    rma: str
    reason: str
    exchange_sku: str | None
    lines: list[ReturnLineView]
    requested_at: datetime
    status: ReturnStatus = ReturnStatus.requested  # pending_approval: the customer's, not yet approved


class ReceiptRecord(BaseModel):
    order_id: str
    rma: str
    condition: ReturnCondition
    received_at: datetime


class ReturnOutcome(BaseModel):
    order_id: str
    rma: str
    status: ReturnStatus
    refund_amount: Decimal


class ReplenishRequest(BaseModel):
    """Workflow input of `replenish-<sku>-<warehouse>`."""

    sku: str
    warehouse: str
    quantity: int
    lead_time: timedelta


class RaisePurchaseOrder(BaseModel):
    po_id: str
    sku: str
    warehouse: str
    quantity: int
    expected_at: datetime


class ReceivePurchaseOrder(BaseModel):
    po_id: str
    quantity: int


class PurchaseOrderView(BaseModel):
    id: str
    sku: str
    warehouse: str
    quantity: int
    status: str
    created_at: datetime
    expected_at: datetime
    received_at: datetime | None = None
    received_quantity: int | None = None


# ---- warehouses and carriers as parties (models/fulfilment.py) ----


class PickRecord(BaseModel):
    """What the warehouse found for a shipment: `found` per SKU (a SKU left out was found in full)."""

    order_id: str
    shipment_id: str
    ordered: list[ShipmentLine]
    found: dict[str, int]


class PickOutcome(BaseModel):
    picked: list[ShipmentLine]  # units now off the shelf, on their way to the packing bench
    missing: list[ShipmentLine]  # units the shelf did not have: its count was corrected (`adjust`)


class PackRecord(BaseModel):
    order_id: str
    shipment_id: str
    parcels_g: list[int]


class LabelResult(BaseModel):
    carrier: str
    tracking_number: str
    label_ref: str


class HandoverResult(BaseModel):
    shipped_at: datetime


class TrackingRecord(BaseModel):
    """A carrier event to keep (once per tracking number and event id), and the shipment's status after it."""

    order_id: str
    shipment_id: str
    tracking_number: str
    event_id: str
    type: str
    at: datetime
    place: str | None = None
    shipment_status: str | None = None


class ClaimRecord(BaseModel):
    order_id: str
    shipment_id: str
    tracking_number: str | None
    reason: str
    amount: Decimal
