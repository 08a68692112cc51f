"""The codec's keys: `OMS_CODEC_KEYS` ("id:key,id:key", keys as URL-safe base64 of 32 bytes; the first
encrypts, all decrypt) or, with the setting absent, a key generated once into `.data/codec-keys`
(owner-only) and reused. Rotation adds a new key in front; old payloads keep decoding with the old one.

No function here logs or prints a key; `format_keys` exists for `starter.py codec rotate`, which shows
the new setting to the operator who asked for it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

KEY_BYTES = 32  # AES-256
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


class CodecKeyError(ValueError):
    """The key setting cannot be used; the message says which entry and why, never the key."""


@dataclass(frozen=True)
class KeyRing:
    """Keys by id, in order: the first one encrypts new payloads, every one decrypts."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecKeyError("the codec needs at least one key")
        ids = [key_id for key_id, _ in self.keys]
        if len(set(ids)) != len(ids):
            raise CodecKeyError(f"a key id appears twice in the codec keys: {', '.join(ids)}")

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @property
    def ids(self) -> list[str]:
        return [key_id for key_id, _ in self.keys]

    def rotated(self, new_id: str | None = None) -> KeyRing:
        """A ring with a fresh key in front (it encrypts from now on) and every old key kept."""
        key_id = new_id or next_key_id(self.ids)
        if not KEY_ID.match(key_id):
            raise CodecKeyError(f"key id {key_id!r}: use 1 to 40 of A-Z a-z 0-9 . _ -")
        return KeyRing(((key_id, secrets.token_bytes(KEY_BYTES)), *self.keys))

    def __repr__(self) -> str:  # never show key material, not even in a traceback
        return f"KeyRing(ids={self.ids})"


def parse_keys(text: str) -> KeyRing:
    entries = []
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID.match(key_id):
            raise CodecKeyError(
                f"codec key entry {n}: write it as ID:KEY, the id 1 to 40 of A-Z a-z 0-9 . _ -"
            )
        try:
            key = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise CodecKeyError(f"codec key {key_id!r}: the key must be {KEY_BYTES} bytes in URL-safe base64")
        entries.append((key_id, key))
    return KeyRing(tuple(entries))


def format_keys(ring: KeyRing) -> str:
    return ",".join(
        f"{key_id}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}" for key_id, key in ring.keys
    )


def next_key_id(existing: list[str]) -> str:
    """`k` + today's date, with a suffix if a key of today exists already."""
    base = f"k{datetime.now(UTC):%Y%m%d}"
    candidate, n = base, 1
    while candidate in existing:
        n += 1
        candidate = f"{base}.{n}"
    return candidate


def read_or_create_secret(path: Path, generate: Callable[[], str]) -> str:
    """The content of an owner-only secret file, creating it once if it is missing. Concurrent first
    starts (the worker and the API at once) agree: the file appears atomically, the loser reads it."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(generate() + "\n")
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_text().strip()


def write_secret(path: Path, content: str) -> None:
    """Replace an owner-only secret file atomically (rotation)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")
    os.replace(temp, path)


def load_key_ring(setting: str | None, key_file: Path) -> KeyRing:
    """The ring from the setting, else from the local key file (generated on first use)."""
    if setting:
        return parse_keys(setting)
    text = read_or_create_secret(key_file, lambda: format_keys(new_key_ring()))
    try:
        return parse_keys(text)
    except CodecKeyError as exc:
        raise CodecKeyError(f"{key_file}: {exc}") from None


def new_key_ring() -> KeyRing:
    return KeyRing(((next_key_id([]), secrets.token_bytes(KEY_BYTES)),))


@dataclass(frozen=True)
class Rotation:
    ring: KeyRing
    new_setting: str | None  # the OMS_CODEC_KEYS value to deploy; None when the key file was rewritten


def rotate(setting: str | None, key_file: Path) -> Rotation:
    """A new key in front of the current ones. With the setting in use, the new setting is returned
    for the operator to deploy (workers and clients first decrypt with it, then encrypt with it);
    with the embedded default, the key file is rewritten in place."""
    ring = load_key_ring(setting, key_file).rotated()
    if setting:
        return Rotation(ring, format_keys(ring))
    write_secret(key_file, format_keys(ring))
    return Rotation(ring, None)
