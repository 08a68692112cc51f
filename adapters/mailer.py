"""Where the notification outbox's messages go: the interface a real e-mail service implements (the
sandbox's, which accepts every message, is sandbox/mailer.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    id: int  # the outbox row: a provider that deduplicates takes it (or the key) as the message id
    idempotency_key: str
    recipient: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, message: OutgoingMessage) -> None:
        """Hand the message over; raise to leave it in the outbox for the next round."""
