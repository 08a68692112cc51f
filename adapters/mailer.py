"""Where the notification outbox's messages go: the interface a real e-mail service implements (the
sandbox's, which accepts every message, is sandbox/mailer.py; SMTP's is adapters/smtp_mailer.py), and
the two ways a mailer says no, which the dispatcher (domain/outbox.py) treats differently."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    id: int  # the outbox row: a provider that deduplicates takes it (or the key) as the message id
    idempotency_key: str
    recipient: str
    subject: str
    body: str  # the plain-text part
    html_body: str | None = None  # the HTML alternative; None for support's messages and older rows


class MailFailure(StrEnum):
    """Why a message was given up (`notifications.failure_code`): never retried after it."""

    recipient_refused = "recipient_refused"  # the server refused the address (5xx at RCPT TO)
    message_refused = "message_refused"  # the server refused the message itself (5xx at DATA)
    retries_exhausted = "retries_exhausted"  # still failing for a passing reason after days of retries


class MailRefused(Exception):
    """A permanent refusal of this message: sending it again would fail the same way."""

    def __init__(self, failure: MailFailure, reason: str) -> None:
        super().__init__(reason)
        self.failure, self.reason = failure, reason


class MailDeferred(Exception):
    """This message cannot go now (a 4xx answer to it): try it again later, and the others now. Any
    other exception from `send` means the service itself is unreachable: the round stops there."""


class Mailer(Protocol):
    def send(self, message: OutgoingMessage) -> None:
        """Hand the message over; raise MailRefused (give it up), MailDeferred (retry it later), or
        anything else (the service is away: retry it and the rest later)."""
