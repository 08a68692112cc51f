"""Webhook subscriptions as admins manage them, their delivery log and manual redelivery: what the
doors (services/webhooks.py) read and change in the database."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db import SessionFactory
from domain.webhook_signing import new_secret, old_secret_signs
from models import tables as t
from models.choices import WebhookEventType
from models.webhooks import (
    AttemptView,
    DeliveryStatus,
    DeliveryView,
    SubscriptionStatus,
    WebhookCreated,
    WebhookView,
)

DELIVERY_LIMIT = 50  # deliveries a listing shows by default, newest first


class UnknownWebhook(LookupError):
    pass


class WebhookConflict(RuntimeError):
    """A request that contradicts the state: an Idempotency-Key reused for another subscription, a
    redelivery to a removed or disabled one."""


@dataclass(frozen=True)
class NewSubscription:
    url: str
    events: list[WebhookEventType]
    description: str | None
    created_by: str
    idempotency_key: str | None = None


def create(sessions: SessionFactory, new: NewSubscription, now: datetime) -> tuple[WebhookCreated, bool]:
    """A new subscription and its secret; with an Idempotency-Key used before for the same URL and
    events, that subscription again (its secret too: the first answer may never have arrived) and
    False. Used for another, WebhookConflict."""
    with sessions.begin() as session:
        if new.idempotency_key is not None:
            earlier = session.scalar(
                select(t.WebhookSubscription).where(
                    t.WebhookSubscription.idempotency_key == new.idempotency_key
                )
            )
            if earlier is not None:
                if (earlier.url, earlier.events) != (new.url, [e.value for e in new.events]):
                    raise WebhookConflict(
                        f"the Idempotency-Key {new.idempotency_key!r} was used for another subscription"
                        f" ({earlier.id})"
                    )
                return _created(earlier), False
        row = t.WebhookSubscription(
            id=f"wh_{secrets.token_hex(8)}",
            url=new.url,
            events=[e.value for e in new.events],
            description=new.description,
            secret=new_secret(),
            created_at=now,
            created_by=new.created_by,
            idempotency_key=new.idempotency_key,
        )
        session.add(row)
        session.flush()
        return _created(row), True


def subscriptions(sessions: SessionFactory) -> list[WebhookView]:
    """Every subscription not removed, oldest first (never a secret)."""
    with sessions() as session:
        rows = session.scalars(
            select(t.WebhookSubscription)
            .where(t.WebhookSubscription.removed_at.is_(None))
            .order_by(t.WebhookSubscription.created_at, t.WebhookSubscription.id)
        ).all()
        return [view(row) for row in rows]


def subscription(sessions: SessionFactory, subscription_id: str) -> WebhookView:
    with sessions() as session:
        return view(_live(session.get(t.WebhookSubscription, subscription_id), subscription_id))


def remove(sessions: SessionFactory, subscription_id: str, now: datetime) -> WebhookView:
    """Stop sending to it. The row and its delivery log stay (what was sent, and when, remains
    readable); what was still pending is never sent."""
    with sessions.begin() as session:
        row = _live(session.get(t.WebhookSubscription, subscription_id), subscription_id)
        row.removed_at = now
        return view(row)


def enable(sessions: SessionFactory, subscription_id: str, now: datetime) -> WebhookView:
    """Send to a disabled subscription again (its endpoint answers again): what was pending when it was
    disabled goes out now, in order, each with a fresh retry window. Enabling an active one changes
    nothing. Events that happened while it was disabled were not kept for it."""
    with sessions.begin() as session:
        row = _live(session.get(t.WebhookSubscription, subscription_id), subscription_id)
        if row.disabled_at is None:
            return view(row)
        row.disabled_at = row.disabled_reason = row.failing_since = None
        for delivery in session.scalars(
            select(t.WebhookDelivery).where(
                t.WebhookDelivery.subscription_id == subscription_id,
                t.WebhookDelivery.status == DeliveryStatus.pending.value,
            )
        ):
            delivery.next_attempt_at, delivery.first_attempt_at = now, None
        return view(row)


def rotate_secret(
    sessions: SessionFactory, subscription_id: str, now: datetime, keep_old_for: timedelta
) -> WebhookCreated:
    """A new secret for the subscription (shown this once); the current one keeps signing next to it for
    `keep_old_for` (0: it stops now), so the receiver can switch to the new one without losing a message.
    The secret before an earlier rotation stops signing."""
    with sessions.begin() as session:
        row = _live(
            session.get(t.WebhookSubscription, subscription_id, with_for_update=True), subscription_id
        )
        overlap = keep_old_for > timedelta(0)
        row.previous_secret = row.secret if overlap else None
        row.previous_secret_until = now + keep_old_for if overlap else None
        row.secret = new_secret()
        return _created(row)


def disabled(sessions: SessionFactory) -> list[WebhookView]:
    """Subscriptions disabled for failing (the dashboard's needs-attention list)."""
    return [w for w in subscriptions(sessions) if w.status == SubscriptionStatus.disabled]


def deliveries(
    sessions: SessionFactory, subscription_id: str, limit: int = DELIVERY_LIMIT
) -> list[DeliveryView]:
    """The subscription's latest deliveries, newest first, each with its attempts."""
    with sessions() as session:
        if session.get(t.WebhookSubscription, subscription_id) is None:
            raise UnknownWebhook(f"unknown webhook subscription {subscription_id}")
        rows = session.execute(
            select(t.WebhookDelivery, t.WebhookEvent.type, t.WebhookEvent.order_id)
            .join(t.WebhookEvent, t.WebhookEvent.id == t.WebhookDelivery.event_id)
            .where(t.WebhookDelivery.subscription_id == subscription_id)
            .order_by(t.WebhookDelivery.id.desc())
            .limit(limit)
        ).all()
        ids = [d.id for d, _, _ in rows]
        attempts: dict[int, list[AttemptView]] = {i: [] for i in ids}
        for a in session.scalars(
            select(t.WebhookAttempt)
            .where(t.WebhookAttempt.delivery_id.in_(ids))
            .order_by(t.WebhookAttempt.id.desc())
        ):
            attempts[a.delivery_id].append(
                AttemptView(
                    attempt=a.attempt,
                    at=a.at,
                    status_code=a.status_code,
                    latency_ms=a.latency_ms,
                    error=a.error,
                    response_excerpt=a.response_excerpt,
                )
            )
        return [_delivery_view(d, kind, order_id, attempts[d.id]) for d, kind, order_id in rows]


def redeliver(sessions: SessionFactory, delivery_id: int, now: datetime) -> DeliveryView:
    """Send a delivery again now, under the same webhook-id (a subscriber that has it already can tell),
    with a fresh retry window. It takes its turn again among its order's deliveries."""
    with sessions.begin() as session:
        delivery = session.get(t.WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise UnknownWebhook(f"unknown webhook delivery {delivery_id}")
        subscription = session.get(t.WebhookSubscription, delivery.subscription_id)
        assert subscription is not None
        if subscription.removed_at is not None:
            raise WebhookConflict(f"subscription {subscription.id} was removed: nothing is sent to it")
        if subscription.disabled_at is not None:
            raise WebhookConflict(
                f"subscription {subscription.id} is disabled ({subscription.disabled_reason}); enable it"
                " once the endpoint answers"
            )
        delivery.status = DeliveryStatus.pending.value
        delivery.next_attempt_at, delivery.first_attempt_at = now, None
        event = session.get(t.WebhookEvent, delivery.event_id)
        assert event is not None
        return _delivery_view(delivery, event.type, event.order_id, [])


def view(row: t.WebhookSubscription) -> WebhookView:
    return WebhookView(
        id=row.id,
        url=row.url,
        events=[WebhookEventType(e) for e in row.events],
        description=row.description,
        status=SubscriptionStatus.disabled if row.disabled_at else SubscriptionStatus.active,
        created_at=row.created_at,
        created_by=row.created_by,
        failing_since=row.failing_since,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        previous_secret_until=row.previous_secret_until
        if old_secret_signs(row.previous_secret_until, datetime.now(UTC))
        else None,
    )


def _created(row: t.WebhookSubscription) -> WebhookCreated:
    return WebhookCreated(**view(row).model_dump(), secret=row.secret)


def _live(row: t.WebhookSubscription | None, subscription_id: str) -> t.WebhookSubscription:
    if row is None or row.removed_at is not None:
        raise UnknownWebhook(f"unknown webhook subscription {subscription_id}")
    return row


def _delivery_view(
    d: t.WebhookDelivery, kind: str, order_id: str | None, log: list[AttemptView]
) -> DeliveryView:
    return DeliveryView(
        id=d.id,
        webhook_id=d.message_id,
        subscription_id=d.subscription_id,
        event_type=WebhookEventType(kind),
        order_id=order_id,
        status=DeliveryStatus(d.status),
        attempts=d.attempts,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.pending.value else None,
        delivered_at=d.delivered_at,
        last_status_code=d.last_status_code,
        log=log,
    )
