"""Idempotency keys of the HTTP API's mutating doors, in the database (table `idempotency_keys`).

A request with a key first claims it: one row per (caller, key), so that of two racing duplicates one
inserts and the other finds the row (the unique constraint decides, on every database). The claimer runs
the request and then either records its answer (`complete`) or gives the key back (`release`). Whoever
finds the row instead gets the recorded answer (`Replay`), is told the key was used for another request
(`Conflict`), or that the first is still running (`InProgress`, and waits: api/idempotency.py).

Rows live until `expires_at` (created + the TTL); an expired row counts as absent and is pruned.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from db import SessionFactory
from models import tables as t

# a lost race is read again; the row it lost to is there then, unless released meanwhile (claim again)
CLAIM_ATTEMPTS = 3


class IdempotencyStatus(StrEnum):
    in_progress = "in_progress"  # claimed: the first request runs (or its process died: in doubt)
    completed = "completed"  # its answer is recorded and replayed


@dataclass(frozen=True)
class KeyedRequest:
    caller: str  # the API key's name: the same key string from another caller is another key
    key: str
    route: str  # "POST /stock/adjustments"
    digest: str  # request_digest(...)


@dataclass(frozen=True)
class RecordedAnswer:
    status: int
    content_type: str | None
    location: str | None
    body: bytes


@dataclass(frozen=True)
class Claimed:
    claim_id: int


@dataclass(frozen=True)
class Replay:
    answer: RecordedAnswer


@dataclass(frozen=True)
class Conflict:
    route: str  # what the key was first used for
    same_route: bool  # the same door with another body (else another door altogether)


@dataclass(frozen=True)
class InProgress:
    since: datetime


ClaimOutcome = Claimed | Replay | Conflict | InProgress


def request_digest(method: str, path: str, query: bytes, body: bytes) -> str:
    """What makes two requests "the same": method, path, query and body. A JSON body counts by its
    content (key order and whitespace aside), so a client that re-serializes its retry still matches."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:  # not JSON (a CSV import), or not UTF-8: the bytes as sent
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogateescape"), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no two splits hash alike
        digest.update(part)
    return digest.hexdigest()


def request_ref(request: KeyedRequest) -> str:
    """One name for a caller's key and the request it was used for (a changed request is another)."""
    digest = hashlib.sha256()
    for part in (request.caller, request.key, request.digest):
        digest.update(len(part.encode()).to_bytes(8, "big"))
        digest.update(part.encode())
    return digest.hexdigest()


def claim(sessions: SessionFactory, request: KeyedRequest, now: datetime, ttl: timedelta) -> ClaimOutcome:
    """Claim the key for this request, or say what holds it."""
    for attempt in range(CLAIM_ATTEMPTS):
        try:
            with sessions.begin() as session:
                row = session.scalar(
                    select(t.IdempotencyKey).where(
                        t.IdempotencyKey.caller == request.caller, t.IdempotencyKey.key == request.key
                    )
                )
                if row is not None and row.expires_at <= now:
                    session.delete(row)  # expired: the key is free again
                    session.flush()
                    row = None
                if row is None:
                    row = t.IdempotencyKey(
                        caller=request.caller,
                        key=request.key,
                        route=request.route,
                        digest=request.digest,
                        status=IdempotencyStatus.in_progress,
                        created_at=now,
                        expires_at=now + ttl,
                    )
                    session.add(row)
                    session.flush()
                    return Claimed(row.id)
                return _held(row, request)
        except IntegrityError:
            # a duplicate inserted it between our read and our insert: read it now
            if attempt == CLAIM_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _held(row: t.IdempotencyKey, request: KeyedRequest) -> ClaimOutcome:
    if row.digest != request.digest:
        return Conflict(route=row.route, same_route=row.route == request.route)
    if row.status == IdempotencyStatus.completed and row.response_status is not None:
        answer = RecordedAnswer(
            status=row.response_status,
            content_type=row.response_type,
            location=row.response_location,
            body=row.response_body or b"",
        )
        return Replay(answer)
    return InProgress(since=row.created_at)


def complete(sessions: SessionFactory, claim_id: int, answer: RecordedAnswer) -> None:
    """Record the claimed request's answer: from now on a retry gets it."""
    with sessions.begin() as session:
        row = session.get(t.IdempotencyKey, claim_id)
        if row is None:  # pruned meanwhile (a TTL shorter than the request): nothing to replay
            return
        row.status = IdempotencyStatus.completed
        row.response_status = answer.status
        row.response_type = answer.content_type
        row.response_location = answer.location
        row.response_body = answer.body


def release(sessions: SessionFactory, claim_id: int) -> None:
    """Give the key back: the request changed nothing (an error answer), so a retry runs anew."""
    with sessions.begin() as session:
        session.execute(delete(t.IdempotencyKey).where(t.IdempotencyKey.id == claim_id))


def prune(sessions: SessionFactory, now: datetime) -> int:
    """Delete the expired keys; how many."""
    with sessions.begin() as session:
        result = session.execute(delete(t.IdempotencyKey).where(t.IdempotencyKey.expires_at <= now))
        return int(getattr(result, "rowcount", 0) or 0)
