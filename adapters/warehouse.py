"""Warehouses: a released shipment's pick list goes to its warehouse, which reports back on its own.

`release` only hands the pick list over (a real WMS integration would POST it) and returns; the
warehouse's reports (`picked`, `packed`, `handed_over`) reach the order later, as `warehouse_report`
updates (services/fulfilment.py), from a person (`manual`: the `warehouse` command, the warehouse
endpoints) or from the sandbox warehouse (`auto`, sandbox/warehouse.py).

`change_address` asks the warehouse whether a released shipment may go to another address (an order
edit after release): it answers, and may refuse with its reason; the order changes nothing then.
"""

from __future__ import annotations

from typing import Protocol

from models.fulfilment import AddressChange, AddressChangeAnswer, FulfilmentRequest


class Warehouse(Protocol):
    async def release(self, request: FulfilmentRequest) -> None:
        """Send the pick list. Idempotent per shipment; returns fast (the reports come later)."""
        ...

    async def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        """May the shipment go to `request.address`? Accepting commits the warehouse to it (a labelled
        parcel is relabelled: the order books the new label). Idempotent per `request.key`; a refusal
        is an answer, not an error (an unreachable warehouse raises, and the order asks again)."""
        ...


class ManualWarehouse:
    """Nothing to send: the shipment waits in the warehouse's queue (`warehouse queue`, the API) for a
    person to pick, pack and hand it over."""

    async def release(self, request: FulfilmentRequest) -> None:
        return None

    async def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        """The person packing prints the label from the orders row at pack, so a new address reaches an
        unpacked parcel by itself. A packed one already carries its label, and nothing reaches the person
        at the bench to swap it: refused."""
        if request.labelled:
            return AddressChangeAnswer(
                accepted=False,
                reason=f"{request.shipment_id} is already packed and labelled at {request.warehouse}, and "
                "the manual warehouse takes no relabelling request",
            )
        return AddressChangeAnswer(
            accepted=True,
            reason=f"{request.shipment_id} is not packed yet: its label will show the new address",
        )
