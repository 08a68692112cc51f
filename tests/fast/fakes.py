"""In-memory stand-ins for every activity of the worker, registered under the real names.

`World` keeps small ledgers (catalog, stock per SKU and warehouse with on-hand and reserved, open
purchase orders, reservations, payments, carrier bookings, the events and messages each order wrote)
and behaves as the real activities do where the workflows look: business refusals are the same
non-retryable `ApplicationError`s with the same `type` (`ErrorType`, `activities.refuse`), an
out-of-stock refusal carries the same shortage detail, every money or stock move is idempotent by its
key. `World.fail(name, times)` makes an activity fail (retryably, as an outage would) a number of times,
so stuck steps and compensation incidents are reachable. No database, no HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import refuse
from domain.allocation import plan_allocation
from domain.screening import hold_reason
from models.events import PaymentKind
from models.fulfilment import (
    AddressChange,
    AddressChangeAnswer,
    CarrierEvent,
    FulfilmentRequest,
    WarehouseReport,
)
from models.orders import PlaceOrder, PricedLine, ShipmentLine
from models.steps import (
    AddressEdit,
    Admission,
    AllocatedShipment,
    ClaimRecord,
    DeliveryRecord,
    ErrorType,
    EventBatch,
    EventRecord,
    FeedbackRecord,
    HandoverResult,
    KeepUnits,
    LabelResult,
    LineEditRecord,
    NotificationRequest,
    PackRecord,
    PackResult,
    PaymentRequest,
    PaymentResult,
    PickOutcome,
    PickRecord,
    PricedOrder,
    PriceRequest,
    PurchaseOrderView,
    RaisePurchaseOrder,
    ReceiptRecord,
    ReceivePurchaseOrder,
    RelabelRequest,
    ReplenishRequest,
    ReserveRequest,
    ReturnOutcome,
    ReturnRecord,
    ShipmentRef,
    ShipRequest,
    ShipResult,
    StockKey,
    TrackingRecord,
)
from models.workflow_names import (
    REPLENISHMENT_WORKFLOW,
    SANDBOX_CARRIER_WORKFLOW,
    SANDBOX_WAREHOUSE_WORKFLOW,
    OrderUpdate,
    replenishment_workflow_id,
    sandbox_carrier_workflow_id,
    sandbox_warehouse_workflow_id,
)
from sandbox.activities import NOT_HANDED_OVER, ParcelRef, Pickup, ReportSent
from sandbox.carrier import SandboxParcel
from sandbox.warehouse import SandboxShipment
from services import fulfilment as fulfilment_service
from services.orders import Refused

CENT = Decimal("0.01")
DECLINED_TOKEN = "tok_declined"  # the sandbox gateway's card that is always declined
NO_INCREMENT_TOKEN = "tok_no_increment"  # the sandbox's card whose hold cannot grow
PACKAGING_G = 150
BLOCKLISTED = "fraud@example.com"


@dataclass
class Product:
    sku: str
    price: Decimal
    weight_g: int = 250
    currency: str = "EUR"
    active: bool = True


@dataclass
class Stock:
    on_hand: int
    reserved: int = 0
    reorder_point: int = 0
    reorder_quantity: int = 0


@dataclass
class Reservation:
    order_id: str
    shipment_id: str
    sku: str
    warehouse: str
    quantity: int
    status: str = "active"  # active, released, picked, short, restocked


@dataclass
class Payment:
    order_id: str
    kind: PaymentKind
    amount: Decimal
    key: str
    reference: str


@dataclass
class Fault:
    times: int  # failures still to come
    message: str


SLOW_CITY = "Slowtown"  # record_address_edit takes 2 s of real time for an address in this city


@dataclass
class World:
    """The fake outside world of the fast tier: ledgers, and the activities that keep them."""

    warehouses: list[str] = field(default_factory=lambda: ["W1", "W2"])
    catalog: dict[str, Product] = field(default_factory=dict)
    stock: dict[tuple[str, str], Stock] = field(default_factory=dict)
    on_order: dict[str, int] = field(default_factory=dict)  # sku -> units on open purchase orders
    reservations: list[Reservation] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    events: dict[str, dict[int, EventRecord]] = field(default_factory=lambda: defaultdict(dict))
    notifications: dict[str, dict[str, NotificationRequest]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    bookings: dict[str, str] = field(default_factory=dict)  # tracking number -> booked | cancelled
    shipped: dict[str, datetime] = field(default_factory=dict)  # shipment id -> handed over at
    released: list[FulfilmentRequest] = field(default_factory=list)
    tracking: dict[str, list[TrackingRecord]] = field(default_factory=lambda: defaultdict(list))
    claims: list[ClaimRecord] = field(default_factory=list)
    returns: dict[str, ReturnRecord] = field(default_factory=dict)
    return_outcomes: dict[str, ReturnOutcome] = field(default_factory=dict)
    feedback: dict[str, FeedbackRecord] = field(default_factory=dict)
    addresses: dict[str, dict[str, str | None]] = field(default_factory=dict)  # order -> edited address
    edited_lines: dict[str, LineEditRecord] = field(default_factory=dict)  # order -> its last line edit
    edits_begun: set[str] = field(default_factory=set)  # orders whose record_address_edit has run
    shipped_to: dict[str, str] = field(default_factory=dict)  # shipment id -> the city it was booked to
    # address changes after release: what the warehouses were asked, in order; warehouse -> the reason it
    # refuses with (else it accepts); seconds (real time) an answer takes, so a test can race it
    address_asks: list[AddressChange] = field(default_factory=list)
    address_refusals: dict[str, str] = field(default_factory=dict)
    address_stall: float = 0.0
    purchase_orders: dict[str, PurchaseOrderView] = field(default_factory=dict)
    replenishments: list[str] = field(default_factory=list)  # workflow ids started
    backordered: list[str] = field(default_factory=list)  # orders refused for stock on order, in order
    faults: dict[str, Fault] = field(default_factory=dict)
    # comment -> seconds (real time) record_feedback takes for a feedback with that comment, so a test
    # can have one message's step end after the next one's (stall_feedback)
    feedback_stalls: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    forecast_runs: list[date] = field(default_factory=list)
    client: Client | None = None
    task_queue: str = ""
    sandbox_parties: bool = False  # releases and labels start the sandbox warehouse and carrier
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    # ---- the test's side ----

    def add_product(
        self, sku: str, price: str = "10.00", stock: dict[str, int] | None = None, **kw: Any
    ) -> str:
        self.catalog[sku] = Product(sku=sku, price=Decimal(price), **kw)
        for warehouse, qty in (stock or {}).items():
            self.stock[(sku, warehouse)] = Stock(on_hand=qty)
        return sku

    def fail(self, name: str, times: int, message: str = "outage") -> None:
        """The activity `name` fails (retryably) on its next `times` calls."""
        self.faults[name] = Fault(times, message)

    def stall_feedback(self, comment: str, seconds: float) -> None:
        """Storing a feedback with `comment` takes `seconds` of real time (a slow database)."""
        self.feedback_stalls[comment] = seconds

    def receive_stock(self, sku: str, warehouse: str, quantity: int) -> None:
        """Goods booked in (a purchase order received): on hand up, no longer on order."""
        row = self.stock.setdefault((sku, warehouse), Stock(on_hand=0))
        row.on_hand += quantity
        self.on_order[sku] = max(0, self.on_order.get(sku, 0) - quantity)

    def level(self, sku: str, warehouse: str = "W1") -> tuple[int, int]:
        """(on_hand, reserved)."""
        row = self.stock[(sku, warehouse)]
        return row.on_hand, row.reserved

    def money(self, order_id: str) -> dict[str, Decimal]:
        """Approved movements of an order: the sum of each kind."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for p in self.payments:
            if p.order_id == order_id:
                totals[p.kind] += p.amount
        return dict(totals)

    def event_types(self, order_id: str) -> list[str]:
        return [e.type for _, e in sorted(self.events[order_id].items())]

    def messages(self, order_id: str) -> list[str]:
        return [n.kind for n in self.notifications[order_id].values()]

    def message(self, order_id: str, kind: str) -> NotificationRequest:
        return next(n for n in self.notifications[order_id].values() if n.kind == kind)

    def rendered(self, order_id: str, kind: str) -> tuple[str, str]:
        """The message's subject and body as the real outbox renders them (activities.notifications:
        its templates, the order's context, the customer's name, here the driver's Ada Lovelace)."""
        from string import Template

        from activities.notifications import TEMPLATES

        subject, body = TEMPLATES[kind]
        values = {"order_id": order_id, "name": "Ada Lovelace", **self.message(order_id, kind).context}
        return Template(subject).safe_substitute(values), Template(body).safe_substitute(values)

    def last_status(self, order_id: str) -> str | None:
        """The status the orders row would mirror: the last written event's."""
        written = self.events[order_id]
        return written[max(written)].status if written else None

    # ---- plumbing ----

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        fault = self.faults.get(name)
        if fault is not None and fault.times > 0:
            fault.times -= 1
            raise ApplicationError(f"{name}: {fault.message}", type="FakeOutage")

    def _row(self, sku: str, warehouse: str) -> Stock:
        return self.stock.setdefault((sku, warehouse), Stock(on_hand=0))

    def _reserved(self, order_id: str, shipment_id: str, status: str) -> list[Reservation]:
        return [
            r
            for r in self.reservations
            if r.order_id == order_id and r.status == status and shipment_id in ("", r.shipment_id)
        ]

    def _pay(self, request: PaymentRequest, kind: PaymentKind, amount: Decimal) -> PaymentResult:
        for p in self.payments:
            if p.key == request.idempotency_key:  # a repeat: the first answer
                return PaymentResult(reference=p.reference, amount=p.amount, kind=p.kind)
        ref = f"{kind[:3].upper()}-{next(self._seq)}"
        self.payments.append(Payment(request.order_id, kind, amount, request.idempotency_key, ref))
        return PaymentResult(reference=ref, amount=amount, kind=kind)

    def _paid(self, order_id: str, kind: PaymentKind) -> Decimal:
        return sum((p.amount for p in self.payments if p.order_id == order_id and p.kind == kind), Decimal(0))

    def _held(self, order_id: str) -> Decimal:
        """What the authorization still holds (domain/payment_ledger.py's rule)."""
        held = sum((self._paid(order_id, kind) for kind in PaymentKind.holds()), Decimal(0))
        return held - self._paid(order_id, PaymentKind.capture) - self._paid(order_id, PaymentKind.void)

    def _pay_within(
        self, request: PaymentRequest, kind: PaymentKind, limit: PaymentKind, refusal: str
    ) -> PaymentResult:
        """A capture within what was authorized, a refund within what was captured; a repeat of one
        already made answers as the first (the gateway's idempotency)."""
        repeat = any(p.key == request.idempotency_key for p in self.payments)
        room = (
            self._held(request.order_id)
            if kind == PaymentKind.capture
            else self._paid(request.order_id, limit) - self._paid(request.order_id, kind)
        )
        if not repeat and request.amount > room:
            raise refuse(ErrorType.payment_rejected, refusal, benign=False)
        return self._pay(request, kind, request.amount)

    def _priced(self, request: PlaceOrder) -> PricedOrder:
        lines, problems = [], []
        for n, line in enumerate(request.order.lines, start=1):
            product = self.catalog.get(line.sku)
            if product is None or not product.active:
                problems.append(f"line {n}: unknown SKU {line.sku}")
                continue
            price = product.price.quantize(CENT)
            if line.unit_price is not None and line.unit_price != price:
                problems.append(f"line {n}: unit price {line.unit_price} differs from catalog price {price}")
            lines.append(
                PricedLine(
                    sku=line.sku,
                    name=f"Product {line.sku}",
                    quantity=line.quantity,
                    unit_price=price,
                    line_total=price * line.quantity,
                )
            )
        if problems:
            raise refuse(ErrorType.invalid_order, "; ".join(problems))
        return PricedOrder.of(request.order, lines)

    def _low(self, keys: list[StockKey]) -> list[StockKey]:
        """Pairs at or below their reorder point (available = on hand - reserved)."""
        out = []
        for key in keys:
            row = self.stock.get((key.sku, key.warehouse))
            if row is not None and row.reorder_point and row.on_hand - row.reserved <= row.reorder_point:
                out.append(key)
        return out

    # ---- orders ----

    @activity.defn(name="admit_order")
    async def admit_order(self, request: PlaceOrder) -> Admission:
        self._enter("admit_order")
        priced = self._priced(request)
        email = str(request.order.customer.email)
        hold = hold_reason(email, priced.total, request.policy.review_above, email.lower() == BLOCKLISTED)
        code, reason = hold or (None, None)
        return Admission(priced=priced, hold_reason=reason, hold_code=code)

    @activity.defn(name="price_sku")
    async def price_sku(self, request: PriceRequest) -> PricedLine:
        self._enter("price_sku")
        product = self.catalog.get(request.sku)
        if product is None or not product.active:
            raise refuse(ErrorType.invalid_order, f"SKU {request.sku} is unknown or not active")
        price = product.price.quantize(CENT)
        return PricedLine(sku=product.sku, name=product.sku, quantity=1, unit_price=price, line_total=price)

    @activity.defn(name="record_address_edit")
    async def record_address_edit(self, edit: AddressEdit) -> None:
        self._enter("record_address_edit")
        self.edits_begun.add(edit.order_id)
        if edit.address.get("city") == SLOW_CITY:  # a slow database: the edit stays under way a while
            await asyncio.sleep(2.0)
        self.addresses[edit.order_id] = edit.address

    @activity.defn(name="record_line_edit")
    async def record_line_edit(self, edit: LineEditRecord) -> None:
        self._enter("record_line_edit")
        self.edited_lines[edit.order_id] = edit

    @activity.defn(name="record_events")
    async def record_events(self, batch: EventBatch) -> None:
        self._enter("record_events")
        for event in batch.events:
            self.events[event.order_id][event.seq] = event
        for request in batch.notifications:
            self.notifications[request.order_id].setdefault(request.idempotency_key, request)

    @activity.defn(name="record_feedback")
    async def record_feedback(self, record: FeedbackRecord) -> None:
        self._enter("record_feedback")
        if stall := self.feedback_stalls.get(record.comment or ""):
            await asyncio.sleep(stall)
        self.feedback[record.order_id] = record

    @activity.defn(name="send_notification")
    async def send_notification(self, request: NotificationRequest) -> int:
        self._enter("send_notification")
        self.notifications[request.order_id].setdefault(request.idempotency_key, request)
        return len(self.notifications[request.order_id])

    # ---- payments (the sandbox gateway's rules) ----

    @activity.defn(name="authorize_payment")
    async def authorize_payment(self, request: PaymentRequest) -> PaymentResult:
        self._enter("authorize_payment")
        if request.token == DECLINED_TOKEN:
            raise refuse(ErrorType.payment_declined, "card declined: insufficient funds")
        result = self._pay(request, PaymentKind.authorization, request.amount)
        return result.model_copy(update={"attempt": activity.info().attempt})

    @activity.defn(name="capture_payment")
    async def capture_payment(self, request: PaymentRequest) -> PaymentResult:
        self._enter("capture_payment")
        return self._pay_within(
            request, PaymentKind.capture, PaymentKind.authorization, "capture above the authorization"
        )

    @activity.defn(name="refund_payment")
    async def refund_payment(self, request: PaymentRequest) -> PaymentResult:
        self._enter("refund_payment")
        return self._pay_within(
            request, PaymentKind.refund, PaymentKind.capture, "refund above what was captured"
        )

    @activity.defn(name="refund_goodwill")
    async def refund_goodwill(self, request: PaymentRequest) -> PaymentResult:
        self._enter("refund_goodwill")
        repeat = any(p.key == request.idempotency_key for p in self.payments)
        refunded = self._paid(request.order_id, PaymentKind.refund) + self._paid(
            request.order_id, PaymentKind.goodwill_refund
        )
        if not repeat and refunded + request.amount > self._paid(request.order_id, PaymentKind.capture):
            raise refuse(ErrorType.payment_rejected, "refund above what was captured", benign=False)
        return self._pay(request, PaymentKind.goodwill_refund, request.amount)

    @activity.defn(name="increment_authorization")
    async def increment_authorization(self, request: PaymentRequest) -> PaymentResult:
        self._enter("increment_authorization")
        if request.token == NO_INCREMENT_TOKEN:
            raise refuse(ErrorType.payment_declined, "incremental_authorization_unavailable")
        return self._pay(request, PaymentKind.increment, request.amount)

    @activity.defn(name="void_payment")
    async def void_payment(self, request: PaymentRequest) -> PaymentResult | None:
        """All the authorization still holds, as the ledger voids it."""
        self._enter("void_payment")
        if not self._paid(request.order_id, PaymentKind.authorization):
            return None
        repeat = any(p.key == request.idempotency_key for p in self.payments)
        return self._pay(request, PaymentKind.void, Decimal(0) if repeat else self._held(request.order_id))

    @activity.defn(name="void_part")
    async def void_part(self, request: PaymentRequest) -> PaymentResult | None:
        self._enter("void_part")
        if not self._paid(request.order_id, PaymentKind.authorization):
            return None
        repeat = any(p.key == request.idempotency_key for p in self.payments)
        if not repeat and not 0 < request.amount <= self._held(request.order_id):
            raise refuse(ErrorType.payment_rejected, "void above what the authorization holds", benign=False)
        return self._pay(request, PaymentKind.void, request.amount)

    # ---- stock ----

    @activity.defn(name="reserve_stock")
    async def reserve_stock(self, request: ReserveRequest) -> list[AllocatedShipment]:
        self._enter("reserve_stock")
        existing: dict[str, AllocatedShipment] = {}
        for r in self.reservations:
            number = r.shipment_id.removeprefix(request.shipment_prefix)
            if r.order_id != request.order_id or not r.shipment_id.startswith(request.shipment_prefix):
                continue
            if number.isdigit() and int(number) >= request.numbers_from:
                existing.setdefault(
                    r.shipment_id, AllocatedShipment(id=r.shipment_id, warehouse=r.warehouse, lines=[])
                )
                existing[r.shipment_id].lines.append(ShipmentLine(sku=r.sku, quantity=r.quantity))
        if existing:
            return self._with_low(list(existing.values()))
        wanted: dict[str, int] = defaultdict(int)
        for line in request.lines:
            wanted[line.sku] += line.quantity
        available = {key: row.on_hand - row.reserved for key, row in self.stock.items()}
        plan, short = plan_allocation(wanted, available, self.warehouses, take_last=request.take_last)
        if short:
            detail = ", ".join(f"{sku} short by {qty}" for sku, qty in sorted(short.items()))
            on_order = {sku: self.on_order[sku] for sku in short if self.on_order.get(sku)}
            if on_order and request.order_id not in self.backordered:
                self.backordered.append(request.order_id)
            raise refuse(
                ErrorType.out_of_stock,
                f"out of stock: {detail}",
                {"short": sorted(short), "on_order": on_order},
            )
        shipments = []
        for n, warehouse in enumerate([w for w in self.warehouses if w in plan], start=request.numbers_from):
            shipment_id = f"{request.shipment_prefix}{n}"
            lines = [ShipmentLine(sku=sku, quantity=q) for sku, q in sorted(plan[warehouse].items())]
            for line in lines:
                self._row(line.sku, warehouse).reserved += line.quantity
                self.reservations.append(
                    Reservation(request.order_id, shipment_id, line.sku, warehouse, line.quantity)
                )
            shipments.append(AllocatedShipment(id=shipment_id, warehouse=warehouse, lines=lines))
        if request.order_id in self.backordered:
            self.backordered.remove(request.order_id)
        return self._with_low(shipments)

    def _with_low(self, shipments: list[AllocatedShipment]) -> list[AllocatedShipment]:
        for s in shipments:
            s.low_stock = self._low([StockKey(sku=x.sku, warehouse=s.warehouse) for x in s.lines])
        return shipments

    @activity.defn(name="release_stock")
    async def release_stock(self, ref: ShipmentRef) -> int:
        self._enter("release_stock")
        active = self._reserved(ref.order_id, ref.shipment_id, "active")
        for r in active:
            self._row(r.sku, r.warehouse).reserved -= r.quantity
            r.status = "released"
        return sum(r.quantity for r in active)

    @activity.defn(name="return_order_stock")
    async def return_order_stock(self, order_id: str) -> int:
        self._enter("return_order_stock")
        returned = 0
        for r in self._reserved(order_id, "", "active"):
            self._row(r.sku, r.warehouse).reserved -= r.quantity
            r.status, returned = "released", returned + r.quantity
        for r in self._reserved(order_id, "", "picked"):
            if r.shipment_id not in self.shipped:
                self._row(r.sku, r.warehouse).on_hand += r.quantity
                r.status, returned = "restocked", returned + r.quantity
        return returned

    @activity.defn(name="pick_stock")
    async def pick_stock(self, ref: ShipmentRef) -> int:
        self._enter("pick_stock")
        picked = sum(r.quantity for r in self._reserved(ref.order_id, ref.shipment_id, "picked"))
        for r in self._reserved(ref.order_id, ref.shipment_id, "active"):
            row = self._row(r.sku, r.warehouse)
            row.on_hand, row.reserved, r.status = (
                row.on_hand - r.quantity,
                row.reserved - r.quantity,
                "picked",
            )
            picked += r.quantity
        return picked

    @activity.defn(name="record_pick")
    async def record_pick(self, record: PickRecord) -> PickOutcome:
        self._enter("record_pick")
        found = {sku: max(0, q) for sku, q in record.found.items()}
        for r in self._reserved(record.order_id, record.shipment_id, "active"):
            picked = min(found.get(r.sku, r.quantity), r.quantity)
            row = self._row(r.sku, r.warehouse)
            # found units leave the shelf; units not found come off the books too (the count was wrong)
            row.on_hand -= r.quantity
            row.reserved -= r.quantity
            if picked:
                r.quantity, r.status = picked, "picked"
            else:
                r.status = "short"
        booked: dict[str, int] = defaultdict(int)
        for r in self._reserved(record.order_id, record.shipment_id, "picked"):
            booked[r.sku] += r.quantity
        picked_lines = [ShipmentLine(sku=s, quantity=q) for s, q in sorted(booked.items())]
        missing = [
            ShipmentLine(sku=x.sku, quantity=x.quantity - booked.get(x.sku, 0))
            for x in record.ordered
            if x.quantity > booked.get(x.sku, 0)
        ]
        return PickOutcome(picked=picked_lines, missing=missing)

    def _restock(self, ref: ShipmentRef) -> int:
        picked = self._reserved(ref.order_id, ref.shipment_id, "picked")
        for r in picked:
            self._row(r.sku, r.warehouse).on_hand += r.quantity
            r.status = "restocked"
        return sum(r.quantity for r in picked)

    @activity.defn(name="restock_picked")
    async def restock_picked(self, ref: ShipmentRef) -> int:
        self._enter("restock_picked")
        return self._restock(ref)

    @activity.defn(name="keep_units")
    async def keep_units(self, request: KeepUnits) -> int:
        self._enter("keep_units")
        keep = {x.sku: x.quantity for x in request.keep}
        moved = 0
        for status in ("active", "picked"):
            for r in self._reserved(request.order_id, request.shipment_id, status):
                going = r.quantity - min(keep.get(r.sku, 0), r.quantity)
                if not going:
                    continue
                row = self._row(r.sku, r.warehouse)
                if status == "active":
                    row.reserved -= going
                else:
                    row.on_hand += going
                if going == r.quantity:
                    r.status = "released" if status == "active" else "restocked"
                else:
                    r.quantity -= going
                moved += going
        return moved

    @activity.defn(name="restock_returned")
    async def restock_returned(self, ref: ShipmentRef) -> int:
        self._enter("restock_returned")
        return self._restock(ref)

    # ---- fulfilment ----

    def _weight(self, lines: list[ShipmentLine]) -> int:
        return PACKAGING_G + sum(self.catalog[x.sku].weight_g * x.quantity for x in lines)

    @activity.defn(name="pack_shipment")
    async def pack_shipment(self, ref: ShipmentRef) -> PackResult:
        self._enter("pack_shipment")
        picked = self._reserved(ref.order_id, ref.shipment_id, "picked")
        weight = self._weight([ShipmentLine(sku=r.sku, quantity=r.quantity) for r in picked])
        return PackResult(weight_g=weight, label=f"LABEL {ref.shipment_id}")

    def _book(self, request: ShipRequest) -> str:
        self.shipped_to[request.shipment_id] = request.address.city
        if request.address.postal_code.upper().startswith("ZZ"):
            raise refuse(
                ErrorType.carrier_refused, f"no service to postal code {request.address.postal_code}"
            )
        tracking = f"TRK{request.shipment_id.replace('-', '')}"
        self.bookings.setdefault(tracking, "booked")
        return tracking

    @activity.defn(name="ship_shipment")
    async def ship_shipment(self, request: ShipRequest) -> ShipResult:
        self._enter("ship_shipment")
        tracking = self._book(request)
        shipped = self.shipped.setdefault(request.shipment_id, datetime.now(UTC))
        return ShipResult(carrier="FakeExpress", tracking_number=tracking, shipped_at=shipped)

    @activity.defn(name="cancel_carrier_booking")
    async def cancel_carrier_booking(self, ref: ShipmentRef) -> None:
        self._enter("cancel_carrier_booking")
        tracking = _tracking(ref.shipment_id, ref.booking)
        if tracking in self.bookings:
            self.bookings[tracking] = "cancelled"

    @activity.defn(name="change_address")
    async def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        self._enter("change_address")
        self.address_asks.append(request)
        if self.address_stall:
            await asyncio.sleep(self.address_stall)
        if (reason := self.address_refusals.get(request.warehouse)) is not None:
            return AddressChangeAnswer(accepted=False, reason=reason)
        return AddressChangeAnswer(accepted=True, reason="fine")

    @activity.defn(name="relabel_shipment")
    async def relabel_shipment(self, request: RelabelRequest) -> LabelResult:
        self._enter("relabel_shipment")
        ship = ShipRequest(
            order_id=request.order_id,
            shipment_id=request.shipment_id,
            warehouse=request.warehouse,
            weight_g=request.weight_g,
            address=request.address,
        )
        self._book(ship)  # the city, and the carrier's refusal of a postal code
        tracking = _tracking(request.shipment_id, request.booking)
        self.bookings.setdefault(tracking, "booked")
        old = _tracking(request.shipment_id, request.replaces)
        if old in self.bookings:
            self.bookings[old] = "cancelled"
        return LabelResult(carrier="FakeExpress", tracking_number=tracking, label_ref=f"LBL-{tracking}")

    @activity.defn(name="record_delivery")
    async def record_delivery(self, record: DeliveryRecord) -> None:
        self._enter("record_delivery")

    @activity.defn(name="release_shipment")
    async def release_shipment(self, request: FulfilmentRequest) -> None:
        self._enter("release_shipment")
        if all(r.shipment_id != request.shipment_id for r in self.released):
            self.released.append(request)
        if self.sandbox_parties:
            assert self.client is not None
            job = SandboxShipment(
                request=request, pick_time=_seconds(3), pack_time=_seconds(3), short_pick_rate=0.0
            )
            await self.client.start_workflow(
                SANDBOX_WAREHOUSE_WORKFLOW,
                job,
                id=sandbox_warehouse_workflow_id(request.shipment_id),
                task_queue=self.task_queue,
            )

    @activity.defn(name="record_pack")
    async def record_pack(self, record: PackRecord) -> PackResult:
        self._enter("record_pack")
        return PackResult(weight_g=sum(record.parcels_g), label=f"LABEL {record.shipment_id}")

    @activity.defn(name="book_carrier")
    async def book_carrier(self, request: ShipRequest) -> LabelResult:
        self._enter("book_carrier")
        tracking = self._book(request)
        if request.track and self.sandbox_parties:
            await self._start_carrier(tracking, request.order_id, request.shipment_id)
        return LabelResult(carrier="FakeExpress", tracking_number=tracking, label_ref=f"LBL-{tracking}")

    async def _start_carrier(self, tracking: str, order_id: str, shipment_id: str) -> None:
        assert self.client is not None
        parcel = SandboxParcel(
            tracking_number=tracking,
            order_id=order_id,
            shipment_id=shipment_id,
            transit_time=_seconds(20),
            loss_rate=0.0,
        )
        await self.client.start_workflow(
            SANDBOX_CARRIER_WORKFLOW,
            parcel,
            id=sandbox_carrier_workflow_id(tracking),
            task_queue=self.task_queue,
        )

    @activity.defn(name="record_handover")
    async def record_handover(self, ref: ShipmentRef) -> HandoverResult:
        self._enter("record_handover")
        return HandoverResult(shipped_at=self.shipped.setdefault(ref.shipment_id, datetime.now(UTC)))

    @activity.defn(name="record_tracking_event")
    async def record_tracking_event(self, record: TrackingRecord) -> None:
        self._enter("record_tracking_event")
        if all(r.event_id != record.event_id for r in self.tracking[record.tracking_number]):
            self.tracking[record.tracking_number].append(record)

    @activity.defn(name="record_claim")
    async def record_claim(self, claim: ClaimRecord) -> None:
        self._enter("record_claim")
        if all(c.shipment_id != claim.shipment_id for c in self.claims):
            self.claims.append(claim)

    # ---- returns ----

    @activity.defn(name="record_return")
    async def record_return(self, record: ReturnRecord) -> None:
        self._enter("record_return")
        self.returns.setdefault(record.rma, record)

    @activity.defn(name="receive_return")
    async def receive_return(self, receipt: ReceiptRecord) -> int:
        self._enter("receive_return")
        if receipt.rma in self.return_outcomes or receipt.condition.value != "good":
            return 0
        restocked = 0
        for line in self.returns[receipt.rma].lines:
            self._row(line.sku, line.warehouse).on_hand += line.quantity
            restocked += line.quantity
        self.return_outcomes[receipt.rma] = ReturnOutcome(
            order_id=receipt.order_id, rma=receipt.rma, status="requested", refund_amount=Decimal(0)
        )
        return restocked

    @activity.defn(name="close_return")
    async def close_return(self, outcome: ReturnOutcome) -> None:
        self._enter("close_return")
        self.return_outcomes[outcome.rma] = outcome

    # ---- replenishment ----

    @activity.defn(name="replenish_if_low")
    async def replenish_if_low(self, keys: list[StockKey]) -> list[str]:
        self._enter("replenish_if_low")
        started = []
        for key in self._low(keys):
            row = self.stock[(key.sku, key.warehouse)]
            started.append(await self._replenish(key.sku, key.warehouse, row.reorder_quantity))
        return started

    @activity.defn(name="replenish_for_backorders")
    async def replenish_for_backorders(self, skus: list[str]) -> list[str]:
        self._enter("replenish_for_backorders")
        return []  # what they wait for is on order already (the reserve step said so)

    async def _replenish(self, sku: str, warehouse: str, quantity: int) -> str:
        assert self.client is not None
        workflow_id = replenishment_workflow_id(sku, warehouse)
        if workflow_id not in self.replenishments:
            self.replenishments.append(workflow_id)
            await self.client.start_workflow(
                REPLENISHMENT_WORKFLOW,
                ReplenishRequest(
                    sku=sku, warehouse=warehouse, quantity=quantity, lead_time=timedelta(days=5)
                ),
                id=workflow_id,
                task_queue=self.task_queue,
            )
        return workflow_id

    @activity.defn(name="raise_purchase_order")
    async def raise_purchase_order(self, request: RaisePurchaseOrder) -> PurchaseOrderView:
        self._enter("raise_purchase_order")
        if request.po_id not in self.purchase_orders:
            self.purchase_orders[request.po_id] = PurchaseOrderView(
                id=request.po_id,
                sku=request.sku,
                warehouse=request.warehouse,
                quantity=request.quantity,
                status="open",
                created_at=datetime.now(UTC),
                expected_at=request.expected_at,
            )
            self.on_order[request.sku] = self.on_order.get(request.sku, 0) + request.quantity
        return self.purchase_orders[request.po_id]

    @activity.defn(name="receive_purchase_order")
    async def receive_purchase_order(self, request: ReceivePurchaseOrder) -> PurchaseOrderView:
        self._enter("receive_purchase_order")
        po = self.purchase_orders[request.po_id]
        if po.status != "received":
            self.receive_stock(po.sku, po.warehouse, request.quantity)
            po = po.model_copy(
                update={
                    "status": "received",
                    "received_at": datetime.now(UTC),
                    "received_quantity": request.quantity,
                }
            )
            self.purchase_orders[request.po_id] = po
        return po

    @activity.defn(name="release_backorders")
    async def release_backorders(self, skus: list[str]) -> list[str]:
        """Offer the stock to backordered orders, oldest first, through `retry_reservation` (as
        services/replenishment.release_backorders does)."""
        self._enter("release_backorders")
        assert self.client is not None
        served = []
        for order_id in list(self.backordered):
            handle = self.client.get_workflow_handle(f"order-{order_id}")
            try:
                if await handle.execute_update(OrderUpdate.retry_reservation, result_type=bool):
                    served.append(order_id)
            except Exception:  # no longer backordered: nothing to offer
                continue
        return served

    @activity.defn(name="low_stock")
    async def low_stock(self, keys: list[StockKey]) -> list[StockKey]:
        self._enter("low_stock")
        return self._low(keys)

    # ---- forecast ----

    @activity.defn(name="refresh_recommendations")
    async def refresh_recommendations(self, as_of: date) -> int:
        self._enter("refresh_recommendations")
        self.forecast_runs.append(as_of)
        return len({sku for sku, _ in self.stock})

    @activity.defn(name="apply_recommendations")
    async def apply_recommendations(self) -> Any:
        from models.forecast import ApplyResult

        self._enter("apply_recommendations")
        return ApplyResult(applied=[], unchanged=len(self.stock), skipped=[], replenishing=[])

    # ---- the sandbox parties' hands (they report through the client layer, as the real ones) ----

    async def _send(self, send: Any) -> ReportSent:
        try:
            outcome = await send
        except fulfilment_service.ReportTooEarly as exc:
            raise ApplicationError(str(exc), type="ReportTooEarly") from None
        except (Refused, fulfilment_service.UnknownShipment) as exc:
            return ReportSent(accepted=False, detail=str(exc))
        return ReportSent(accepted=True, detail=outcome.detail)

    @activity.defn(name="send_warehouse_report")
    async def send_warehouse_report(self, report: WarehouseReport) -> ReportSent:
        self._enter("send_warehouse_report")
        assert self.client is not None
        return await self._send(
            fulfilment_service.submit_warehouse_report(
                self.client, report, update_id=f"sandbox:{report.report_id}"
            )
        )

    @activity.defn(name="pack_and_report")
    async def pack_and_report(self, report: WarehouseReport) -> ReportSent:
        self._enter("pack_and_report")
        weight = self._weight([ShipmentLine(sku=x.sku, quantity=x.quantity) for x in report.lines])
        return await self.send_warehouse_report(report.model_copy(update={"parcels_g": [weight]}))

    @activity.defn(name="send_carrier_event")
    async def send_carrier_event(self, event: CarrierEvent) -> ReportSent:
        from models.fulfilment import ReportOutcome
        from models.workflow_names import order_id_of_shipment
        from services.orders import update_order

        self._enter("send_carrier_event")
        assert self.client is not None
        shipment_id = next(
            (s for s in self.shipped if f"TRK{s.replace('-', '')}" == event.tracking_number), None
        )
        if shipment_id is None:
            return ReportSent(accepted=False, detail=f"unknown tracking number {event.tracking_number}")
        return await self._send(
            update_order(
                self.client,
                order_id_of_shipment(shipment_id),
                OrderUpdate.carrier_event,
                ReportOutcome,
                event,
                update_id=f"sandbox:{event.event_id}",
            )
        )

    @activity.defn(name="collect_parcel")
    async def collect_parcel(self, parcel: ParcelRef) -> Pickup:
        self._enter("collect_parcel")
        if self.bookings.get(parcel.tracking_number) == "cancelled":
            return Pickup(collected=False)
        if parcel.shipment_id in self.shipped:
            origin = next(
                (r.warehouse for r in self.reservations if r.shipment_id == parcel.shipment_id), None
            )
            return Pickup(collected=True, origin=origin)
        raise ApplicationError(f"{parcel.tracking_number}: not handed over yet", type=NOT_HANDED_OVER)

    def activities(self) -> list[Any]:
        """Every activity, bound to this world (what worker.build_activities lists)."""
        return [
            getattr(self, name)
            for name in dir(type(self))
            if not name.startswith("_")
            and hasattr(getattr(type(self), name), "__temporal_activity_definition")
        ]


def _tracking(shipment_id: str, booking: str | None = None) -> str:
    """The fake carrier's tracking number of a shipment's booking (its first one: `ship:<shipment id>`)."""
    first = f"TRK{shipment_id.replace('-', '')}"
    suffix = (booking or "").rpartition(":relabel-")[2] if booking and ":relabel-" in booking else ""
    return f"{first}R{suffix}" if suffix else first


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)
