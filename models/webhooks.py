"""Outbound webhooks' models: a subscription as admins create and read it, its deliveries and their
attempts (docs/webhooks.md). The tables are models/tables.py's `webhook_*`."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.choices import WebhookEventType
from models.orders import Text

MAX_URL = 2000  # the column's width; longer URLs are refused, not cut


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its turn, its next attempt, or a disabled subscription
    delivered = "delivered"  # the subscriber answered 2xx
    failed = "failed"  # given up: still failing after the retry window (OMS_WEBHOOK_RETRY_FOR)


class SubscriptionStatus(StrEnum):
    active = "active"
    disabled = "disabled"  # failing for OMS_WEBHOOK_DISABLE_AFTER: nothing is sent until it is added again


def check_url_syntax(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials; where it points is checked apart
    (domain/webhook_targets.py), since that needs DNS."""
    if len(url) > MAX_URL:
        raise ValueError(f"the URL is {len(url)} characters long, at most {MAX_URL}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"invalid URL {url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: it names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"invalid URL {url!r}: credentials in the URL are not taken (they would be logged)")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"invalid URL {url!r}: it contains blanks or control characters")
    return url


def parse_event_types(names: list[str]) -> list[WebhookEventType]:
    """The event types named, each once, in the order given; an unknown name is refused by name."""
    known = {t.value: t for t in WebhookEventType}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown event type {', '.join(repr(u) for u in unknown)}; known: {', '.join(known)}"
        )
    if not names:
        raise ValueError("name at least one event type")
    return list(dict.fromkeys(known[name] for name in names))


class WebhookIn(BaseModel):
    """`POST /webhooks`, `starter.py webhooks add`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL)
    events: list[str] = Field(max_length=len(WebhookEventType) * 2)
    description: Text | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url_syntax(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return [t.value for t in parse_event_types(value)]

    @property
    def event_types(self) -> list[WebhookEventType]:
        return [WebhookEventType(name) for name in self.events]


class WebhookView(BaseModel):
    """A subscription as GET shows it: never its secret."""

    id: str
    url: str
    events: list[WebhookEventType]
    description: str | None = None
    status: SubscriptionStatus
    created_at: datetime
    created_by: str
    failing_since: datetime | None = None  # the first failure since its last success
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    # after a rotation: until when the old secret still signs, next to the new one
    previous_secret_until: datetime | None = None


class WebhookCreated(WebhookView):
    """The answer to a new subscription or a rotation: its signing secret, shown this once (`whsec_` +
    base64)."""

    secret: str


class RotateSecretIn(BaseModel):
    """`POST /webhooks/{id}/rotate-secret`: how long the old secret still signs next to the new one
    (default OMS_WEBHOOK_SECRET_OVERLAP, 24 h; 0 for a leaked secret: it stops at once)."""

    model_config = ConfigDict(extra="forbid")

    keep_old_for_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)

    def keep_old_for(self) -> timedelta | None:
        """The overlap asked for (None: the setting's)."""
        seconds = self.keep_old_for_seconds
        return timedelta(seconds=seconds) if seconds is not None else None


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = None  # None: no answer (refused target, connection, timeout)
    latency_ms: int
    error: str | None = None
    response_excerpt: str | None = None


class DeliveryView(BaseModel):
    """One event for one subscription: the message (`webhook_id` = the `webhook-id` header, the same at
    every attempt and redelivery) and its attempts, newest first."""

    id: int
    webhook_id: str
    subscription_id: str
    event_type: WebhookEventType
    order_id: str | None = None
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    log: list[AttemptView] = []
