"""The sandbox parties (`OMS_SANDBOX_WAREHOUSE=auto`, `OMS_SANDBOX_CARRIER=auto`): a warehouse working
through one released shipment and a carrier carrying one parcel, each reporting to the order the way a
real one would (updates through services/fulfilment.py, by way of sandbox/activities.py).

Their input holds every setting they use (sandbox/warehouse.py, sandbox/carrier.py) and their chance
is `workflow.random()`, so a replay decides the same. A report the order refuses for good (the order
was cancelled, or moved on) ends the party quietly: nobody is waiting for it any more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from models.fulfilment import (
        AddressChange,
        AddressChangeAnswer,
        CarrierEvent,
        PickedLine,
        WarehouseReport,
        WarehouseStep,
    )
    from models.orders import ShipmentLine
    from models.shipping import CarrierEventType
    from models.workflow_names import (
        SANDBOX_CARRIER_WORKFLOW,
        SANDBOX_WAREHOUSE_CHANGE_ADDRESS,
        SANDBOX_WAREHOUSE_WORKFLOW,
    )
    from sandbox.activities import ParcelRef, Pickup, ReportSent, SandboxPartyActivities
    from sandbox.carrier import SandboxParcel
    from sandbox.warehouse import SandboxShipment
    from workflows.options import STEP_TIMEOUT

WAREHOUSE_ACTOR = "sandbox-warehouse"
CARRIER_ACTOR = "sandbox-carrier"
# The parties stand in for outside systems, and every order runs one of each: in the workflow sandbox
# each run cost a fresh import of this module and a trip into the sandbox for every payload (a few per
# cent of the worker's CPU under `make bench`). Their code is this file: it reads no clock, no randomness
# and no state but Temporal's (workflow.random(), timers), and their recorded histories replay in CI.
SANDBOXED = False

# Sending a report waits for the order's update handler to finish (it records the report).
SEND_TIMEOUT = timedelta(minutes=2)
# A report the order is not ready for yet ("too early": e.g. handed over before the label is printed)
# is sent again with backoff, for as long as it takes; so is one Temporal could not take just now.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=30),
)


async def _pause(duration: timedelta, summary: str) -> None:
    if duration > timedelta(0):  # a zero timer is no pause; skip it rather than record one
        await workflow.sleep(duration, summary=summary)


@workflow.defn(name=SANDBOX_WAREHOUSE_WORKFLOW, sandboxed=SANDBOXED)
class SandboxWarehouseWorkflow:
    """Pick (possibly short), pack into parcels, hand over to the carrier. A pick that found something is
    confirmed with the pack, in one report (as many WMSs send it); one that found nothing reports
    `picked` alone.

    A change of address (`change_address`, asked by the order when support edits it after release) is
    accepted until the parcel is handed over: before the pack its label is yet to be printed, after it
    the parcel is relabelled (the order books the new label). Once the carrier has it, refused (a job
    that has ended takes no update at all: sandbox/warehouse.py says so)."""

    def __init__(self) -> None:
        self._handed_over = False

    @workflow.update(name=SANDBOX_WAREHOUSE_CHANGE_ADDRESS)
    def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        shipment = request.shipment_id
        if self._handed_over:
            return AddressChangeAnswer(accepted=False, reason=f"{shipment} was already handed to the carrier")
        if request.labelled:
            return AddressChangeAnswer(accepted=True, reason=f"{shipment} is packed: it will be relabelled")
        return AddressChangeAnswer(
            accepted=True, reason=f"{shipment} is not packed yet: it will be labelled to the new address"
        )

    @workflow.run
    async def run(self, job: SandboxShipment) -> str:
        shipment = job.request.shipment_id
        workflow.set_current_details(f"picking {shipment}")
        await _pause(job.pick_time, f"pick {shipment}")
        picked = _pick(job.request.lines, job.short_pick_rate)
        if not any(line.quantity for line in picked):  # nothing on the shelves: nothing to pack
            if not await self._send(
                SandboxPartyActivities.send_warehouse_report,
                _report(shipment, WarehouseStep.picked, lines=picked),
            ):
                return "stopped: picked refused"
            workflow.set_current_details(f"{shipment}: nothing found")
            return "nothing found to pack"

        workflow.set_current_details(f"packing {shipment}")
        await _pause(job.pack_time, f"pack {shipment}")
        # weighed and sent by one activity
        if not await self._send(
            SandboxPartyActivities.pack_and_report, _report(shipment, WarehouseStep.packed, lines=picked)
        ):
            return "stopped: packed refused"

        # The order books the carrier once it knows the parcels; until the label is printed it answers
        # "too early", and the send retries (SEND_RETRY).
        workflow.set_current_details(f"{shipment} packed, waiting for the label")
        if not await self._send(
            SandboxPartyActivities.send_warehouse_report, _report(shipment, WarehouseStep.handed_over)
        ):
            return "stopped: handed_over refused"
        self._handed_over = True
        workflow.set_current_details(f"{shipment} handed over")
        return "handed over"

    async def _send(self, send: Callable[..., Awaitable[ReportSent]], report: WarehouseReport) -> bool:
        shipment, step = report.shipment_id, report.step
        sent: ReportSent = await workflow.execute_activity_method(
            send,
            report,
            start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY,
            summary=f"{shipment}: {step.value}",
        )
        if not sent.accepted:
            workflow.logger.info("sandbox warehouse stops at %s of %s: %s", step.value, shipment, sent.detail)
            workflow.set_current_details(f"{shipment}: {step.value} refused, stopped")
        return sent.accepted


def _report(shipment: str, step: WarehouseStep, **fields: object) -> WarehouseReport:
    return WarehouseReport.model_validate(
        {
            "shipment_id": shipment,
            "step": step,
            "report_id": f"sbx-{shipment}-{step.value}",
            "by": WAREHOUSE_ACTOR,
            **fields,
        }
    )


def _pick(lines: list[ShipmentLine], short_pick_rate: float) -> list[PickedLine]:
    """Every line in full, except, with probability `short_pick_rate`, one line short by at least one
    unit (possibly all of them)."""
    found = [line.quantity for line in lines]
    chance = workflow.random()
    if lines and chance.random() < short_pick_rate:
        short = chance.randrange(len(lines))
        found[short] -= chance.randint(1, max(found[short], 1))
    return [PickedLine(sku=line.sku, quantity=max(n, 0)) for line, n in zip(lines, found, strict=True)]


@workflow.defn(name=SANDBOX_CARRIER_WORKFLOW, sandboxed=SANDBOXED)
class SandboxCarrierWorkflow:
    """Collect the parcel once it is handed over, then carry it over `transit_time`: in transit, out for
    delivery, delivered (or lost)."""

    @workflow.run
    async def run(self, parcel: SandboxParcel) -> str:
        tracking = parcel.tracking_number
        lost = workflow.random().random() < parcel.loss_rate
        # started with the label: the parcel is collected once the warehouse has handed it over
        workflow.set_current_details(f"{tracking}: waiting to collect {parcel.shipment_id}")
        pickup: Pickup = await workflow.execute_activity_method(
            SandboxPartyActivities.collect_parcel,
            ParcelRef(tracking_number=tracking, shipment_id=parcel.shipment_id),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=SEND_RETRY,  # not handed over yet: back later, as with a report too early
            summary=f"collect {parcel.shipment_id}",
        )
        if not pickup.collected:
            workflow.set_current_details(f"{tracking}: booking cancelled, nothing to carry")
            return "booking cancelled"
        origin = pickup.origin
        journey = [
            (CarrierEventType.in_transit, f"sorting centre {origin}" if origin else "sorting centre"),
            (CarrierEventType.out_for_delivery, None),
            (CarrierEventType.lost if lost else CarrierEventType.delivered, None),
        ]
        leg = parcel.transit_time / len(journey)  # the journey's time, spread over its events
        for n, (kind, place) in enumerate(journey, start=1):
            await _pause(leg, f"{tracking}: until {kind.value}")
            event = CarrierEvent(
                tracking_number=tracking,
                type=kind,
                event_id=f"sbx-{tracking}-{n}",
                at=workflow.now(),
                place=place,
                by=CARRIER_ACTOR,
            )
            sent: ReportSent = await workflow.execute_activity_method(
                SandboxPartyActivities.send_carrier_event,
                event,
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                summary=f"{tracking}: {kind.value}",
            )
            if not sent.accepted:
                workflow.logger.info(
                    "sandbox carrier stops at %s of %s: %s", kind.value, tracking, sent.detail
                )
                workflow.set_current_details(f"{tracking}: {kind.value} refused, stopped")
                return f"stopped: {kind.value} refused"
            workflow.set_current_details(f"{tracking}: {kind.value}")
        return journey[-1][0].value
