"""The notification outbox's dispatcher: messages are written in the same transaction as the order
events that cause them (activities/orders.py record_events); this sends what is not sent yet.

At least once: a message is marked sent after the mailer took it, so a crash in between sends it
again (with the same outbox id and idempotency key, which a real provider deduplicates on)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select

from adapters.mailer import Mailer, OutgoingMessage
from db import SessionFactory
from models import tables as t

log = logging.getLogger("oms.outbox")
BATCH = 100  # messages per transaction


def dispatch_pending(sessions: SessionFactory, mailer: Mailer, limit: int = BATCH) -> int:
    """Send up to `limit` unsent messages, oldest first; returns how many were sent. A message the
    mailer refuses stays unsent (and stops this round, keeping the order of what follows)."""
    with sessions.begin() as session:
        rows = session.scalars(
            select(t.Notification)
            .where(t.Notification.sent_at.is_(None))
            .order_by(t.Notification.id)
            .limit(limit)
            # two dispatchers (two workers) never send the same message at the same time (PostgreSQL;
            # SQLite has one writer anyway)
            .with_for_update(skip_locked=True)
        ).all()
        sent = 0
        for row in rows:
            message = OutgoingMessage(row.id, row.idempotency_key, row.recipient, row.subject, row.body)
            try:
                mailer.send(message)
            except Exception as exc:  # noqa: BLE001 - any failure leaves it for the next round
                log.warning("outbox message %s (%s) not sent, will retry: %s", row.id, row.kind, exc)
                break
            row.sent_at = datetime.now(UTC)
            sent += 1
        return sent
