"""Webhook subscriptions for the doors (the API's /webhooks, `starter.py webhooks`, the console):
subscribe (the SSRF guard first), list, remove, the delivery log, redeliver, rotate a secret. One implementation, so
every door refuses the same things with the same words."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from config import Settings
from db import SessionFactory
from domain import webhook_subscriptions as subs
from domain.webhook_subscriptions import UnknownWebhook, WebhookConflict
from domain.webhook_targets import TargetRefused, resolve
from models.webhooks import DeliveryView, WebhookCreated, WebhookIn, WebhookView

__all__ = ["TargetRefused", "UnknownWebhook", "WebhookConflict"]


async def subscribe(
    sessions: SessionFactory,
    settings: Settings,
    request: WebhookIn,
    by: str,
    idempotency_key: str | None = None,
) -> tuple[WebhookCreated, bool]:
    """A new subscription with its secret (shown this once), and whether it is new (False: the same
    Idempotency-Key's earlier answer). TargetRefused when the URL reaches no public address."""
    await asyncio.to_thread(resolve, request.url, settings.webhook_allow_private)
    new = subs.NewSubscription(request.url, request.event_types, request.description, by, idempotency_key)
    return await asyncio.to_thread(subs.create, sessions, new, datetime.now(UTC))


async def subscriptions(sessions: SessionFactory) -> list[WebhookView]:
    return await asyncio.to_thread(subs.subscriptions, sessions)


async def subscription(sessions: SessionFactory, subscription_id: str) -> WebhookView:
    return await asyncio.to_thread(subs.subscription, sessions, subscription_id)


async def unsubscribe(sessions: SessionFactory, subscription_id: str) -> WebhookView:
    return await asyncio.to_thread(subs.remove, sessions, subscription_id, datetime.now(UTC))


async def enable(sessions: SessionFactory, subscription_id: str) -> WebhookView:
    return await asyncio.to_thread(subs.enable, sessions, subscription_id, datetime.now(UTC))


async def deliveries(
    sessions: SessionFactory, subscription_id: str, limit: int = subs.DELIVERY_LIMIT
) -> list[DeliveryView]:
    return await asyncio.to_thread(subs.deliveries, sessions, subscription_id, limit)


async def rotate_secret(
    sessions: SessionFactory, settings: Settings, subscription_id: str, keep_old_for: timedelta | None = None
) -> WebhookCreated:
    """A new signing secret (shown this once); the old one signs next to it for `keep_old_for` (default
    OMS_WEBHOOK_SECRET_OVERLAP)."""
    overlap = settings.webhook_secret_overlap if keep_old_for is None else keep_old_for
    return await asyncio.to_thread(subs.rotate_secret, sessions, subscription_id, datetime.now(UTC), overlap)


async def redeliver(sessions: SessionFactory, delivery_id: int) -> DeliveryView:
    return await asyncio.to_thread(subs.redeliver, sessions, delivery_id, datetime.now(UTC))
