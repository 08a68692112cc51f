"""SQLAlchemy tables: the durable business records. Only activities and the CLI touch them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Money = Numeric(12, 2)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and read back in UTC (SQLite keeps no time zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money, dict[str, Any]: JSON}


class Warehouse(Base):
    __tablename__ = "warehouses"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)


class Product(Base):
    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    weight_g: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Stock(Base):
    """Levels per sku and warehouse; every change is also a StockMovement row."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("on_hand >= reserved", name="available_not_negative"),
    )
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    warehouse: Mapped[str] = mapped_column(ForeignKey("warehouses.code"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    reorder_point: Mapped[int | None] = mapped_column(Integer)
    reorder_qty: Mapped[int | None] = mapped_column(Integer)
    # a cycle count asked for: a pick found fewer units than the books promised here, so the shelf
    # count is suspect; the next adjustment of the pair (a count, even one that changes nothing) clears it
    count_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    count_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class StockMovement(Base):
    """Append-only stock ledger: the levels always equal the sum of these deltas."""

    __tablename__ = "stock_movements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(
        String(16)
    )  # reserve, release, pick, unpick, receive, restock, write_off, adjust
    on_hand_delta: Mapped[int] = mapped_column(Integer, default=0)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    purchase_order_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    # the door request (models.stock.DoorRequest.ref) a correction or receipt came from: its retry is
    # found here and moves nothing again
    request_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    payment_status: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal | None]
    # the total's parts (issue 26, docs/orders.md): NULL on orders priced before, whose total is all goods
    subtotal: Mapped[Decimal | None]
    discounts: Mapped[Decimal | None]
    shipping: Mapped[Decimal | None]
    shipping_tax: Mapped[Decimal | None]
    tax: Mapped[Decimal | None]
    taxes_included: Mapped[bool] = mapped_column(Boolean, server_default=false())
    shipping_address: Mapped[dict[str, Any]]
    delivery_instructions: Mapped[str | None] = mapped_column(Text)
    payment_method: Mapped[str] = mapped_column(String(16))
    placed_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    imported_from: Mapped[str | None] = mapped_column(String(24))  # NULL: live (has a workflow); else source


class OrderLine(Base):
    __tablename__ = "order_lines"
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal | None]  # as given by the order source; the catalog price is authoritative


class OrderEvent(Base):
    """Append-only audit trail of an order; seq is assigned by the workflow, which makes writes idempotent."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(40))  # an OrderEventType (models/events.py)
    detail: Mapped[str] = mapped_column(Text, default="")
    # a ReasonCode for refusals, cancellations and parcels in trouble; NULL elsewhere and on older rows
    reason_code: Mapped[str | None] = mapped_column(String(40), nullable=True)


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        UniqueConstraint("order_id", "shipment_id", "sku"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    shipment_id: Mapped[str] = mapped_column(String(80))
    sku: Mapped[str] = mapped_column(String(64))
    warehouse: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # active, picked, released, restocked
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(Base):
    """The payments ledger (domain/payment_ledger.py): one row per answer of the payment gateway, keyed
    by the request's idempotency key."""

    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_not_negative"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # a PaymentKind (models/events.py)
    status: Mapped[str] = mapped_column(String(16))  # approved, declined
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    reference: Mapped[str] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CarrierBooking(Base):
    """The sandbox carrier's own ledger of bookings."""

    __tablename__ = "carrier_bookings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    carrier: Mapped[str] = mapped_column(String(32))
    tracking_number: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # booked, cancelled
    weight_g: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (Index("ix_shipments_warehouse_status", "warehouse", "status"),)  # a warehouse's queue
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    warehouse: Mapped[str] = mapped_column(ForeignKey("warehouses.code"))
    status: Mapped[str] = mapped_column(String(16))
    carrier: Mapped[str | None] = mapped_column(String(32))
    tracking_number: Mapped[str | None] = mapped_column(String(40), unique=True)
    weight_g: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    picked_at: Mapped[datetime | None]
    packed_at: Mapped[datetime | None]
    shipped_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # warehouses and carriers as parties (migration 0008)
    released_at: Mapped[datetime | None]  # sent to the warehouse: its queue is oldest first
    label_ref: Mapped[str | None] = mapped_column(String(60))
    parcels_g: Mapped[list[int] | None] = mapped_column(JSON)
    replaces: Mapped[str | None] = mapped_column(String(80))  # the shipment whose units this one carries


