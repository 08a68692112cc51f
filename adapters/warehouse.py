"""Warehouses: a released shipment's pick list goes to its warehouse, which reports back on its own.

`release` only hands the pick list over (a real WMS integration would POST it) and returns; the
warehouse's reports (`picked`, `packed`, `handed_over`) reach the order later, as `warehouse_report`
updates (services/fulfilment.py), from a person (`manual`: the `warehouse` command, the warehouse
endpoints) or from the sandbox warehouse (`auto`, sandbox/warehouse.py).
"""

from __future__ import annotations

from typing import Protocol

from models.fulfilment import FulfilmentRequest


class Warehouse(Protocol):
    async def release(self, request: FulfilmentRequest) -> None:
        """Send the pick list. Idempotent per shipment; returns fast (the reports come later)."""
        ...


class ManualWarehouse:
    """Nothing to send: the shipment waits in the warehouse's queue (`warehouse queue`, the API) for a
    person to pick, pack and hand it over."""

    async def release(self, request: FulfilmentRequest) -> None:
        return None
