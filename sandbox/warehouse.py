"""The sandbox warehouse: a `Warehouse` (adapters/warehouse.py) that works through each released
shipment itself (`OMS_SANDBOX_WAREHOUSE=auto`): a SandboxWarehouseWorkflow per shipment
(sandbox/workflows.py) reports to the order as a real WMS would.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import Client

from adapters.warehouse import ManualWarehouse, Warehouse
from config import SandboxMode, Settings
from models.fulfilment import FulfilmentRequest
from models.workflow_names import SANDBOX_WAREHOUSE_WORKFLOW, sandbox_warehouse_workflow_id
from sandbox.carrier import start_sandbox_party


class SandboxShipment(BaseModel):
    """The input of a SandboxWarehouseWorkflow: everything it needs, so that it is deterministic."""

    request: FulfilmentRequest
    pick_time: timedelta
    pack_time: timedelta
    short_pick_rate: float


class SandboxWarehouse:
    """The sandbox warehouse works through the shipment: a SandboxWarehouseWorkflow on the sandbox
    parties' task queue, one per shipment."""

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
    """The sandbox warehouse works (`OMS_SANDBOX_WAREHOUSE=auto`), or a person does (`manual`)."""
    if settings.sandbox_warehouse == SandboxMode.auto:
        return SandboxWarehouse(client, settings)
    return ManualWarehouse()