class TrackingEvent(Base):
    """Every carrier event once: (tracking number, event id) is the carrier's idempotency key."""

    __tablename__ = "tracking_events"
    __table_args__ = (UniqueConstraint("tracking_number", "event_id", name="uq_tracking_events_event"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(100))
    shipment_id: Mapped[str] = mapped_column(String(80))
    type: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime]
    place: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class CarrierClaim(Base):
    """A claim against the carrier for a parcel it lost or sent back (one per shipment)."""

    __tablename__ = "carrier_claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64))
    shipment_id: Mapped[str] = mapped_column(String(80), unique=True)
    tracking_number: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(24))
    amount: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """Outbox of rendered customer (and support) messages."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # the HTML alternative of a customer's message (migration 0016); NULL: support's, and older rows
    html_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # the dispatcher's bookkeeping (domain/outbox.py): tries that failed for a passing reason, when the
    # next may be made, and a message given up (`failure_code` an adapters.mailer.MailFailure)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failed_at: Mapped[datetime | None]
    failure_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # a message given up and sent again by support (migration 0021): the give-up window counts from here
    resent_at: Mapped[datetime | None]
    resent_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_stock_movements_sku_warehouse", StockMovement.sku, StockMovement.warehouse)
# the outbox's pending messages, which the dispatcher takes oldest first one at a time: without it each
# take would walk past every message ever sent (migration 0016)
_PENDING = text("sent_at IS NULL AND failed_at IS NULL")
Index("ix_notifications_pending", Notification.id, postgresql_where=_PENDING, sqlite_where=_PENDING)


class BlockedEmail(Base):
    """Customer e-mails whose orders are held for review."""

    __tablename__ = "blocked_emails"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Return(Base):
    """A return authorization (RMA) and what became of it."""

    __tablename__ = "returns"
    rma: Mapped[str] = mapped_column(String(100), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # requested, refunded, exchanged, expired
    reason: Mapped[str] = mapped_column(Text)
    exchange_sku: Mapped[str | None] = mapped_column(String(64))
    condition: Mapped[str | None] = mapped_column(String(16))  # good (restocked), damaged (written off)
    refund_amount: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    requested_at: Mapped[datetime]
    received_at: Mapped[datetime | None]


class ReturnLine(Base):
    __tablename__ = "return_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)
    rma: Mapped[str] = mapped_column(ForeignKey("returns.rma"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(16), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]


class PurchaseOrder(Base):
    """A replenishment order to the (sandbox) supplier."""

    __tablename__ = "purchase_orders"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    warehouse: Mapped[str] = mapped_column(ForeignKey("warehouses.code"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # open, received
    supplier_ref: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expected_at: Mapped[datetime]
    received_at: Mapped[datetime | None]
    received_quantity: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key of the HTTP API: only its SHA-256 is kept (the key is shown once, at creation).
    Keys are 256-bit random tokens, so a plain hash is as good as a slow one and costs microseconds."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # a name is unique among the keys in use; revoked keys stay for the audit trail
        Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class OrderImport(Base):
    """A batch of orders from a file (CSV or JSON Lines), placed one by one; resumable after a crash."""

    __tablename__ = "order_imports"
    __table_args__ = (CheckConstraint("status IN ('running', 'done')", name="status_known"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # IMP-<12 hex upper>
    format: Mapped[str] = mapped_column(String(8))  # csv, jsonl
    status: Mapped[str] = mapped_column(String(16), index=True)  # running, done
    created_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The runner placing its orders holds the import until then (and renews it): one runner at a time.
    lease_until: Mapped[datetime | None]


class ImportOutcome(Base):
    """One order of an import: waiting to be placed (with its validated document), or what became of it."""

    __tablename__ = "order_import_outcomes"
    __table_args__ = (
        CheckConstraint("outcome IN ('pending', 'accepted', 'duplicate', 'refused')", name="outcome_known"),
        Index("ix_order_import_outcomes_import_id_outcome", "import_id", "outcome"),
    )
    import_id: Mapped[str] = mapped_column(ForeignKey("order_imports.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # the order's place in the file
    order_id: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[str] = mapped_column(String(200))  # the file's line numbers, e.g. "4-6, 9"
    outcome: Mapped[str] = mapped_column(String(16))  # pending, accepted, duplicate, refused
    reason: Mapped[str | None] = mapped_column(Text)
    order_json: Mapped[str | None] = mapped_column(Text)  # the validated order, while it waits to be placed


class GatewayAttempt(Base):
    """The sandbox gateway's count of transient failures per request, so a worker restart keeps it."""

    __tablename__ = "gateway_attempts"
    idempotency_key: Mapped[str] = mapped_column(String(160), primary_key=True)
    operation: Mapped[str] = mapped_column(String(16))  # authorization, void
    failures: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CodecAudit(Base):
    """One use of the codec server (POST /codec/decode or /codec/encode): who read or wrote which
    workflows' payloads, and whether it was answered. Never the payloads themselves."""

    __tablename__ = "codec_audit"
    __table_args__ = (
        CheckConstraint("via IN ('api_key', 'session')", name="via_known"),
        CheckConstraint("operation IN ('decode', 'encode')", name="operation_known"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # the API key's name
    role: Mapped[str] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(16))  # api_key (bearer), session (the console's cookie)
    operation: Mapped[str] = mapped_column(String(8))  # decode, encode
    namespace: Mapped[str] = mapped_column(String(255))  # X-Namespace; empty when not sent
    workflow_ids: Mapped[str] = mapped_column(String(1000))  # comma-joined, distinct, truncated
    payloads: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(255))  # the browser's Origin; empty for the CLI
    outcome: Mapped[str] = mapped_column(String(200))  # "ok", or "refused: <why>"


