"""Customer and support messages, rendered into the notification outbox (once per idempotency key): a
customer's in text and HTML, both closing with their order and its tracking link; support's in text."""

from __future__ import annotations

from string import Template

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity

from config import Settings
from db import SessionFactory
from domain.customer_mail import order_summary, render_html
from domain.tracking_links import TrackingLinks
from models import tables as t
from models.steps import NotificationKind, NotificationRequest

SUPPORT_ADDRESS = "support@oms.example"

# kind -> (subject, body); $placeholders come from the request context plus order_id and name.
TEMPLATES: dict[NotificationKind, tuple[str, str]] = {
    NotificationKind.order_confirmed: (
        "Your order $order_id is confirmed",
        # the lines, total and tracking link follow, as in every customer's message (domain/customer_mail.py)
        "Hello $name,\n\nthank you for your order $order_id.\nExpected delivery: $expected_delivery\n",
    ),
    NotificationKind.order_rejected: (
        "We could not accept your order $order_id",
        "Hello $name,\n\nwe are sorry: your order $order_id could not be accepted ($reason).\n"
        "Nothing has been charged.\n",
    ),
    NotificationKind.order_shipped: (
        "Your order $order_id is on its way",
        "Hello $name,\n\nyour parcel $shipment_id left our $warehouse warehouse with $carrier.\n"
        "Tracking number: $tracking_number\n",
    ),
    NotificationKind.order_delivered: (
        "Your order $order_id was delivered - how did we do?",
        "Hello $name,\n\nyour parcel $shipment_id was delivered. We would love your feedback: "
        "rate your order from 1 to 5 by replying to this message.\n",
    ),
    NotificationKind.order_on_hold: (
        "Your order $order_id is being reviewed",
        "Hello $name,\n\nyour order $order_id needs a short review before we send it. Your card is authorized, "
        "not charged. We will be in touch shortly.\n",
    ),
    NotificationKind.order_backordered: (
        "Your order $order_id is backordered",
        "Hello $name,\n\nsome items of your order $order_id ($skus) are out of stock right now. More are on the way "
        "and we will send your order as soon as they arrive. Your card is authorized, not charged.\n",
    ),
    NotificationKind.order_cancelled: (
        "Your order $order_id was cancelled",
        "Hello $name,\n\nyour order $order_id was cancelled: $reason.\n$money\n",
    ),
    NotificationKind.return_requested: (
        "We received your return request $rma",
        "Hello $name,\n\nwe received your request to return $lines ($rma). We will check it and write to "
        "you again: once it is approved, with the return instructions. Please do not send anything yet.\n",
    ),
    NotificationKind.return_declined: (
        "Your return request $rma",
        "Hello $name,\n\nwe are sorry: we cannot accept your request to return $lines ($rma): $why.\n"
        "Reply to this message if you would like us to look at it again.\n",
    ),
    NotificationKind.return_authorized: (
        "Return $rma for order $order_id",
        "Hello $name,\n\nwe have authorized your return $rma: $lines.\nPlease pack the items with the return "
        "number $rma written on the parcel and send it to our $warehouse warehouse within $receipt_days days.\n",
    ),
    NotificationKind.refund_issued: (
        "Refund for order $order_id",
        "Hello $name,\n\nwe received your return $rma and refunded $amount $currency to your card.\n",
    ),
    NotificationKind.order_edited: (
        "Your order $order_id was changed",
        "Hello $name,\n\nas asked, we changed your order $order_id: $change.\n"
        "Reply to this message if this was not you.\n",
    ),
    NotificationKind.goodwill_refund_issued: (
        "A refund for your order $order_id",
        "Hello $name,\n\nwe are sorry about $why. As a gesture of goodwill we have refunded $amount $currency "
        "to your card; it shows on your statement within a few days.\n",
    ),
    NotificationKind.return_expired: (
        "Return $rma for order $order_id has expired",
        "Hello $name,\n\nwe did not receive the parcel for return $rma in time, so the return is closed "
        "without a refund. Contact us if you did send it.\n",
    ),
    NotificationKind.exchange_shipped: (
        "Your replacement for order $order_id is on its way",
        "Hello $name,\n\nwe received return $rma and sent your replacement $sku with $carrier.\n"
        "Tracking number: $tracking_number\n$money\n",
    ),
    NotificationKind.lines_cancelled: (
        "Part of your order $order_id could not be sent",
        "Hello $name,\n\nwe are sorry: $lines could not be found in our warehouse and will not be sent. "
        "You will not be charged for them ($money).\n",
    ),
    NotificationKind.lines_cancelled_by_request: (
        "Part of your order $order_id was cancelled",
        "Hello $name,\n\nas requested, $lines of your order were cancelled ($reason) and will not be sent. "
        "You will not be charged for them ($money). The rest of your order goes on as planned.\n",
    ),
    NotificationKind.parcel_lost: (
        "[support] Order $order_id: parcel $shipment_id $trouble",
        "Parcel $shipment_id ($carrier $tracking_number) of order $order_id: $trouble.\n"
        "Choose: starter.py resolve $order_id $shipment_id --reship | --refund. With no choice by "
        "$deadline the order is refunded for it.\n",
    ),
    NotificationKind.parcel_refunded: (
        "About your parcel $shipment_id (order $order_id)",
        "Hello $name,\n\nyour parcel $shipment_id did not reach you ($trouble). We have refunded $money "
        "to your card.\n",
    ),
    NotificationKind.parcel_reshipped: (
        "A new parcel for order $order_id is on its way to the warehouse",
        "Hello $name,\n\nyour parcel $shipment_id did not reach you ($trouble), so we are sending the same "
        "items again as $new_shipments. You will not be charged again.\n",
    ),
    NotificationKind.compensation_failed: (
        "[support] Order $order_id needs attention: compensation failed",
        "Undoing '$what' for order $order_id gave up after repeated failures: $error\n"
        "Money or stock may be out of place; please resolve it by hand.\n",
    ),
    NotificationKind.delivery_overdue: (
        "[support] Order $order_id delivery overdue",
        "Order $order_id was shipped but has no delivery confirmation after $sla. Please contact $carrier "
        "about $tracking_numbers.\n",
    ),
}


