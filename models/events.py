"""The order's vocabulary as types: what an event is (`OrderEventType`), why an order was refused,
cancelled or is in trouble (`ReasonCode`), what a ledger movement is (`PaymentKind`). Reports, the
dashboard and the console compare these members, never English text. StrEnum values are the strings
stored in `order_events.type`, `order_events.reason_code` and `payments.kind`."""

from __future__ import annotations

from enum import StrEnum

from models.choices import CarrierEventType
from models.orders import OrderStatus, ShipmentStatus


class OrderEventType(StrEnum):
    """Every `order_events.type` the workflows (and the imports, reconcile) write."""

    # the order's own status
    order_received = "order_received"
    order_validated = "order_validated"
    order_on_hold = "order_on_hold"
    order_backordered = "order_backordered"
    order_confirmed = "order_confirmed"
    order_rejected = "order_rejected"
    order_cancelled = "order_cancelled"
    order_completed = "order_completed"
    order_partially_returned = "order_partially_returned"
    order_returned = "order_returned"
    hold_released = "hold_released"
    release_scheduled = "release_scheduled"
    run_cancelled = "run_cancelled"
    support_note = "support_note"
    feedback_received = "feedback_received"
    # stock and shipments
    stock_reserved = "stock_reserved"
    lines_cancelled = "lines_cancelled"
    label_printed = "label_printed"
    delivery_overdue = "delivery_overdue"
    carrier_event_refused = "carrier_event_refused"
    shipment_allocated = "shipment_allocated"
    shipment_backordered = "shipment_backordered"
    shipment_released = "shipment_released"
    shipment_picking = "shipment_picking"
    shipment_picked = "shipment_picked"
    shipment_packed = "shipment_packed"
    shipment_shipped = "shipment_shipped"
    shipment_delivered = "shipment_delivered"
    shipment_exception = "shipment_exception"
    shipment_resolved = "shipment_resolved"
    shipment_cancelled = "shipment_cancelled"
    # a carrier's scan that leaves the parcel's status as it was (a status change is the shipment's event)
    parcel_in_transit = "parcel_in_transit"
    parcel_out_for_delivery = "parcel_out_for_delivery"
    parcel_delivery_failed = "parcel_delivery_failed"  # an attempt short of the last
    parcel_held_up = "parcel_held_up"  # the carrier's `exception`: customs, an address problem
    # money
    payment_authorized = "payment_authorized"
    payment_captured = "payment_captured"
    authorization_released = "authorization_released"
    refund_issued = "refund_issued"
    goodwill_refund_issued = "goodwill_refund_issued"  # its reason code: a GoodwillReason
    # edits (issue 26)
    order_edited = "order_edited"
    # returns
    return_requested = "return_requested"  # the customer's request, waiting for support's approval
    return_declined = "return_declined"
    return_authorized = "return_authorized"
    return_received = "return_received"
    return_expired = "return_expired"
    exchange_reserved = "exchange_reserved"
    exchange_failed = "exchange_failed"
    # the run's health and its undoing
    step_stuck = "step_stuck"
    step_recovered = "step_recovered"
    compensated = "compensated"
    compensation_failed = "compensation_failed"
    # written outside the workflows
    # shown in the order's story from the outbox (domain/outbox.py), never stored in order_events: an
    # event's seq is the workflow's, and its next batch would take the number over
    notification_failed = "notification_failed"
    reconciled = "reconciled"  # domain/reconcile.py: the orders row caught up with its run
    delivery_promised = "delivery_promised"  # historical imports: the date promised to the customer

    @classmethod
    def of_order(cls, status: OrderStatus) -> OrderEventType:
        """The event that puts an order in `status` (an order's end, a return's outcome)."""
        return _OF_ORDER[status]

    @classmethod
    def of_shipment(cls, status: ShipmentStatus) -> OrderEventType:
        """The event of a shipment reaching `status`."""
        return _OF_SHIPMENT[status]

    @classmethod
    def of_scan(cls, scan: CarrierEventType) -> OrderEventType | None:
        """The event of a carrier's scan that did not change its parcel's status; None for the scans that
        always do (delivered, lost, returned to sender)."""
        return _OF_SCAN.get(scan)


_OF_ORDER: dict[OrderStatus, OrderEventType] = {
    OrderStatus.received: OrderEventType.order_received,
    OrderStatus.on_hold: OrderEventType.order_on_hold,
    OrderStatus.backordered: OrderEventType.order_backordered,
    OrderStatus.confirmed: OrderEventType.order_confirmed,
    OrderStatus.rejected: OrderEventType.order_rejected,
    OrderStatus.cancelled: OrderEventType.order_cancelled,
    OrderStatus.completed: OrderEventType.order_completed,
    OrderStatus.partially_returned: OrderEventType.order_partially_returned,
    OrderStatus.returned: OrderEventType.order_returned,
}

