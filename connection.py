"""Connecting to Temporal, and making sure the namespace knows our search attributes.

The Temporal SDK is imported inside the functions that use it, not at the top: commands that never
talk to Temporal (`starter.py migrate`, `stock`, `codec generate`, ...) import this module only for
`exit_without_finalizing`, and should not pay the SDK's import time for it."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from temporalio.client import Client

    from config import Settings


async def connect(settings: Settings) -> Client:
    from temporalio.client import Client

    from encryption.converter import converter_for

    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=converter_for(settings),
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the custom search attributes the namespace lacks; returns the names added."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    from models import search_attributes

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in search_attributes.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def exit_without_finalizing(status: int) -> NoReturn:
    """Flush and leave at once. The SDK's native runtime can abort the interpreter while it finalizes
    (temporalio/sdk-python#300); callers have finished and flushed their work when they call this."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
