"""The sandbox mailer (a `Mailer`, adapters/mailer.py): what `make run` and the tests send messages with."""

from __future__ import annotations

from adapters.mailer import OutgoingMessage


class SandboxMailer:
    """Accepts every message and keeps nothing: the outbox row (with its `sent_at`) is the record."""

    def send(self, message: OutgoingMessage) -> None:
        return None
