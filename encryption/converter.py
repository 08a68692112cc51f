"""The one data converter of every Temporal client and worker here: pydantic JSON, then the
encryption codec; failure messages and stack traces travel encrypted too (they may quote an order)."""

from __future__ import annotations

import dataclasses

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from config import Settings
from encryption.codec import EncryptionCodec
from encryption.keys import KeyRing, load_key_ring


def data_converter(ring: KeyRing) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def key_ring(settings: Settings) -> KeyRing:
    setting = settings.codec_keys.get_secret_value() if settings.codec_keys else None
    return load_key_ring(setting, settings.codec_key_file)


def converter_for(settings: Settings) -> DataConverter:
    return data_converter(key_ring(settings))
