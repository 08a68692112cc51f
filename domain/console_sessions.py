"""The console's sessions, kept on the server so that signing out ends one for good: a copy of the cookie
is worth nothing once its row is ended, expired, or its key revoked.

A session id is 256 random bits, like an API key, so a plain SHA-256 of it is all that is stored: the
database never holds a usable session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update

from db import SessionFactory
from domain.api_keys import Principal, Role
from models import tables as t


def start_session(sessions: SessionFactory, who: Principal, ttl: timedelta) -> str:
    """A new session of `who`'s key for `ttl`; the session id, which only the cookie keeps."""
    if who.key_id is None:
        raise ValueError("a console session belongs to a stored API key")
    session_id = secrets.token_urlsafe(32)
    now = t.utcnow()
    with sessions.begin() as session:
        # sign-ins are rare and the expired rows few: prune them here rather than in a job of their own
        session.execute(delete(t.ConsoleSession).where(t.ConsoleSession.expires_at < now))
        session.add(
            t.ConsoleSession(
                session_hash=_hash(session_id), api_key_id=who.key_id, created_at=now, expires_at=now + ttl
            )
        )
    return session_id


def session_principal(sessions: SessionFactory, session_id: str) -> Principal | None:
    """Who the session belongs to while it is live (not ended, not expired) and its key is in use;
    else None. Checking the key here is what makes revoking a key end its sessions."""
    if len(session_id) > 100:
        return None
    query = (
        select(t.ApiKey)
        .join(t.ConsoleSession, t.ConsoleSession.api_key_id == t.ApiKey.id)
        .where(
            t.ConsoleSession.session_hash == _hash(session_id),
            t.ConsoleSession.ended_at.is_(None),
            t.ConsoleSession.expires_at > t.utcnow(),
            t.ApiKey.revoked_at.is_(None),
        )
    )
    with sessions() as session:
        key = session.scalar(query)
        return Principal(name=key.name, role=Role(key.role), key_id=key.id) if key is not None else None


def end_session(sessions: SessionFactory, session_id: str) -> None:
    """Sign-out: the session is over, whoever holds a copy of its cookie (ending it twice is a no-op)."""
    with sessions.begin() as session:
        session.execute(
            update(t.ConsoleSession)
            .where(t.ConsoleSession.session_hash == _hash(session_id), t.ConsoleSession.ended_at.is_(None))
            .values(ended_at=t.utcnow())
        )


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
