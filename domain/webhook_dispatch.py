"""The webhook outbox's sending side, over the database: which deliveries are due, and what an attempt
came to (retry with backoff, give up, disable the subscription). The HTTP call is the dispatcher's
(services/webhook_dispatcher.py); every function here takes `now`, so a test can move the clock.

Order per subscription and ordering key (an order, or a SKU in a warehouse): a delivery is due only when
no earlier delivery with the same key to the same subscription is still pending, so event N+1 never
reaches a subscriber before N was delivered or given up. A claimed delivery is leased (its next attempt
moved `lease` ahead) rather than locked while the request runs: no transaction stays open across the
network, and a dispatcher that dies mid-request leaves it to be tried again when the lease ends (at
least once: a subscriber deduplicates on the `webhook-id`)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from config import Settings
from db import SessionFactory
from domain.webhook_signing import old_secret_signs
from models import tables as t
from models.webhooks import DeliveryStatus

log = logging.getLogger("oms.webhooks")
EXCERPT = 300  # characters of a response body kept in the delivery log
_PENDING = DeliveryStatus.pending.value


@dataclass(frozen=True)
class RetryPolicy:
    base: timedelta  # the wait after the first failure, doubled after each one after it
    cap: timedelta  # the longest wait between two attempts
    retry_for: timedelta  # a delivery failing this long after its first attempt is given up
    disable_after: timedelta  # a subscription failing this long without a success is disabled
    lease: timedelta  # how long a claimed delivery is left to the dispatcher that claimed it

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        timeout = settings.webhook_timeout
        return cls(
            base=settings.webhook_retry_base,
            cap=settings.webhook_retry_cap,
            retry_for=settings.webhook_retry_for,
            disable_after=settings.webhook_disable_after,
            lease=timeout * 2 + timedelta(seconds=5),  # the request's timeout, DNS, and the log's write
        )

    def backoff(self, failures: int) -> timedelta:
        """The wait after `failures` failed attempts in a row: base, 2 base, 4 base ... up to the cap."""
        return min(self.cap, self.base * 2 ** min(failures - 1, 40))


@dataclass(frozen=True)
class Due:
    """A claimed delivery: what one attempt sends."""

    delivery_id: int
    message_id: str
    subscription_id: str
    url: str
    secrets: tuple[str, ...]  # the subscription's secret, and the one before a rotation while it still signs
    body: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to; `status_code` None: no HTTP answer (refused target, connection, timeout)."""

    status_code: int | None
    latency_ms: int
    error: str | None = None
    response_excerpt: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class UnbuiltEvent:
    """An order's webhook event whose body waits for the order's view."""

    id: int
    type: str
    order_id: str
    occurred_at: datetime
    data: dict[str, Any]


def unbuilt_events(sessions: SessionFactory, limit: int, skip: Collection[str] = ()) -> list[UnbuiltEvent]:
    """The oldest order events still without a body, but those of the orders in `skip` (whose view did
    not come this round: they must not hold up the others)."""
    query = select(t.WebhookEvent).where(t.WebhookEvent.body.is_(None), t.WebhookEvent.order_id.is_not(None))
    if skip:
        query = query.where(t.WebhookEvent.order_id.not_in(list(skip)))
    with sessions() as session:
        rows = session.scalars(query.order_by(t.WebhookEvent.id).limit(limit)).all()
        return [UnbuiltEvent(r.id, r.type, r.order_id or "", r.occurred_at, dict(r.data)) for r in rows]


def set_body(sessions: SessionFactory, event_id: int, body: str) -> None:
    with sessions.begin() as session:
        row = session.get(t.WebhookEvent, event_id)
        if row is not None and row.body is None:  # two dispatchers built it: the first one stands
            row.body = body


