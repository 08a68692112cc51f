"""Adapters to the outside world (payment gateway, carrier, warehouse, supplier), each with a sandbox
implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.client import Client

    from adapters.carrier import CarrierTracking
    from adapters.warehouse import Warehouse
    from config import Settings


def build_parties(client: Client, settings: Settings) -> tuple[Warehouse, CarrierTracking]:
    """The warehouse and carrier tracking the worker's settings choose (`OMS_SANDBOX_WAREHOUSE`,
    `OMS_SANDBOX_CARRIER`: `auto` plays the party, `manual` leaves it to a person).

    Imported here lazily: the other adapters (payments, supplier) need neither Temporal's client nor
    these modules."""
    from adapters.carrier import tracking_for
    from adapters.warehouse import warehouse_for

    return warehouse_for(settings, client), tracking_for(settings, client)
