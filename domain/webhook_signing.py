"""Standard Webhooks signatures (https://www.standardwebhooks.com): a secret `whsec_<base64>`, and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`. Signed here
with the standard library; tests verify with the specification's reference library. While a rotated
secret's old one still signs, the header carries both signatures, space-separated, as the
specification lets a receiver accept either."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for this message."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def old_secret_signs(until: datetime | None, now: datetime) -> bool:
    """Whether a rotated subscription's old secret still signs at `now` (it does until `until`)."""
    return until is not None and until > now


def signed_headers(secrets: Sequence[str], message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed with each of `secrets` (the current one first): the id
    stays, the timestamp is the attempt's (receivers refuse old timestamps, so a retry signs afresh)."""
    timestamp = int(at.timestamp())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets),
    }
