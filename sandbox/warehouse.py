"""Warehouses: a released shipment's pick list goes to its warehouse, which reports back on its own.

`release` only hands the pick list over (a real WMS integration would POST it) and returns; the
warehouse's reports (`picked`, `packed`, `handed_over`) reach the order later, as `warehouse_report`
updates (services/fulfilment.py), from a person (`manual`: the `warehouse` command, the warehouse
endpoints) or from the sandbox warehouse (`auto`: a SandboxWarehouseWorkflow per shipment,
workflows/sandbox_parties.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel
from temporalio.client import Client

from adapters.carrier import start_sandbox_party
from config import SandboxMode, Settings
from models.fulfilment import FulfilmentRequest
from models.workflow_names import SANDBOX_WAREHOUSE_WORKFLOW, sandbox_warehouse_workflow_id


class Warehouse(Protocol):
    async def release(self, request: FulfilmentRequest) -> None:
        """Send the pick list. Idempotent per shipment; returns fast (the reports come later)."""
        ...


class ManualWarehouse:
    """Nothing to send: the shipment waits in the warehouse's queue (`warehouse queue`, the API) for a
    person to pick, pack and hand it over."""

    async def release(self, request: FulfilmentRequest) -> None:
        return None


class SandboxShipment(BaseModel):
    """The input of a SandboxWarehouseWorkflow: everything it needs, so that it is deterministic."""

    request: FulfilmentRequest
    pick_time: timedelta
    pack_time: timedelta
    short_pick_rate: float


class SandboxWarehouse:
    """The sandbox warehouse works through the shipment: a SandboxWarehouseWorkflow on the worker's
    task queue, one per shipment."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def release(self, request: FulfilmentRequest) -> None:
        job = SandboxShipment(
            request=request,
            pick_time=self._settings.sandbox_pick_time,
            pack_time=self._settings.sandbox_pack_time,
            short_pick_rate=self._settings.sandbox_short_pick_rate,
        )
        await start_sandbox_party(
            self._client,
            SANDBOX_WAREHOUSE_WORKFLOW,
            job,
            workflow_id=sandbox_warehouse_workflow_id(request.shipment_id),
            task_queue=self._settings.sandbox_task_queue,
            summary=f"sandbox warehouse {request.warehouse}: shipment {request.shipment_id}",
        )


def warehouse_for(settings: Settings, client: Client) -> Warehouse:
    if settings.sandbox_warehouse == SandboxMode.auto:
        return SandboxWarehouse(client, settings)
    return ManualWarehouse()