class Outbox:
    """Renders a message into the notification outbox (once per idempotency key), inside the caller's
    transaction: the row is written with the step that causes it."""

    def __init__(self, settings: Settings | None = None) -> None:
        """With `settings`, a customer's message carries their tracking link (OMS_PUBLIC_URL and the
        session secret, read here, once, when the worker is built)."""
        self._links = TrackingLinks.from_settings(settings) if settings is not None else None

    def put(self, session: Session, request: NotificationRequest) -> int:
        """The outbox row id (the same id on a repeat)."""
        existing = session.scalar(
            select(t.Notification.id).where(t.Notification.idempotency_key == request.idempotency_key)
        )
        if existing is not None:
            return existing
        name, email = session.execute(
            select(t.Customer.name, t.Customer.email)
            .join(t.Order, t.Order.customer_id == t.Customer.id)
            .where(t.Order.id == request.order_id)
        ).one()
        subject_template, body_template = TEMPLATES[request.kind]
        values = {"order_id": request.order_id, "name": name, **request.context}
        subject = Template(subject_template).safe_substitute(values)
        body = Template(body_template).safe_substitute(values)
        html = None
        if not request.to_support:
            link = self._links.url(request.order_id) if self._links is not None else None
            summary = order_summary(session, request.order_id, link)
            html = render_html(subject, body, summary)
            body = f"{body}\n{summary.text()}"
        row = t.Notification(
            order_id=request.order_id,
            kind=request.kind,
            recipient=SUPPORT_ADDRESS if request.to_support else email,
            subject=subject,
            body=body,
            html_body=html,
            idempotency_key=request.idempotency_key,
        )
        session.add(row)
        session.flush()
        return row.id


class NotificationActivities:
    def __init__(self, sessions: SessionFactory, settings: Settings | None = None) -> None:
        self._sessions = sessions
        self._outbox = Outbox(settings)

    @activity.defn
    def send_notification(self, request: NotificationRequest) -> int:
        """Render the message and put it in the outbox (orders placed before the outbox was written
        with their events; see OrderActivities.record_events)."""
        with self._sessions.begin() as session:
            return self._outbox.put(session, request)
