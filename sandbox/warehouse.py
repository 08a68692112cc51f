"""The sandbox warehouse: a `Warehouse` (adapters/warehouse.py) that works through each released
shipment itself (`OMS_SANDBOX_WAREHOUSE=auto`): a SandboxWarehouseWorkflow per shipment
(sandbox/workflows.py) reports to the order as a real WMS would.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from adapters.warehouse import ManualWarehouse, Warehouse
from config import SandboxMode, Settings
from models.fulfilment import AddressChange, AddressChangeAnswer, FulfilmentRequest
from models.workflow_names import (
    SANDBOX_WAREHOUSE_CHANGE_ADDRESS,
    SANDBOX_WAREHOUSE_WORKFLOW,
    sandbox_warehouse_workflow_id,
)
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

    async def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        """Asks the shipment's SandboxWarehouseWorkflow, which knows how far it got (its update,
        sandbox/workflows.py); the request's key names the update, so a retry gets the first answer.
        A job that has ended (handed over, or stopped) or never started takes no change."""
        handle = self._client.get_workflow_handle(sandbox_warehouse_workflow_id(request.shipment_id))
        try:
            answer: AddressChangeAnswer = await handle.execute_update(
                SANDBOX_WAREHOUSE_CHANGE_ADDRESS, request, id=request.key, result_type=AddressChangeAnswer
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise  # the warehouse cannot be reached just now: the order's step asks again
            return AddressChangeAnswer(
                accepted=False,
                reason=f"the sandbox warehouse has no open job for {request.shipment_id} (it was handed over "
                "or stopped)",
            )
        return answer


def warehouse_for(settings: Settings, client: Client) -> Warehouse:
    """The sandbox warehouse works (`OMS_SANDBOX_WAREHOUSE=auto`), or a person does (`manual`)."""
    if settings.sandbox_warehouse == SandboxMode.auto:
        return SandboxWarehouse(client, settings)
    return ManualWarehouse()
