"""AES-256-GCM payload codec: what Temporal stores (histories, query results, update arguments and
results, failure messages, summaries) is ciphertext; only holders of the key ring read it.

An encrypted payload's clear metadata says how to open it and nothing about the customer:
`encoding: binary/encrypted`, the key id (so keys rotate), `zlib` when compressed, and the workflow id
when the SDK tells us (the codec server's audit names it). Those clear fields are the AES-GCM
associated data, so changing any of them, or a byte of the ciphertext, fails authentication.

Decoding a payload that is not encrypted passes it through: histories recorded before the codec
still replay. Decoding an encrypted payload that cannot be opened is an error naming the key id.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from encryption.keys import KeyRing

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
COMPRESSION = "oms-compression"
WORKFLOW_ID = "oms-workflow-id"
ZLIB = b"zlib"
NONCE_BYTES = 12
# Compressing pays above about a kilobyte (a large order's JSON shrinks 3-5x); below it zlib's header
# costs more than it saves.
COMPRESS_ABOVE = 1024
MAX_PLAIN_BYTES = 64 * 1024 * 1024  # a decompressed payload larger than this is refused, not inflated


class UndecryptablePayload(ValueError):
    """An encrypted payload this key ring cannot open (unknown key id, or tampered bytes)."""

    def __init__(self, key_id: str, reason: str) -> None:
        super().__init__(f"cannot decrypt a payload encrypted with key {key_id!r}: {reason}")
        self.key_id = key_id


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, ring: KeyRing, workflow_id: str = "") -> None:
        self.ring = ring
        self.workflow_id = workflow_id
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys}

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        workflow_id = ""
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id or ""
        if workflow_id == self.workflow_id:
            return self
        codec = EncryptionCodec.__new__(EncryptionCodec)
        codec.ring, codec.workflow_id, codec._ciphers = self.ring, workflow_id, self._ciphers
        return codec

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload  # already encrypted (an input passed through unchanged)
        plain = payload.SerializeToString()
        metadata = {"encoding": ENCODING, KEY_ID: self.ring.current_id.encode()}
        if len(plain) > COMPRESS_ABOVE:
            packed = zlib.compress(plain, 6)
            if len(packed) < len(plain) * 0.9:
                plain = packed
                metadata[COMPRESSION] = ZLIB
        if self.workflow_id:
            metadata[WORKFLOW_ID] = self.workflow_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.ring.current_id].encrypt(nonce, plain, associated_data(metadata))
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # plain: written before the codec existed
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            held = ", ".join(self.ring.ids)
            raise UndecryptablePayload(key_id, f"no such key in the codec keys (they hold: {held})")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], associated_data(payload.metadata))
        except (InvalidTag, ValueError):
            raise UndecryptablePayload(
                key_id, "it fails authentication (tampered, or a different key)"
            ) from None
        if payload.metadata.get(COMPRESSION) == ZLIB:
            inflater = zlib.decompressobj()
            plain = inflater.decompress(plain, MAX_PLAIN_BYTES)
            if inflater.unconsumed_tail:
                raise UndecryptablePayload(key_id, f"it inflates past {MAX_PLAIN_BYTES} bytes")
        return Payload.FromString(plain)


def associated_data(metadata: Mapping[str, bytes]) -> bytes:
    """The clear metadata an encrypted payload is bound to."""
    fields = (KEY_ID, COMPRESSION, WORKFLOW_ID)
    return b"oms-codec/1" + b"".join(b"\x00" + metadata.get(name, b"") for name in fields)


def workflow_of(payload: Payload) -> str | None:
    """The workflow id an encrypted payload was written for, if the SDK told the codec."""
    value = payload.metadata.get(WORKFLOW_ID)
    return value.decode(errors="replace") if value else None
