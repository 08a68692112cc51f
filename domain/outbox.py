"""The notification outbox's dispatcher: messages are written in the same transaction as the order
events that cause them (activities/orders.py record_events); this sends what is not sent yet.

At least once: a message is marked sent after the mailer took it, in the transaction that holds its
row (`FOR UPDATE SKIP LOCKED`: two dispatchers never send the same message at the same time), so a
crash in between sends it again, with the same outbox id and idempotency key (the SMTP mailer's
Message-ID is made of them). One message per transaction: a crash repeats at most that one.

What the mailer says decides what follows (adapters/mailer.py):
- `MailRefused` (a 5xx): the message is given up (`failed_at`, `failure_code`), never retried; the
  order shows in needs attention (domain/dashboard.py) and its page's story.
- `MailDeferred` (a 4xx for this message): it waits, `attempts` doubling its wait from `first_retry`
  up to `MAX_RETRY_WAIT`; the round goes on with the next message.
- anything else (connection refused, a timeout: the service is away): the message waits as above and
  the round stops, so an outage costs one attempt per round, not one per waiting message.
A message still failing for a passing reason `GIVE_UP_AFTER` after it was written is given up too
(`retries_exhausted`): a mail server keeps trying for days, then bounces.

Support may send a message given up again (`send_again`), to a corrected address: it waits its turn as
a new one would, and its give-up window starts again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adapters.mailer import MailDeferred, Mailer, MailFailure, MailRefused, OutgoingMessage
from db import SessionFactory
from models import tables as t

log = logging.getLogger("oms.outbox")
BATCH = 100  # messages per round
MAX_RETRY_WAIT = timedelta(minutes=15)
GIVE_UP_AFTER = timedelta(days=2)
_ERROR_LIMIT = 500  # characters of a failure's text kept on the row


class Outcome(StrEnum):
    sent = "sent"
    failed = "failed"  # given up
    deferred = "deferred"  # waits; the round goes on
    unavailable = "unavailable"  # waits; the round stops


@dataclass(frozen=True)
class Retry:
    """How long a message that failed for a passing reason waits: `first`, doubling per attempt, at
    most MAX_RETRY_WAIT."""

    first: timedelta = timedelta(seconds=1)

    def wait(self, attempts: int) -> timedelta:
        return min(self.first * 2 ** min(attempts - 1, 30), MAX_RETRY_WAIT)


def dispatch_pending(
    sessions: SessionFactory,
    mailer: Mailer,
    limit: int = BATCH,
    retry: Retry = Retry(),
    now: datetime | None = None,
) -> int:
    """Send up to `limit` messages that are due, oldest first; returns how many were sent. `now`
    (default: the clock) decides which waiting messages are due."""
    sent = 0
    for _ in range(limit):
        outcome = _dispatch_one(sessions, mailer, retry, now or datetime.now(UTC))
        if outcome is None or outcome == Outcome.unavailable:
            break
        if outcome == Outcome.sent:
            sent += 1
    return sent


def _dispatch_one(sessions: SessionFactory, mailer: Mailer, retry: Retry, now: datetime) -> Outcome | None:
    """Send the oldest due message, in a transaction holding its row; None when none is due."""
    with sessions.begin() as session:
        row = session.scalars(
            select(t.Notification)
            .where(
                t.Notification.sent_at.is_(None),
                t.Notification.failed_at.is_(None),
                or_(t.Notification.next_attempt_at.is_(None), t.Notification.next_attempt_at <= now),
            )
            .order_by(t.Notification.id)
            .limit(1)
            # another dispatcher (another worker) skips the row this one holds (PostgreSQL; SQLite has
            # one writer anyway)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        try:
            mailer.send(_outgoing(row))
        except MailRefused as exc:
            _give_up(row, exc.failure, exc.reason)
            return Outcome.failed
        except MailDeferred as exc:
            return _wait(row, retry, f"deferred: {exc}", Outcome.deferred)
        except Exception as exc:  # noqa: BLE001 - the service is away: it and the rest wait
            return _wait(row, retry, f"{type(exc).__name__}: {exc}", Outcome.unavailable)
        row.sent_at = datetime.now(UTC)
        return Outcome.sent


def _outgoing(row: t.Notification) -> OutgoingMessage:
    return OutgoingMessage(row.id, row.idempotency_key, row.recipient, row.subject, row.body, row.html_body)


def _wait(row: t.Notification, retry: Retry, error: str, outcome: Outcome) -> Outcome:
    now = datetime.now(UTC)
    if now - (row.resent_at or row.created_at) > GIVE_UP_AFTER:
        _give_up(
            row, MailFailure.retries_exhausted, f"still failing after {GIVE_UP_AFTER.days} days: {error}"
        )
        return Outcome.failed
    row.attempts += 1
    row.next_attempt_at = now + retry.wait(row.attempts)
    row.last_error = error[:_ERROR_LIMIT]
    log.warning(
        "outbox message %s (%s) not sent, attempt %d, next at %s: %s",
        row.id,
        row.kind,
        row.attempts,
        f"{row.next_attempt_at:%H:%M:%S}",
        error,
    )
    return outcome


def _give_up(row: t.Notification, failure: MailFailure, reason: str) -> None:
    row.failed_at = datetime.now(UTC)
    row.failure_code = failure.value
    row.last_error = reason[:_ERROR_LIMIT]
    log.error(
        "outbox message %s (%s) of order %s given up (%s): %s",
        row.id,
        row.kind,
        row.order_id,
        failure,
        reason,
    )


class Delivery(StrEnum):
    """Where a message stands."""

    sent = "sent"
    waiting = "waiting"  # not sent yet: due, or waiting after a failure for a passing reason
    failed = "failed"  # given up


@dataclass(frozen=True)
class MessageState:
    """One outbox message of an order as support sees it (the console's order page)."""

    id: int
    kind: str
    recipient: str
    subject: str
    created_at: datetime
    delivery: Delivery
    at: datetime  # sent, given up, or written (waiting)
    attempts: int
    next_attempt_at: datetime | None
    failure_code: MailFailure | None
    last_error: str | None
    resent_by: str | None = None  # support sent it again after it was given up

    @property
    def failure_text(self) -> str:
        """The story's line for a message given up."""
        return f"{self.kind} to {self.recipient} not delivered ({self.failure_code}): {self.last_error}"


def order_messages(session: Session, order_id: str) -> list[MessageState]:
    """An order's messages, in the order they were written."""
    rows = session.scalars(
        select(t.Notification).where(t.Notification.order_id == order_id).order_by(t.Notification.id)
    )
    return [_state(row) for row in rows]


def failed_messages(session: Session, order_id: str | None = None) -> list[MessageState]:
    """Messages given up, oldest first: of one order, or of all."""
    query = select(t.Notification).where(t.Notification.failed_at.is_not(None))
    if order_id is not None:
        query = query.where(t.Notification.order_id == order_id)
    return [
        _state(row) for row in session.scalars(query.order_by(t.Notification.failed_at, t.Notification.id))
    ]


class NotGivenUp(Exception):
    """Only a message given up can be sent again: this one was sent, or is still being tried."""


def send_again(
    session: Session, order_id: str, message_id: int, by: str, to: str | None = None
) -> MessageState:
    """Send a message given up once more (to `to`, a corrected address, if given): it waits its turn
    like a new one, its tries and failure cleared. LookupError: not a message of this order."""
    row = session.get(t.Notification, message_id, with_for_update=True)
    if row is None or row.order_id != order_id:
        raise LookupError(f"order {order_id} has no message {message_id}")
    if row.failed_at is None:
        state = "was sent" if row.sent_at is not None else "is still being tried"
        raise NotGivenUp(f"message {message_id} ({row.kind}) {state}: only a message given up is sent again")
    row.recipient = to or row.recipient
    row.failed_at = row.failure_code = row.last_error = row.next_attempt_at = None
    row.attempts = 0
    row.resent_at, row.resent_by = datetime.now(UTC), by
    log.info(
        "outbox message %s (%s) of order %s sent again by %s to %s",
        row.id,
        row.kind,
        order_id,
        by,
        row.recipient,
    )
    return _state(row)


def _state(row: t.Notification) -> MessageState:
    if row.sent_at is not None:
        delivery, at = Delivery.sent, row.sent_at
    elif row.failed_at is not None:
        delivery, at = Delivery.failed, row.failed_at
    else:
        delivery, at = Delivery.waiting, row.created_at
    return MessageState(
        id=row.id,
        kind=row.kind,
        recipient=row.recipient,
        subject=row.subject,
        created_at=row.created_at,
        delivery=delivery,
        at=at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        failure_code=MailFailure(row.failure_code) if row.failure_code else None,
        last_error=row.last_error,
        resent_by=row.resent_by,
    )