_OF_SHIPMENT: dict[ShipmentStatus, OrderEventType] = {
    ShipmentStatus.allocated: OrderEventType.shipment_allocated,
    ShipmentStatus.backordered: OrderEventType.shipment_backordered,
    ShipmentStatus.released: OrderEventType.shipment_released,
    ShipmentStatus.picking: OrderEventType.shipment_picking,
    ShipmentStatus.picked: OrderEventType.shipment_picked,
    ShipmentStatus.packed: OrderEventType.shipment_packed,
    ShipmentStatus.shipped: OrderEventType.shipment_shipped,
    ShipmentStatus.delivered: OrderEventType.shipment_delivered,
    ShipmentStatus.exception: OrderEventType.shipment_exception,
    ShipmentStatus.resolved: OrderEventType.shipment_resolved,
    ShipmentStatus.cancelled: OrderEventType.shipment_cancelled,
}


_OF_SCAN: dict[CarrierEventType, OrderEventType] = {
    CarrierEventType.in_transit: OrderEventType.parcel_in_transit,
    CarrierEventType.out_for_delivery: OrderEventType.parcel_out_for_delivery,
    CarrierEventType.delivery_failed: OrderEventType.parcel_delivery_failed,
    CarrierEventType.exception: OrderEventType.parcel_held_up,
}


class PaymentKind(StrEnum):
    """`payments.kind`: one movement of the payment ledger (domain/payment_ledger.py writes them)."""

    authorization = "authorization"
    # more held under the same authorization: an edit raised the order's total (an incremental
    # authorization, as card networks call it)
    increment = "increment"
    capture = "capture"
    refund = "refund"  # a return's, a lost parcel's, a compensation's
    void = "void"  # releases what the authorization holds: a part of it (an edit, a cancel) or the rest
    goodwill_refund = "goodwill_refund"  # support's gesture (POST /orders/{id}/refunds): cash back, no goods

    @classmethod
    def refunds(cls) -> tuple[PaymentKind, ...]:
        """The kinds that give captured money back (refunded <= captured counts them all)."""
        return (cls.refund, cls.goodwill_refund)

    @classmethod
    def holds(cls) -> tuple[PaymentKind, ...]:
        """The kinds that put money on hold (authorized counts them all)."""
        return (cls.authorization, cls.increment)


class ReasonCode(StrEnum):
    """Why an order was refused, cancelled or ended early, or why a parcel is in trouble: stored in
    `order_events.reason_code` next to the event's text, so reports group by it instead of reading prose."""

    # refusals (activities' ErrorType, models/steps.py)
    invalid_order = "invalid_order"
    unknown_sku = "unknown_sku"  # unknown or inactive
    price_mismatch = "price_mismatch"  # a unit price or currency differs from the catalog
    payment_declined = "payment_declined"
    payment_rejected = "payment_rejected"
    out_of_stock = "out_of_stock"
    carrier_refused = "carrier_refused"
    invalid_data = "invalid_data"
    # held for a person to look at (admission's screening, activities/orders.py)
    blocklisted_customer = "blocklisted_customer"
    above_review_limit = "above_review_limit"
    # the order's clock ran out
    hold_timeout = "hold_timeout"
    backorder_timeout = "backorder_timeout"
    exception_timeout = "exception_timeout"
    # somebody stopped it
    cancelled_by_support = "cancelled_by_support"
    cancelled_from_temporal = "cancelled_from_temporal"
    cancelled_at_source = "cancelled_at_source"  # imported history: the source had cancelled it
    # how it ended otherwise
    nothing_delivered = "nothing_delivered"
    # a parcel in trouble (ShipmentTrouble's values)
    lost_parcel = "lost_parcel"
    returned_to_sender = "returned_to_sender"
    held_up = "held_up"


# ErrorType (the ApplicationError `type` of a business refusal) -> its reason code
REFUSAL_CODES: dict[str, ReasonCode] = {
    "InvalidOrder": ReasonCode.invalid_order,
    "PaymentDeclined": ReasonCode.payment_declined,
    "PaymentRejected": ReasonCode.payment_rejected,
    "OutOfStock": ReasonCode.out_of_stock,
    "CarrierRefused": ReasonCode.carrier_refused,
    "InvalidData": ReasonCode.invalid_data,
}
