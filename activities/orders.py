"""Recording orders, validating them against the catalog, the event log and feedback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import refuse
from activities.notifications import Outbox
from db import SessionFactory
from domain import webhook_outbox
from domain.screening import hold_reason
from models import tables as t
from models.events import ReasonCode
from models.orders import MAX_MONEY, LineIn, OrderInput, OrderStatus, PaymentStatus, PlaceOrder, PricedLine
from models.steps import (
    AddressEdit,
    Admission,
    ErrorType,
    EventBatch,
    EventRecord,
    FeedbackRecord,
    LineEditRecord,
    PricedOrder,
    PriceRequest,
    ScreenRequest,
)

CENT = Decimal("0.01")


class OrderActivities:
    def __init__(self, sessions: SessionFactory, outbox: Outbox | None = None) -> None:
        self._sessions = sessions
        self._outbox = outbox or Outbox()

    @activity.defn
    def admit_order(self, request: PlaceOrder) -> Admission:
        """Record, validate and screen in one step and one transaction: the checks an order passes
        before the gateway is asked; refusals are non-retryable. A refused order stays recorded: the
        refusal is raised once the record is committed."""
        refusal: ApplicationError | None = None
        with self._sessions.begin() as session:
            _record(session, request)
            try:
                priced = _priced(session, request)
            except ApplicationError as exc:
                refusal = exc
            else:
                _store_money(session, request.order_id, priced)
                hold = _hold_reason(session, ScreenRequest.of(request, priced.total))
        if refusal is not None:
            raise refusal
        code, reason = hold or (None, None)
        return Admission(priced=priced, hold_reason=reason, hold_code=code)

    @activity.defn
    def price_sku(self, request: PriceRequest) -> PricedLine:
        """The catalog price of one active SKU (for exchanges); refuses unknown or inactive SKUs."""
        with self._sessions() as session:
            product = session.get(t.Product, request.sku)
        if product is None or not product.active:
            raise refuse(
                ErrorType.invalid_order,
                f"SKU {request.sku} is unknown or not active",
                _code(ReasonCode.unknown_sku),
            )
        if product.currency != request.currency:
            raise refuse(
                ErrorType.invalid_order,
                f"SKU {request.sku} is sold in {product.currency}",
                _code(ReasonCode.price_mismatch),
            )
        price = Decimal(product.price).quantize(CENT)
        return PricedLine(sku=product.sku, name=product.name, quantity=1, unit_price=price, line_total=price)

    @activity.defn
    def record_address_edit(self, edit: AddressEdit) -> None:
        """An order edit's new shipping address on the orders row (what the label is printed from)."""
        with self._sessions.begin() as session:
            session.execute(
                update(t.Order).where(t.Order.id == edit.order_id).values(shipping_address=edit.address)
            )

    @activity.defn
    def record_line_edit(self, edit: LineEditRecord) -> None:
        """A line edit's lines and money on the orders row and in `order_lines` (reports, the journal's
        split and the customer's mail read them). Written as a whole: a repeat writes the same."""
        with self._sessions.begin() as session:
            session.execute(
                update(t.Order)
                .where(t.Order.id == edit.order_id)
                .values(
                    total=edit.total,
                    subtotal=edit.subtotal,
                    discounts=edit.discounts,
                    tax=edit.tax,
                )
            )
            session.execute(delete(t.OrderLine).where(t.OrderLine.order_id == edit.order_id))
            session.add_all(_order_lines(edit.order_id, edit.lines))

    @activity.defn
    def record_events(self, batch: EventBatch) -> None:
        """One workflow task's events and the messages they cause, in one transaction (idempotent: events
        by seq, messages by idempotency key). The orders row mirrors the last event. The webhooks the
        events make join the same transaction (domain/webhook_outbox.py)."""
        with self._sessions.begin() as session:
            before = webhook_outbox.status_before(session, batch.events)
            _write_events(session, batch.events)
            webhook_outbox.put_order_events(session, batch.events, before)
            for request in batch.notifications:
                self._outbox.put(session, request)

    @activity.defn
    def record_feedback(self, feedback: FeedbackRecord) -> None:
        with self._sessions.begin() as session:
            row = session.get(t.Feedback, feedback.order_id)
            if row is None:
                session.add(
                    t.Feedback(order_id=feedback.order_id, score=feedback.score, comment=feedback.comment)
                )
            else:  # the customer changed their mind: keep the latest
                row.score, row.comment = feedback.score, feedback.comment