def claim_due(sessions: SessionFactory, now: datetime, policy: RetryPolicy, limit: int) -> list[Due]:
    """Up to `limit` deliveries due now, each the first pending one of its subscription and ordering
    key, leased to the caller."""
    d, sub, event = t.WebhookDelivery, t.WebhookSubscription, t.WebhookEvent
    earlier = aliased(t.WebhookDelivery)
    waits_for_earlier = exists().where(
        earlier.subscription_id == d.subscription_id,
        earlier.ordering_key == d.ordering_key,
        earlier.status == _PENDING,
        earlier.id < d.id,
    )
    with sessions.begin() as session:
        rows = session.execute(
            select(d, sub.url, sub.secret, sub.previous_secret, sub.previous_secret_until, event.body)
            .join(sub, sub.id == d.subscription_id)
            .join(event, event.id == d.event_id)
            .where(
                d.status == _PENDING,
                d.next_attempt_at <= now,
                sub.removed_at.is_(None),
                sub.disabled_at.is_(None),
                event.body.is_not(None),
                ~waits_for_earlier,
            )
            .order_by(d.id)
            .limit(limit)
            # two dispatchers (two workers) never claim the same delivery (PostgreSQL; SQLite has one
            # writer at a time anyway)
            .with_for_update(of=d, skip_locked=True)
        ).all()
        claimed = []
        for delivery, url, secret, previous, previous_until, body in rows:
            still_signs = previous is not None and old_secret_signs(previous_until, now)
            delivery.next_attempt_at = now + policy.lease
            if delivery.first_attempt_at is None:
                delivery.first_attempt_at = now
            claimed.append(
                Due(
                    delivery.id,
                    delivery.message_id,
                    delivery.subscription_id,
                    url,
                    (secret, previous) if still_signs else (secret,),
                    body,
                    delivery.attempts + 1,
                )
            )
        return claimed


def record_outcome(
    sessions: SessionFactory, due: Due, outcome: Outcome, now: datetime, policy: RetryPolicy
) -> DeliveryStatus:
    """Log the attempt; a success delivers, a failure waits its backoff, or gives the delivery up after
    `retry_for`; a subscription failing for `disable_after` is disabled (the dashboard's needs-attention
    list shows it). Returns the delivery's status now."""
    with sessions.begin() as session:
        delivery = session.get(t.WebhookDelivery, due.delivery_id, with_for_update=True)
        subscription = session.get(t.WebhookSubscription, due.subscription_id, with_for_update=True)
        assert delivery is not None and subscription is not None  # rows are never deleted
        delivery.attempts += 1
        session.add(
            t.WebhookAttempt(
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                at=now,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                error=(outcome.error or "")[:500] or None,
                response_excerpt=(outcome.response_excerpt or "")[:EXCERPT] or None,
            )
        )
        delivery.last_status_code = outcome.status_code
        if delivery.status != _PENDING:  # delivered meanwhile by another dispatcher: only logged
            return DeliveryStatus(delivery.status)
        if outcome.ok:
            delivery.status, delivery.delivered_at = DeliveryStatus.delivered.value, now
            subscription.failing_since = None
            return DeliveryStatus.delivered
        subscription.failing_since = subscription.failing_since or now
        if now - (delivery.first_attempt_at or now) >= policy.retry_for:
            delivery.status = DeliveryStatus.failed.value
        else:
            delivery.next_attempt_at = now + policy.backoff(delivery.attempts)
        if subscription.disabled_at is None and now - subscription.failing_since >= policy.disable_after:
            subscription.disabled_at = now
            subscription.disabled_reason = (
                f"every delivery failed since {subscription.failing_since:%Y-%m-%d %H:%M} UTC; last: "
                f"{_what_failed(outcome)}"
            )[:300]
            log.warning(
                "webhook subscription %s (%s) disabled: %s",
                subscription.id,
                subscription.url,
                subscription.disabled_reason,
            )
        return DeliveryStatus(delivery.status)


def _what_failed(outcome: Outcome) -> str:
    return (
        f"HTTP {outcome.status_code}" if outcome.status_code is not None else (outcome.error or "no answer")
    )