class ReorderRecommendation(Base):
    """The demand forecast's reorder point and quantity for a pair (domain/forecast.py), refreshed by
    `forecast` and ForecastWorkflow; `applied_at` says when they were last written to the stock row."""

    __tablename__ = "reorder_recommendations"
    __table_args__ = (
        CheckConstraint("reorder_point >= 0", name="point_not_negative"),
        CheckConstraint("reorder_qty >= 0", name="qty_not_negative"),
    )
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    warehouse: Mapped[str] = mapped_column(String(16), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    as_of: Mapped[date] = mapped_column(Date)  # the last day of demand the forecast saw
    model: Mapped[str] = mapped_column(String(32))  # domain.forecast.ForecastModel
    mae: Mapped[float | None] = mapped_column(Float)  # back-test MAE (units/day); None: too short to test
    naive_mae: Mapped[float | None] = mapped_column(Float)
    moving_average_mae: Mapped[float | None] = mapped_column(Float)
    mean_daily_demand: Mapped[float] = mapped_column(Float)
    demand_std: Mapped[float] = mapped_column(Float)  # sigma of daily demand around the forecast
    lead_time_days: Mapped[int] = mapped_column(Integer)
    service_level: Mapped[float] = mapped_column(Float)
    reorder_point: Mapped[int] = mapped_column(Integer)
    reorder_qty: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A console session, so that signing out ends it on the server: the cookie holds the session id,
    and only its SHA-256 is kept here (a copy of the database never holds a usable session)."""

    __tablename__ = "console_sessions"
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)  # created_at + session_ttl; pruned after
    ended_at: Mapped[datetime | None]  # signed out


class WebhookSubscription(Base):
    """An admin's outbound webhook (docs/webhooks.md). The secret is kept as given out: it signs every
    message (HMAC), so it cannot be a hash like an API key's."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(100))
    # the secret before the last rotation, which signs next to `secret` until `previous_secret_until`
    # (migration 0022)
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    # a repeated POST with the same Idempotency-Key answers with this subscription
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    removed_at: Mapped[datetime | None]


class WebhookEvent(Base):
    """One thing that happened, as subscribers are told it: written in the transaction that records
    it (order events, purchase orders), for the subscriptions that wanted it then. `body` is the JSON
    sent; an order's is filled by the dispatcher with the order's view (domain/webhook_payloads.py)."""

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # what made it, once: `<order>:<seq>:<type>` or `po:<id>:<type>`, so a repeated batch adds nothing
    source_key: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    # deliveries with the same key go to a subscriber in order: `order:<id>` or `stock:<sku>@<wh>`
    ordering_key: Mapped[str] = mapped_column(String(120))
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the writer knew (event seq, type, ids)
    body: Mapped[str | None] = mapped_column(Text)  # None until the dispatcher has built it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row the dispatcher works through."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "subscription_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    ordering_key: Mapped[str] = mapped_column(String(120))
    message_id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id header
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    # the retry window starts here (the first attempt, or the last manual redelivery)
    first_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index(
    "ix_webhook_deliveries_due",
    WebhookDelivery.status,
    WebhookDelivery.next_attempt_at,
)
Index(
    "ix_webhook_deliveries_queue",
    WebhookDelivery.subscription_id,
    WebhookDelivery.ordering_key,
    WebhookDelivery.status,
    WebhookDelivery.id,
)


class WebhookAttempt(Base):
    """The delivery log: one row per attempt."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(String(500))


class IdempotencyKey(Base):
    """An `Idempotency-Key` a caller sent with a mutating request (domain/idempotency.py): claimed while
    the request runs, then its answer, replayed to a retry until `expires_at`. One row per (caller, key):
    the unique constraint is what makes two racing duplicates have one effect."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("caller", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(64))  # the API key's name: keys of others are independent
    key: Mapped[str] = mapped_column(String(255))
    route: Mapped[str] = mapped_column(Text)  # "POST /orders/A-1/cancel": the method and the path as sent
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request: path, query and body
    status: Mapped[str] = mapped_column(String(16))  # an IdempotencyStatus
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_type: Mapped[str | None] = mapped_column(String(100))  # its Content-Type
    response_location: Mapped[str | None] = mapped_column(Text)  # its Location, when it had one
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)  # created_at + OMS_IDEMPOTENCY_TTL
