"""The closed sets of values people pick from at the doors: statuses, channels, roles, formats.

Plain enums, and nothing but the standard library: the command line offers them as choices (`list
--status`, `apikey create --role`, ...) and builds its parser without loading pydantic, so that
`starter.py --help` answers at once. The modules that own these words import them from here
(`models.orders`, `models.shipping`, `models.imports`, `domain.history_import`, `domain.api_keys`), and
are where the rest of the code reads them.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    web = "web"
    phone = "phone"
    store = "store"
    marketplace = "marketplace"
    api = "api"
    csv = "csv"


class OrderStatus(StrEnum):
    received = "received"
    rejected = "rejected"
    backordered = "backordered"
    on_hold = "on_hold"
    confirmed = "confirmed"
    picking = "picking"
    packed = "packed"
    shipped = "shipped"
    delivered = "delivered"
    delivery_exception = "delivery_exception"  # a parcel is in trouble: lost, coming back, or held up
    partially_returned = "partially_returned"
    returned = "returned"
    completed = "completed"
    cancelled = "cancelled"


# Orders a person must look at by their status alone, beside those the workflow marks NeedsAttention (a
# compensation that gave up, a step stuck): a parcel in trouble waits for support's choice (reship or
# refund) or for the carrier. `list --needs-attention`, `GET /orders?needs_attention=` and the
# dashboard (domain/dashboard.py) all count them.
ATTENTION_STATUSES = frozenset({OrderStatus.delivery_exception})


class ReturnCondition(StrEnum):
    good = "good"
    damaged = "damaged"


class CarrierEventType(StrEnum):
    in_transit = "in_transit"
    out_for_delivery = "out_for_delivery"
    delivered = "delivered"
    delivery_failed = "delivery_failed"
    exception = "exception"  # in trouble (damaged, held at customs, address problem): may recover
    lost = "lost"
    returned_to_sender = "returned_to_sender"


class Resolution(StrEnum):
    reship = "reship"  # a new shipment from stock; a claim is lodged with the carrier
    refund = "refund"  # the parcel's lines are refunded


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class HistoryFormat(StrEnum):
    olist = "olist"
    online_retail = "online-retail"


class Role(StrEnum):
    source = "source"  # order sources: web shops, marketplaces, POS, CSV batches
    support = "support"  # support staff and their tools
    carrier = "carrier"  # carriers' webhooks
    warehouse = "warehouse"  # warehouses: stock, receipts, returned parcels
    admin = "admin"  # everything


class WebhookEventType(StrEnum):
    """What a webhook subscriber can subscribe to (docs/webhooks.md): the `type` of a message's body.
    Mapped from the order events the workflows record and from the stock ledger's purchase orders
    (domain/webhook_outbox.py)."""

    order_created = "order.created"
    order_confirmed = "order.confirmed"
    order_rejected = "order.rejected"
    order_cancelled = "order.cancelled"
    order_shipped = "order.shipped"
    order_delivered = "order.delivered"
    order_delivery_exception = "order.delivery_exception"
    order_completed = "order.completed"
    return_requested = "return.requested"  # by the customer: waits for support's approval
    return_declined = "return.declined"
    return_authorized = "return.authorized"
    return_received = "return.received"
    refund_issued = "refund.issued"
    stock_low = "stock.low"
    purchase_order_raised = "purchase_order.raised"
    purchase_order_received = "purchase_order.received"


class ReturnReason(StrEnum):
    """Why the customer sends goods back (a return the customer starts on the tracking page)."""

    damaged = "damaged"
    defective = "defective"
    wrong_item = "wrong_item"
    not_as_described = "not_as_described"
    no_longer_needed = "no_longer_needed"
    other = "other"


class GoodwillReason(StrEnum):
    """Why support refunds part of an order as a gesture (a goodwill refund): stored as the
    `goodwill_refund_issued` event's reason code, so reports group by it."""

    damaged_item = "damaged_item"
    late_delivery = "late_delivery"
    price_adjustment = "price_adjustment"
    service_issue = "service_issue"
    other = "other"
