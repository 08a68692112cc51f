"""The review blocklist: orders from these customer e-mails are held for support to look at."""

from __future__ import annotations

from sqlalchemy import select

from db import SessionFactory
from models import tables as t


def update_blocklist(
    sessions: SessionFactory, action: str, email: str | None, reason: str | None = None
) -> list[tuple[str, str]]:
    """add / remove an e-mail (case-insensitive), or list the entries."""
    with sessions.begin() as session:
        if action == "add" and email:
            row = session.get(t.BlockedEmail, email.lower()) or t.BlockedEmail(email=email.lower())
            row.reason = reason
            session.add(row)
        elif action == "remove" and email:
            entry = session.get(t.BlockedEmail, email.lower())
            if entry is not None:
                session.delete(entry)
        rows = session.scalars(select(t.BlockedEmail).order_by(t.BlockedEmail.email))
        return [(row.email, row.reason or "") for row in rows]
