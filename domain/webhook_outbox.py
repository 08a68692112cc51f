"""The webhook outbox's writing side: what happened, for the subscriptions that want it, written in the
transaction that records it (like the notification outbox): an order's events in
`OrderActivities.record_events`, purchase orders in domain/stock.py. The dispatcher
(domain/webhook_dispatch.py, services/webhook_dispatcher.py) sends them.

An order event becomes a webhook when its type says so (`order_received` -> `order.created`, returns,
refunds) or when it moves the order into a status subscribers hear of (`confirmed`, `shipped`, ...),
whichever event did it (a backorder's stock arriving, a resolved parcel). Each row's `source_key` makes a
repeated batch add nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.webhook_payloads import message_body
from models import tables as t
from models.choices import OrderStatus, WebhookEventType
from models.events import OrderEventType
from models.steps import EventRecord
from models.webhooks import DeliveryStatus

BY_EVENT: dict[str, WebhookEventType] = {
    OrderEventType.order_received: WebhookEventType.order_created,
    OrderEventType.return_requested: WebhookEventType.return_requested,
    OrderEventType.return_declined: WebhookEventType.return_declined,
    OrderEventType.return_authorized: WebhookEventType.return_authorized,
    OrderEventType.return_received: WebhookEventType.return_received,
    OrderEventType.refund_issued: WebhookEventType.refund_issued,
}
BY_STATUS: dict[str, WebhookEventType] = {
    OrderStatus.confirmed: WebhookEventType.order_confirmed,
    OrderStatus.rejected: WebhookEventType.order_rejected,
    OrderStatus.cancelled: WebhookEventType.order_cancelled,
    OrderStatus.shipped: WebhookEventType.order_shipped,
    OrderStatus.delivered: WebhookEventType.order_delivered,
    OrderStatus.delivery_exception: WebhookEventType.order_delivery_exception,
    OrderStatus.completed: WebhookEventType.order_completed,
}


def status_before(session: Session, events: list[EventRecord]) -> str | None:
    """The orders row's status before a batch of one order's events is written: where the batch's first
    transition starts. Read only when the batch could make a webhook at all (a batch of picking and
    packing events costs no read)."""
    if not webhook_types(events, None):
        return None
    return session.scalar(select(t.Order.status).where(t.Order.id == events[0].order_id))


def webhook_types(
    events: Iterable[EventRecord], status_before: str | None
) -> list[tuple[EventRecord, WebhookEventType]]:
    """The webhooks a batch of one order's events makes, in the events' order."""
    found: list[tuple[EventRecord, WebhookEventType]] = []
    status = status_before
    for event in events:
        if event.type in BY_EVENT:
            found.append((event, BY_EVENT[event.type]))
        if event.status != status and event.status in BY_STATUS:
            found.append((event, BY_STATUS[event.status]))
        status = event.status
    return found


def put_order_events(session: Session, events: list[EventRecord], status_before: str | None) -> int:
    """Write the webhooks of one order's batch of events; how many events were written. The body waits
    for the dispatcher, which adds the order's view (a query of its workflow)."""
    found = webhook_types(events, status_before)
    if not found:
        return 0
    wanted = subscribers(session)  # once for the batch
    written = 0
    for event, kind in found:
        data = {
            "order_id": event.order_id,
            "event": {
                "seq": event.seq,
                "type": event.type,
                "at": event.at.isoformat(),
                "status": event.status,
                "reason_code": event.reason_code,
            },
        }
        written += _put(
            session,
            kind,
            wanted.get(kind, []),
            source_key=f"{event.order_id}:{event.seq}:{kind.value}",
            ordering_key=f"order:{event.order_id}",
            order_id=event.order_id,
            at=event.at,
            data=data,
            body=None,
        )
    return written


def put_stock_event(
    session: Session,
    kind: WebhookEventType,
    source_key: str,
    sku: str,
    warehouse: str,
    at: datetime,
    data: dict[str, Any],
) -> int:
    """A stock or purchase order webhook; its body is complete now. One SKU's and warehouse's go out
    in order (low, raised, received)."""
    data = {"sku": sku, "warehouse": warehouse, **data}
    return _put(
        session,
        kind,
        subscribers(session).get(kind, []),
        source_key=source_key,
        ordering_key=f"stock:{sku}@{warehouse}",
        order_id=None,
        at=at,
        data=data,
        body=message_body(kind, at, data),
    )


def subscribers(session: Session) -> dict[WebhookEventType, list[str]]:
    """The active subscriptions' ids by the event types they want. The table is small (a handful of
    rows): one read, sorted out here, is cheaper than a JSON query each dialect writes differently."""
    rows = session.execute(
        select(t.WebhookSubscription.id, t.WebhookSubscription.events)
        .where(t.WebhookSubscription.removed_at.is_(None), t.WebhookSubscription.disabled_at.is_(None))
        .order_by(t.WebhookSubscription.id)
    ).all()
    wanted: dict[WebhookEventType, list[str]] = {}
    for subscription_id, events in rows:
        for name in events:
            wanted.setdefault(WebhookEventType(name), []).append(subscription_id)
    return wanted


def _put(
    session: Session,
    kind: WebhookEventType,
    wanted: list[str],
    *,
    source_key: str,
    ordering_key: str,
    order_id: str | None,
    at: datetime,
    data: dict[str, Any],
    body: str | None,
) -> int:
    if not wanted:  # nobody listens: nothing is kept, nothing is asked of the workflow later
        return 0
    if session.scalar(select(t.WebhookEvent.id).where(t.WebhookEvent.source_key == source_key)) is not None:
        return 0  # a repeated batch (a retried step): written the first time
    row = t.WebhookEvent(
        source_key=source_key,
        type=kind.value,
        ordering_key=ordering_key,
        order_id=order_id,
        occurred_at=at,
        data=data,
        body=body,
    )
    session.add(row)
    session.flush()
    session.add_all(
        t.WebhookDelivery(
            event_id=row.id,
            subscription_id=subscription_id,
            ordering_key=ordering_key,
            message_id=f"msg_{uuid.uuid4().hex}",
            status=DeliveryStatus.pending.value,
            attempts=0,
            next_attempt_at=at,
        )
        for subscription_id in wanted
    )
    return 1
