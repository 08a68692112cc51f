"""The customer's tracking link: `/track/<token>`, where the token names the order and proves that this
system made it, so nobody can read an order's progress by guessing its id.

A token is `base64url(order id)` + "." + `base64url(HMAC-SHA256(secret, "oms-track:" + order id))`
cut to 128 bits. The secret is the console's session secret (OMS_SESSION_SECRET, else the file
OMS_SESSION_SECRET_FILE generated once, exactly as `api/console_session.py` reads it); the message's
prefix keeps a tracking token from ever being mistaken for any other use of that secret. Changing the
secret invalidates every link sent before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from config import Settings
from encryption.keys import read_or_create_secret

_PURPOSE = b"oms-track:"
_MAC_BYTES = 16  # 128 bits: unguessable, and a short enough link to type from a printed note
_MAX_TOKEN = 200  # an order id is at most 64 characters; anything longer is not ours


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, order_id: str) -> str:
    digest = hmac.new(secret.encode(), _PURPOSE + order_id.encode(), hashlib.sha256).digest()
    return _b64(digest[:_MAC_BYTES])


def tracking_token(secret: str, order_id: str) -> str:
    """The token of an order's tracking link."""
    if not secret:
        raise ValueError("a tracking token needs a secret")
    return f"{_b64(order_id.encode())}.{_mac(secret, order_id)}"


def order_of_token(secret: str, token: str) -> str | None:
    """The order id a token was made for, or None when it was not made with this secret (tampered,
    truncated, malformed). The MAC is compared in constant time."""
    if not secret or len(token) > _MAX_TOKEN or token.count(".") != 1:
        return None
    encoded, mac = token.split(".")
    try:
        order_id = _unb64(encoded).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if not order_id or _b64(order_id.encode()) != encoded:  # one spelling per order id
        return None
    if not hmac.compare_digest(_mac(secret, order_id).encode(), mac.encode("ascii", "replace")):
        return None
    return order_id


def server_secret(settings: Settings) -> str:
    """The secret that signs console sessions and tracking links: the setting, else a secret generated
    once into an owner-only file (so sessions and links survive a restart and every process of the host
    signs alike)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    try:
        return read_or_create_secret(settings.session_secret_file, lambda: secrets.token_urlsafe(48))
    except OSError as exc:  # e.g. a container whose app directory is read-only
        raise RuntimeError(
            f"cannot read or create the session secret {settings.session_secret_file} that signs console"
            f" sessions and tracking links ({exc.strerror}): set OMS_SESSION_SECRET, or"
            " OMS_SESSION_SECRET_FILE to a writable path"
        ) from None


@dataclass(frozen=True)
class TrackingLinks:
    """Makes an order's tracking URL: `<public URL>/track/<token>`."""

    public_url: str
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackingLinks:
        return cls(settings.public_url.rstrip("/"), server_secret(settings))

    def url(self, order_id: str) -> str:
        return f"{self.public_url}/track/{tracking_token(self.secret, order_id)}"
