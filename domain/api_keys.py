"""API keys and roles: who may call the HTTP API, and as what.

A key is `oms_` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, so the database
never holds a usable key; the key itself is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError

from db import SessionFactory
from models import tables as t
from models.choices import Role

KEY_PREFIX = "oms_"


class ApiKeyError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (it goes into the audit log and the order's events) and role.
    `key_id` is the key's row: a console session remembers it instead of the key itself."""

    name: str
    role: Role
    key_id: int | None = None


@dataclass(frozen=True)
class CreatedKey:
    name: str
    role: Role
    key: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class KeyInfo:
    name: str
    role: Role
    created_at: str
    revoked_at: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(sessions: SessionFactory, name: str, role: Role) -> CreatedKey:
    name = name.strip()
    if not name or len(name) > 64:
        raise ApiKeyError("a key's name must be 1 to 64 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with sessions.begin() as session:
            if session.scalar(_active(name)) is not None:
                raise ApiKeyError(f"a key named {name!r} is already in use; revoke it first")
            session.add(t.ApiKey(name=name, role=role.value, key_hash=hash_key(key)))
    except IntegrityError:  # created concurrently under the same name
        raise ApiKeyError(f"a key named {name!r} is already in use; revoke it first") from None
    return CreatedKey(name=name, role=role, key=key)


def revoke_key(sessions: SessionFactory, name: str) -> None:
    with sessions.begin() as session:
        row = session.scalar(_active(name))
        if row is None:
            raise ApiKeyError(f"no key in use is named {name!r}")
        row.revoked_at = t.utcnow()


def list_keys(sessions: SessionFactory) -> list[KeyInfo]:
    with sessions() as session:
        rows = session.scalars(select(t.ApiKey).order_by(t.ApiKey.name, t.ApiKey.created_at))
        return [
            KeyInfo(
                name=r.name,
                role=Role(r.role),
                created_at=f"{r.created_at:%Y-%m-%d %H:%M:%S}",
                revoked_at=f"{r.revoked_at:%Y-%m-%d %H:%M:%S}" if r.revoked_at else None,
            )
            for r in rows
        ]


def authenticate(sessions: SessionFactory, key: str) -> Principal | None:
    """The principal of a key in use, or None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    with sessions() as session:
        row = session.scalar(
            select(t.ApiKey).where(t.ApiKey.key_hash == hash_key(key), t.ApiKey.revoked_at.is_(None))
        )
        return _principal(row) if row is not None else None


def principal_by_id(sessions: SessionFactory, key_id: int) -> Principal | None:
    """The principal of the key in use with this row id, or None once it is revoked (or never was)."""
    with sessions() as session:
        row = session.get(t.ApiKey, key_id)
        return _principal(row) if row is not None and row.revoked_at is None else None


def _principal(row: t.ApiKey) -> Principal:
    return Principal(name=row.name, role=Role(row.role), key_id=row.id)


def _active(name: str) -> Select[tuple[t.ApiKey]]:
    return select(t.ApiKey).where(t.ApiKey.name == name, t.ApiKey.revoked_at.is_(None))