def _record(session: Session, request: PlaceOrder) -> None:
    order = request.order
    if session.get(t.Order, request.order_id) is not None:
        return
    customer = session.get(t.Customer, order.customer.id)
    if customer is None:
        # Concurrent first orders of a new customer race for this row: the loser finds the winner's
        # (in a savepoint, so its own transaction goes on) instead of failing the step and retrying.
        try:
            with session.begin_nested():
                session.add(
                    t.Customer(
                        id=order.customer.id, name=order.customer.name, email=str(order.customer.email)
                    )
                )
        except IntegrityError:
            # Only the race is settled here: any other refusal (a NOT NULL, a check) is the data's.
            customer = session.get(t.Customer, order.customer.id, populate_existing=True)
            if customer is None:
                raise
        else:
            customer = session.get(t.Customer, order.customer.id)
        assert customer is not None
    customer.name, customer.email, customer.phone = (
        order.customer.name,
        str(order.customer.email),
        order.customer.phone,
    )
    session.add(
        t.Order(
            id=request.order_id,
            channel=order.channel.value,
            customer_id=order.customer.id,
            status=OrderStatus.received.value,
            payment_status=PaymentStatus.pending.value,
            currency=order.currency,
            shipping_address=order.shipping_address.model_dump(mode="json"),
            delivery_instructions=order.delivery_instructions,
            payment_method=order.payment.method,
            placed_at=request.placed_at,
        )
    )
    session.flush()
    session.add_all(_order_lines(request.order_id, order.lines))


def _order_lines(order_id: str, lines: Sequence[LineIn | PricedLine]) -> list[t.OrderLine]:
    """The `order_lines` rows of an order, numbered from 1 (as placed: the source's unit price, if any;
    as edited: the priced one)."""
    return [
        t.OrderLine(order_id=order_id, line_no=n, sku=x.sku, quantity=x.quantity, unit_price=x.unit_price)
        for n, x in enumerate(lines, start=1)
    ]


def _priced(session: Session, request: PlaceOrder) -> PricedOrder:
    try:  # the same rules the command line applies, for sources that start workflows directly
        order = OrderInput.model_validate(request.order.model_dump())
    except ValidationError as exc:
        raise refuse(ErrorType.invalid_order, f"invalid order: {exc.errors()[0]['msg']}") from exc
    lines, problems = _price_lines(session, order)
    if problems:  # the first problem's kind names the refusal
        raise refuse(ErrorType.invalid_order, "; ".join(text for _, text in problems), _code(problems[0][0]))
    priced = PricedOrder.of(order, lines)
    if priced.total > MAX_MONEY:  # at catalog prices: it would not fit the money columns (Numeric(12, 2))
        raise refuse(
            ErrorType.invalid_order, f"the order total {priced.total} is above the maximum {MAX_MONEY}"
        )
    return priced


def _store_money(session: Session, order_id: str, priced: PricedOrder) -> None:
    """The total's parts on the orders row, for the journal and the report (models/order_money.py).
    Set through the ORM, which writes nothing when a repeat brings the same figures (an UPDATE would
    move `updated_at`: the step must leave no trace on a retry)."""
    order = session.get(t.Order, order_id)
    assert order is not None  # _record wrote it in this transaction
    order.subtotal, order.discounts = priced.subtotal, priced.discounts
    order.shipping, order.shipping_tax = priced.shipping, priced.shipping_tax
    order.tax, order.taxes_included = priced.tax, priced.taxes_included


