"""The sandbox warehouse and carrier, against a stand-in order.

The stand-in (below) takes the two report updates the way the real order does: its validators refuse
a duplicate or out-of-order report for good (`ReportRefused`), and a `handed_over` before its label
is printed as "too early" (`ReportTooEarly`). So the sandbox parties, the client layer they report
through and the adapters that start them are tested on their own, on a real dev server and database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import pytest
    from pydantic import BaseModel
    from temporalio.api.enums.v1 import EventType, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client, WorkflowHandle
    from temporalio.worker import Worker

    from adapters import build_parties
    from adapters.carrier import ManualCarrierTracking
    from adapters.warehouse import ManualWarehouse
    from config import SandboxMode, Settings
    from db import SessionFactory
    from domain.shipments import PACKAGING_WEIGHT_G, UnknownWarehouse, split_into_parcels
    from models import tables as t
    from models.fulfilment import (
        CarrierEvent,
        FulfilmentRequest,
        ReportOutcome,
        ReportRefusal,
        WarehouseReport,
        WarehouseStep,
    )
    from models.orders import ShipmentLine, ShipmentStatus
    from models.shipping import CarrierEventType
    from models.workflow_names import (
        SANDBOX_CARRIER_WORKFLOW,
        SANDBOX_WAREHOUSE_WORKFLOW,
        OrderUpdate,
        order_workflow_id,
        sandbox_carrier_workflow_id,
        sandbox_warehouse_workflow_id,
    )
    from sandbox.activities import SandboxPartyActivities
    from sandbox.carrier import SandboxCarrier, SandboxCarrierTracking
    from sandbox.warehouse import SandboxWarehouse
    from sandbox.workflows import SandboxCarrierWorkflow, SandboxWarehouseWorkflow
    from services import fulfilment
    from services.orders import Refused
    from tests.helpers import add_order_row, add_products, add_warehouse, eventually, unique
    from worker import build_party_activities, build_worker, workflow_runner


# ---- the stand-in order ----


class Rules(BaseModel):
    """How the stand-in answers."""

    label_delay: timedelta = timedelta(seconds=1.5)  # packed -> label printed (handed_over too early until)
    refuse_steps: list[WarehouseStep] = []  # refused for good, as a cancelled order would
    refuse_events: list[CarrierEventType] = []


class Received(BaseModel):
    at: datetime  # when the stand-in took it (workflow time)
    report: WarehouseReport | None = None
    event: CarrierEvent | None = None


@workflow.defn(name="StandInOrder")
class StandInOrder:
    @workflow.init
    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self._received: list[Received] = []
        self._label_printed = False

    @workflow.run
    async def run(self, rules: Rules) -> None:
        await workflow.wait_condition(lambda: WarehouseStep.packed in self._steps())
        await workflow.sleep(rules.label_delay)  # the real order books the carrier here
        self._label_printed = True
        await workflow.wait_condition(lambda: False)  # the test terminates it

    def _steps(self) -> list[WarehouseStep]:
        steps = []
        for r in self._received:
            if r.report and _confirms_pick(r.report):
                steps.append(WarehouseStep.picked)
            if r.report:
                steps.append(r.report.step)
        return steps

    @workflow.update(name=OrderUpdate.warehouse_report)
    def warehouse_report(self, report: WarehouseReport) -> ReportOutcome:
        self._received.append(Received(at=workflow.now(), report=report))
        return ReportOutcome(
            order_id=workflow.info().workflow_id, shipment_id=report.shipment_id, detail=report.step.value
        )

    @warehouse_report.validator
    def _check_report(self, report: WarehouseReport) -> None:
        # validators change nothing: a refused update leaves no trace in the history
        steps = self._steps()
        if report.step in steps:
            raise ApplicationError(
                f"duplicate: {report.step.value} already reported", type=ReportRefusal.refused
            )
        if report.step in self._rules.refuse_steps:
            raise ApplicationError("order cancelled: nothing more to do", type=ReportRefusal.refused)
        expected = list(WarehouseStep)[len(steps)] if len(steps) < len(WarehouseStep) else None
        if expected == WarehouseStep.picked and _confirms_pick(report):
            expected = WarehouseStep.packed  # as the real order takes it: the pick and the pack at once
        if report.step != expected:
            raise ApplicationError(f"out of order: {report.step.value}", type=ReportRefusal.refused)
        if report.step == WarehouseStep.handed_over and not self._label_printed:
            raise ApplicationError("the label is not printed yet", type=ReportRefusal.too_early)

    @workflow.update(name=OrderUpdate.carrier_event)
    def carrier_event(self, event: CarrierEvent) -> ReportOutcome:
        self._received.append(Received(at=workflow.now(), event=event))
        return ReportOutcome(order_id=workflow.info().workflow_id, shipment_id="", detail=event.type.value)

    @carrier_event.validator
    def _check_event(self, event: CarrierEvent) -> None:
        if any(r.event and r.event.event_id == event.event_id for r in self._received):
            raise ApplicationError(f"duplicate: event {event.event_id}", type=ReportRefusal.refused)
        if event.type in self._rules.refuse_events:
            raise ApplicationError(f"{event.type.value} refused", type=ReportRefusal.refused)

    @workflow.query
    def received(self) -> list[Received]:
        return self._received


def _confirms_pick(report: WarehouseReport) -> bool:
    return report.step == WarehouseStep.packed and bool(report.lines)


# ---- fixtures ----


@pytest.fixture(scope="module")
async def queue(client: Client, sessions: SessionFactory) -> AsyncIterator[str]:
    """A worker of the sandbox parties and the stand-in on a task queue of its own."""
    name = f"sandbox-parties-{uuid.uuid4().hex[:6]}"
    activities = build_party_activities(sessions, client)
    # the stand-in order on `name`; the parties where the adapters start them (Settings.sandbox_task_queue)
    async with (
        Worker(client, task_queue=name, workflows=[StandInOrder], workflow_runner=workflow_runner()),
        Worker(
            client,
            task_queue=Settings(task_queue=name).sandbox_task_queue,
            workflows=[SandboxWarehouseWorkflow, SandboxCarrierWorkflow],
            activities=activities,
            activity_executor=ThreadPoolExecutor(max_workers=8),
            workflow_runner=workflow_runner(),
        ),
    ):
        yield name


def party_settings(settings: Settings, queue: str, **overrides: object) -> Settings:
    return settings.model_copy(update={"task_queue": queue, **overrides})


@asynccontextmanager
async def stand_in(client: Client, queue: str, rules: Rules | None = None) -> AsyncIterator[StandIn]:
    order_id = unique("SBX")
    handle = await client.start_workflow(
        StandInOrder.run, rules or Rules(), id=order_workflow_id(order_id), task_queue=queue
    )
    try:
        yield StandIn(order_id, handle)
    finally:
        await handle.terminate("test over")


class StandIn:
    """The stand-in as the test sees it."""

    def __init__(self, order_id: str, handle: WorkflowHandle) -> None:
        self.order_id, self.handle = order_id, handle
        self.shipment_id = f"{order_id}-S1"

    async def received(self) -> list[Received]:
        return await self.handle.query(StandInOrder.received, result_type=list[Received])

    async def wait_for(self, count: int) -> list[Received]:
        return await eventually(self.received, lambda got: len(got) >= count)


def release_request(order: StandIn, warehouse: str, lines: dict[str, int]) -> FulfilmentRequest:
    return FulfilmentRequest(
        order_id=order.order_id,
        shipment_id=order.shipment_id,
        warehouse=warehouse,
        lines=[ShipmentLine(sku=sku, quantity=qty) for sku, qty in lines.items()],
        released_at=datetime.now(UTC),
    )


async def attempts_of_last_send(client: Client, workflow_id: str) -> tuple[int, str | None]:
    """The attempt number of the workflow's last activity and the type of the failure before it."""
    started = [
        event.activity_task_started_event_attributes
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    last = started[-1]
    failure = last.last_failure.application_failure_info.type if last.HasField("last_failure") else None
    return last.attempt, failure


def add_shipment(
    sessions: SessionFactory,
    order_id: str,
    shipment_id: str,
    warehouse: str,
    status: ShipmentStatus,
    released_at: datetime | None = None,
    tracking_number: str | None = None,
    label_ref: str | None = None,
    reservations: Sequence[tuple[str, int, str]] = (),  # (sku, quantity, status)
    shipped_at: datetime | None = None,
) -> None:
    """A shipment row (and its order and customer rows, which the foreign keys want) written directly."""
    with sessions.begin() as session:
        if session.get(t.Order, order_id) is None:
            add_order_row(
                session,
                order_id,
                "C-SBX",
                status="confirmed",
                payment_status="authorized",
                placed_at=datetime.now(UTC),
            )
        session.add(
            t.Shipment(
                id=shipment_id,
                order_id=order_id,
                warehouse=warehouse,
                status=status.value,
                released_at=released_at,
                tracking_number=tracking_number,
                label_ref=label_ref,
                shipped_at=shipped_at,
            )
        )
        for sku, quantity, state in reservations:
            session.add(
                t.Reservation(
                    order_id=order_id,
                    shipment_id=shipment_id,
                    sku=sku,
                    warehouse=warehouse,
                    quantity=quantity,
                    status=state,
                )
            )


# ---- the warehouse ----


async def test_warehouse_confirms_pick_and_pack_in_one_report_then_hands_over_after_its_times(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    skus = add_products(sessions, {"mug": 10}, weight_g=250) | add_products(
        sessions, {"anvil": 10}, weight_g=9000
    )
    own = party_settings(
        settings, queue, sandbox_pick_time=timedelta(seconds=1), sandbox_pack_time=timedelta(seconds=1.5)
    )
    async with stand_in(client, queue) as order:
        await SandboxWarehouse(client, own).release(
            release_request(order, "W1", {skus["mug"]: 2, skus["anvil"]: 3})
        )
        sandbox = client.get_workflow_handle(sandbox_warehouse_workflow_id(order.shipment_id))
        assert await sandbox.result() == "handed over"
        started = (await sandbox.describe()).start_time
        packed, handed = await order.wait_for(2)

    assert [r.report.step for r in (packed, handed) if r.report] == [
        WarehouseStep.packed,
        WarehouseStep.handed_over,
    ]
    assert packed.report and handed.report
    # one report for the pick and the pack (as many WMSs confirm); nothing short at a rate of 0
    assert {(x.sku, x.quantity) for x in packed.report.lines} == {(skus["mug"], 2), (skus["anvil"], 3)}
    # 3 anvils of 9 kg and 2 mugs: two anvils fill one parcel (20 kg at most), the third and the mugs another
    assert packed.report.parcels_g == [18_000 + PACKAGING_WEIGHT_G, 9_000 + 500 + PACKAGING_WEIGHT_G]
    assert [r.report_id for r in (packed.report, handed.report)] == [
        f"sbx-{order.shipment_id}-packed",
        f"sbx-{order.shipment_id}-handed_over",
    ]
    assert {r.by for r in (packed.report, handed.report)} == {"sandbox-warehouse"}
    # the configured times passed before the report: picking, then packing (timers: workflow time)
    assert started is not None
    assert packed.at - started >= timedelta(seconds=1 + 1.5)
    # the first handover came before the label: refused as too early, retried, then taken
    assert handed.at - packed.at >= Rules().label_delay
    attempt, failure = await attempts_of_last_send(client, sandbox_warehouse_workflow_id(order.shipment_id))
    assert attempt >= 2 and failure == "ReportTooEarly"


async def test_a_short_pick_reports_fewer_units_of_one_line(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    skus = add_products(sessions, {"mug": 10, "cup": 10})
    own = party_settings(
        settings,
        queue,
        sandbox_pick_time=timedelta(0),
        sandbox_pack_time=timedelta(0),
        sandbox_short_pick_rate=1.0,
    )
    async with stand_in(client, queue) as order:
        ordered = {skus["mug"]: 3, skus["cup"]: 2}
        await SandboxWarehouse(client, own).release(release_request(order, "W1", ordered))
        outcome = await client.get_workflow_handle(sandbox_warehouse_workflow_id(order.shipment_id)).result()
        received = await order.received()

    packed = received[0].report  # the pick and the pack in one report
    assert packed is not None and packed.step == WarehouseStep.packed
    found = {x.sku: x.quantity for x in packed.lines}
    short = [sku for sku, qty in ordered.items() if found[sku] < qty]
    assert len(short) == 1  # one line short, by at least one unit
    assert all(found[sku] == qty for sku, qty in ordered.items() if sku not in short)
    assert outcome == "handed over"  # the rest was packed and handed over
    assert packed.parcels_g == [sum(found.values()) * 250 + PACKAGING_WEIGHT_G]


async def test_nothing_found_nothing_packed(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    """A one-unit line short-picked is short by all of it: nothing to pack, the warehouse is done."""
    skus = add_products(sessions, {"mug": 10})
    own = party_settings(
        settings,
        queue,
        sandbox_pick_time=timedelta(0),
        sandbox_pack_time=timedelta(0),
        sandbox_short_pick_rate=1.0,
    )
    async with stand_in(client, queue) as order:
        await SandboxWarehouse(client, own).release(release_request(order, "W1", {skus["mug"]: 1}))
        outcome = await client.get_workflow_handle(sandbox_warehouse_workflow_id(order.shipment_id)).result()
        received = await order.received()
    assert outcome == "nothing found to pack"
    assert [(r.report.step, [x.quantity for x in r.report.lines]) for r in received if r.report] == [
        (WarehouseStep.picked, [0])
    ]


async def test_a_report_refused_for_good_stops_the_warehouse_quietly(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    skus = add_products(sessions, {"mug": 10})
    own = party_settings(settings, queue, sandbox_pick_time=timedelta(0), sandbox_pack_time=timedelta(0))
    async with stand_in(client, queue, Rules(refuse_steps=[WarehouseStep.packed])) as order:
        await SandboxWarehouse(client, own).release(release_request(order, "W1", {skus["mug"]: 2}))
        sandbox = client.get_workflow_handle(sandbox_warehouse_workflow_id(order.shipment_id))
        assert await sandbox.result() == "stopped: packed refused"  # completed, not failed
        received = await order.received()
    assert received == []  # its one report of pick and pack was refused
    attempt, _ = await attempts_of_last_send(client, sandbox.id)
    assert attempt == 1  # a refusal for good is not retried


async def test_the_same_release_twice_starts_one_sandbox_warehouse(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    skus = add_products(sessions, {"mug": 10})
    own = party_settings(
        settings, queue, sandbox_pick_time=timedelta(seconds=1), sandbox_pack_time=timedelta(0)
    )
    warehouse = SandboxWarehouse(client, own)
    async with stand_in(client, queue) as order:
        request = release_request(order, "W1", {skus["mug"]: 1})
        await asyncio.gather(warehouse.release(request), warehouse.release(request))  # while it runs
        sandbox = client.get_workflow_handle(sandbox_warehouse_workflow_id(order.shipment_id))
        first_run = (await sandbox.describe()).run_id
        assert await sandbox.result() == "handed over"
        await warehouse.release(request)  # after it ended: nothing again, no error
        assert (await sandbox.describe()).run_id == first_run
        received = await order.received()
    assert [r.report.step for r in received if r.report] == [  # each report once
        WarehouseStep.packed,
        WarehouseStep.handed_over,
    ]


async def test_manual_parties_start_nothing(client: Client, settings: Settings) -> None:
    manual = settings.model_copy(
        update={"sandbox_warehouse": SandboxMode.manual, "sandbox_carrier": SandboxMode.manual}
    )
    warehouse, tracking = build_parties(client, manual)
    assert isinstance(warehouse, ManualWarehouse) and isinstance(tracking, ManualCarrierTracking)
    auto = settings.model_copy(
        update={"sandbox_warehouse": SandboxMode.auto, "sandbox_carrier": SandboxMode.auto}
    )
    auto_warehouse, auto_tracking = build_parties(client, auto)
    assert isinstance(auto_warehouse, SandboxWarehouse) and isinstance(auto_tracking, SandboxCarrierTracking)


# ---- a worker without them (OMS_SANDBOX_PARTIES=false, production) ----


def registered(worker: Worker) -> tuple[set[str], set[str]]:
    """The workflow types and activity names a worker was built with."""
    config = worker.config()
    workflows = {workflow._Definition.must_from_class(cls).name for cls in config.get("workflows", [])}
    activities = {fn.__temporal_activity_definition.name for fn in config.get("activities", [])}  # type: ignore[attr-defined]
    return workflows, activities


PARTY_WORKFLOW_NAMES = {SANDBOX_WAREHOUSE_WORKFLOW, SANDBOX_CARRIER_WORKFLOW}
PARTY_ACTIVITY_NAMES = {
    name for name, fn in vars(SandboxPartyActivities).items() if hasattr(fn, "__temporal_activity_definition")
}


async def polled(client: Client, queue: str) -> bool:
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(described.pollers)


async def test_a_worker_without_the_sandbox_parties_registers_and_polls_none_of_them(
    client: Client, sessions: SessionFactory, settings: Settings
) -> None:
    assert len(PARTY_ACTIVITY_NAMES) == 4  # send_warehouse_report, pack_and_report, ...
    on = settings.model_copy(update={"task_queue": f"parties-on-{uuid.uuid4().hex[:6]}"})
    with_parties = build_worker(client, sessions, on)
    assert with_parties.parties is not None
    assert registered(with_parties.parties) == (PARTY_WORKFLOW_NAMES, PARTY_ACTIVITY_NAMES)

    off = settings.model_copy(
        update={
            "task_queue": f"parties-off-{uuid.uuid4().hex[:6]}",
            "sandbox_parties": False,
            "sandbox_warehouse": SandboxMode.manual,
            "sandbox_carrier": SandboxMode.manual,
        }
    )
    workers = build_worker(client, sessions, off)
    assert workers.parties is None and workers.workers == [workers.orders]
    for built in (workers, with_parties):  # the order worker never registers the parties' names
        workflows, activities = registered(built.orders)
        assert "OrderWorkflow" in workflows and "authorize_payment" in activities
        assert not workflows & PARTY_WORKFLOW_NAMES and not activities & PARTY_ACTIVITY_NAMES

    async with workers:  # started: its order queue is polled, the sandbox queue by nobody
        await eventually(lambda: polled(client, off.task_queue), bool, what="the order worker to poll")
        assert not await polled(client, off.sandbox_task_queue)


# ---- the carrier ----


async def shipped(sessions: SessionFactory, order: StandIn) -> tuple[str, str]:
    """A shipped shipment row with a tracking number, as the order's handover leaves it: (tracking, warehouse)."""
    warehouse = add_warehouse(sessions)
    tracking = f"SBXT{uuid.uuid4().hex[:10].upper()}"
    add_shipment(
        sessions,
        order.order_id,
        order.shipment_id,
        warehouse,
        ShipmentStatus.shipped,
        tracking_number=tracking,
        shipped_at=datetime.now(UTC),
    )
    return tracking, warehouse


async def test_the_carrier_reports_in_transit_out_for_delivery_delivered(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    own = party_settings(settings, queue, sandbox_transit_time=timedelta(seconds=1.5), sandbox_loss_rate=0.0)
    async with stand_in(client, queue) as order:
        tracking, warehouse = await shipped(sessions, order)
        carrier = SandboxCarrierTracking(client, own)
        await asyncio.gather(
            *(carrier.start_tracking(tracking, order.order_id, order.shipment_id) for _ in range(2))
        )
        sandbox = client.get_workflow_handle(sandbox_carrier_workflow_id(tracking))
        first_run = (await sandbox.describe()).run_id
        assert await sandbox.result() == "delivered"
        await carrier.start_tracking(tracking, order.order_id, order.shipment_id)  # once only
        assert (await sandbox.describe()).run_id == first_run
        received = await order.received()

    events = [r.event for r in received if r.event]
    assert [e.type for e in events] == [
        CarrierEventType.in_transit,
        CarrierEventType.out_for_delivery,
        CarrierEventType.delivered,
    ]
    assert [e.event_id for e in events] == [f"sbx-{tracking}-{n}" for n in (1, 2, 3)]
    assert events[0].place == f"sorting centre {warehouse}"
    assert {e.by for e in events} == {"sandbox-carrier"} and {e.tracking_number for e in events} == {tracking}
    # the transit time spread over the journey: a third of it before each event
    started = (await sandbox.describe()).start_time
    assert started is not None
    times = [started] + [e.at for e in events]
    assert all(
        later - earlier >= timedelta(seconds=0.5) for earlier, later in zip(times, times[1:], strict=False)
    )


async def test_at_a_loss_rate_of_one_the_parcel_is_lost(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    own = party_settings(settings, queue, sandbox_transit_time=timedelta(0), sandbox_loss_rate=1.0)
    async with stand_in(client, queue) as order:
        tracking, _ = await shipped(sessions, order)
        await SandboxCarrierTracking(client, own).start_tracking(tracking, order.order_id, order.shipment_id)
        outcome = await client.get_workflow_handle(sandbox_carrier_workflow_id(tracking)).result()
        received = await order.received()
    assert outcome == "lost"
    assert [r.event.type for r in received if r.event] == [
        CarrierEventType.in_transit,
        CarrierEventType.out_for_delivery,
        CarrierEventType.lost,
    ]


async def test_an_event_refused_for_good_stops_the_carrier(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    own = party_settings(settings, queue, sandbox_transit_time=timedelta(0))
    async with stand_in(client, queue, Rules(refuse_events=[CarrierEventType.out_for_delivery])) as order:
        tracking, _ = await shipped(sessions, order)
        await SandboxCarrierTracking(client, own).start_tracking(tracking, order.order_id, order.shipment_id)
        outcome = await client.get_workflow_handle(sandbox_carrier_workflow_id(tracking)).result()
        received = await order.received()
    assert outcome == "stopped: out_for_delivery refused"
    assert [r.event.type for r in received if r.event] == [CarrierEventType.in_transit]


# ---- the client layer ----


async def test_reports_through_the_client_layer(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str
) -> None:
    async with stand_in(client, queue, Rules(label_delay=timedelta(minutes=5))) as order:
        picked = WarehouseReport(shipment_id=order.shipment_id, step=WarehouseStep.picked, report_id="r1")
        outcome = await fulfilment.submit_warehouse_report(client, picked, update_id="u-1")
        assert (outcome.shipment_id, outcome.detail) == (order.shipment_id, "picked")
        # the same update id again (a retry whose answer was lost) gets the first answer ...
        assert await fulfilment.submit_warehouse_report(client, picked, update_id="u-1") == outcome
        # ... without one, the same report again is a duplicate, refused for good
        with pytest.raises(Refused, match="duplicate") as refused:
            await fulfilment.submit_warehouse_report(client, picked)
        assert not isinstance(refused.value, fulfilment.ReportTooEarly)

        packed = WarehouseReport(shipment_id=order.shipment_id, step=WarehouseStep.packed, parcels_g=[900])
        await fulfilment.submit_warehouse_report(client, packed)
        handed = WarehouseReport(shipment_id=order.shipment_id, step=WarehouseStep.handed_over)
        with pytest.raises(fulfilment.ReportTooEarly, match="label is not printed"):
            await fulfilment.submit_warehouse_report(client, handed)

        tracking, _ = await shipped(sessions, order)
        event = CarrierEvent(
            tracking_number=tracking, type=CarrierEventType.in_transit, event_id="e1", at=datetime.now(UTC)
        )
        assert (await fulfilment.submit_carrier_event(client, sessions, event)).detail == "in_transit"
        with pytest.raises(Refused, match="duplicate"):
            await fulfilment.submit_carrier_event(client, sessions, event)

    unknown = WarehouseReport(shipment_id=f"{unique('NOPE')}-S1", step=WarehouseStep.picked)
    with pytest.raises(fulfilment.UnknownShipment, match=unknown.shipment_id):
        await fulfilment.submit_warehouse_report(client, unknown)
    not_a_shipment = WarehouseReport(shipment_id="ORDER-7", step=WarehouseStep.picked)
    with pytest.raises(fulfilment.UnknownShipment, match="ORDER-7"):
        await fulfilment.submit_warehouse_report(client, not_a_shipment)
    lost = CarrierEvent(
        tracking_number="NO-SUCH-PARCEL", type=CarrierEventType.lost, event_id="x", at=datetime.now(UTC)
    )
    with pytest.raises(fulfilment.UnknownTracking, match="NO-SUCH-PARCEL"):
        await fulfilment.submit_carrier_event(client, sessions, lost)


# ---- the warehouse's queue ----


def test_warehouse_queue_lists_released_work_oldest_first(sessions: SessionFactory) -> None:
    warehouse, elsewhere = add_warehouse(sessions), add_warehouse(sessions)
    order_id = unique("Q")
    now = datetime.now(UTC).replace(microsecond=0)

    def ship(
        n: int,
        status: ShipmentStatus,
        age_min: int | None,
        where: str = warehouse,
        label_ref: str | None = None,
        reservations: Sequence[tuple[str, int, str]] = (),
    ) -> str:
        shipment_id = f"{order_id}-S{n}"
        released = now - timedelta(minutes=age_min) if age_min is not None else None
        add_shipment(
            sessions,
            order_id,
            shipment_id,
            where,
            status,
            released,
            label_ref=label_ref,
            reservations=reservations,
        )
        return shipment_id

    newest = ship(1, ShipmentStatus.released, 5, reservations=[("MUG", 2, "active"), ("CUP", 1, "released")])
    oldest = ship(2, ShipmentStatus.picked, 60, reservations=[("MUG", 1, "picked")])
    middle = ship(3, ShipmentStatus.packed, 30, label_ref="LBL-SBX1", reservations=[("PAN", 4, "picked")])
    ship(4, ShipmentStatus.shipped, 90)  # handed over: no longer the warehouse's
    ship(5, ShipmentStatus.allocated, None)  # not released yet
    ship(6, ShipmentStatus.released, 120, where=elsewhere)  # another warehouse's

    queue = fulfilment.warehouse_queue(sessions, warehouse)

    assert [q.shipment_id for q in queue] == [oldest, middle, newest]
    by_id = {q.shipment_id: q for q in queue}
    assert by_id[newest].lines == [ShipmentLine(sku="MUG", quantity=2)]  # a released reservation is not work
    assert by_id[middle].label_ref == "LBL-SBX1" and by_id[middle].status == ShipmentStatus.packed
    assert by_id[oldest].released_at == now - timedelta(minutes=60)
    assert {q.order_id for q in queue} == {order_id}
    with pytest.raises(UnknownWarehouse, match="unknown warehouse NO-SUCH-WH"):
        fulfilment.warehouse_queue(sessions, "NO-SUCH-WH")


# ---- parcels and labels ----


def test_parcels_hold_at_most_twenty_kilos() -> None:
    assert split_into_parcels([]) == []
    assert split_into_parcels([(250, 2)]) == [650]
    assert split_into_parcels([(9000, 3), (250, 2)]) == [18_150, 9_650]
    assert split_into_parcels([(25_000, 2)]) == [25_150, 25_150]  # too heavy to share: one each
    assert all(p <= 20_000 for p in split_into_parcels([(333, 500), (1200, 7)]))
    many = split_into_parcels([(10_000, 500)])  # 5 tonnes: at most 50 parcels in a report
    assert len(many) <= 50 and sum(many) >= 5_000_000


def test_a_booking_carries_its_label_reference(sessions: SessionFactory) -> None:
    carrier = SandboxCarrier(sessions)
    key = unique("order-LBL") + ":ship:S1"
    booking = carrier.book(key, 900, "SW1Y 4JH")
    assert booking.label_ref == f"LBL-{booking.tracking_number}"
    assert carrier.book(key, 900, "SW1Y 4JH") == booking  # the same booking again
