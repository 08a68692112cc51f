"""The one data converter of every Temporal client and worker here: pydantic JSON, then the
encryption codec; failure messages and stack traces travel encrypted too (they may quote an order)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Self

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    SerializationContext,
    WithSerializationContext,
)

from config import Settings
from encryption.codec import EncryptionCodec
from encryption.keys import KeyRing, load_key_ring


@dataclasses.dataclass(frozen=True)
class EncryptingDataConverter(DataConverter):
    """A DataConverter whose codec alone takes the serialization context (the workflow id it writes
    in the clear metadata). The SDK asks for a converter with context for every payload a workflow
    task carries; the base class answers with a fresh dataclass, whose __post_init__ builds a new
    pydantic payload converter and failure converter each time, only to drop them: 9 % of the worker's
    samples holding the GIL under load (py-spy, 150 orders), a few per cent of its CPU time. Here only
    the codec changes, so the copy shares the other two."""

    def with_context(self, context: SerializationContext) -> Self:
        others = (self.payload_converter, self.failure_converter, self.external_storage)
        if any(
            isinstance(part, WithSerializationContext) and part.with_context(context) is not part
            for part in others
        ):
            return super().with_context(context)  # a part we do not know of took the context
        codec = self.payload_codec
        if not isinstance(codec, WithSerializationContext):
            return self
        with_codec = codec.with_context(context)
        if with_codec is codec:
            return self
        clone = copy.copy(self)  # no __init__, so no new converters
        object.__setattr__(clone, "payload_codec", with_codec)
        return clone


def data_converter(ring: KeyRing) -> DataConverter:
    base = pydantic_data_converter
    return EncryptingDataConverter(
        payload_converter_class=base.payload_converter_class,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def key_ring(settings: Settings) -> KeyRing:
    setting = settings.codec_keys.get_secret_value() if settings.codec_keys else None
    return load_key_ring(setting, settings.codec_key_file)


def converter_for(settings: Settings) -> DataConverter:
    return data_converter(key_ring(settings))