def _hold_reason(session: Session, request: ScreenRequest) -> tuple[ReasonCode, str] | None:
    blocked = session.get(t.BlockedEmail, request.email.lower())
    return hold_reason(
        request.email,
        request.total,
        request.review_above,
        blocked is not None,
        blocked.reason if blocked else None,
    )


def _write_events(session: Session, events: list[EventRecord]) -> None:
    if not events:
        return
    # The order's history decides what its events are. Events are numbered by the workflow, so a repeat
    # writes the same rows again and changes nothing; but a local step of a workflow task lost with its
    # worker may have written events the history never got (the task never completed), and the order
    # may then have gone another way (a cancellation came first): its events take those numbers over,
    # and what that lost task wrote beyond them goes.
    last = events[-1]
    statement = _upsert_insert(session)(t.OrderEvent).values(
        [
            {
                "order_id": e.order_id,
                "seq": e.seq,
                "at": e.at,
                "type": e.type,
                "detail": e.detail,
                "reason_code": e.reason_code,
            }
            for e in events
        ]
    )
    fields = ("at", "type", "detail", "reason_code")
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["order_id", "seq"],
            set_={name: statement.excluded[name] for name in fields},
            where=or_(
                *(getattr(t.OrderEvent, name).is_distinct_from(statement.excluded[name]) for name in fields)
            ),
        )
    )
    session.execute(
        delete(t.OrderEvent).where(t.OrderEvent.order_id == last.order_id, t.OrderEvent.seq > last.seq)
    )
    changes: dict[str, object] = {"status": last.status, "payment_status": last.payment_status}
    if last.total is not None:
        changes["total"] = last.total
    # One UPDATE, no read first; a row already showing these values is not touched, so a repeated
    # batch leaves `updated_at` as it was.
    session.execute(
        update(t.Order)
        .where(t.Order.id == last.order_id)
        .where(or_(*(getattr(t.Order, name).is_distinct_from(value) for name, value in changes.items())))
        .values(changes)
    )


def _code(code: ReasonCode) -> dict[str, str]:
    """The detail of an InvalidOrder refusal that names its finer reason (workflows/failures.py reads it)."""
    return {"reason_code": code.value}


def _price_lines(
    session: Session, order: OrderInput
) -> tuple[list[PricedLine], list[tuple[ReasonCode, str]]]:
    skus = {line.sku for line in order.lines}
    products = {p.sku: p for p in session.scalars(select(t.Product).where(t.Product.sku.in_(skus)))}
    lines: list[PricedLine] = []
    problems: list[tuple[ReasonCode, str]] = []
    for n, line in enumerate(order.lines, start=1):
        product = products.get(line.sku)
        if product is None:
            problems.append((ReasonCode.unknown_sku, f"line {n}: unknown SKU {line.sku}"))
            continue
        if not product.active:
            problems.append((ReasonCode.unknown_sku, f"line {n}: SKU {line.sku} is not active"))
            continue
        price = Decimal(product.price).quantize(CENT)
        if product.currency != order.currency:
            problems.append(
                (
                    ReasonCode.price_mismatch,
                    f"line {n}: SKU {line.sku} is sold in {product.currency}, order is in {order.currency}",
                )
            )
        if line.unit_price is not None and line.unit_price != price:
            problems.append(
                (
                    ReasonCode.price_mismatch,
                    f"line {n}: unit price {line.unit_price} for {line.sku} differs from catalog price {price}",
                )
            )
        lines.append(
            PricedLine(
                sku=line.sku,
                name=product.name,
                quantity=line.quantity,
                unit_price=price,
                line_total=(price * line.quantity).quantize(CENT),
            )
        )
    return lines, problems


def _upsert_insert(session: Session) -> Callable[..., Any]:
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL both do)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
