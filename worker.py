"""The worker: builds the database engine, adapters and activities, and runs the order workflows.

Run it as `python worker.py` (configuration from OMS_* variables). SIGINT/SIGTERM stop it gracefully:
running activities get time to finish, workflows simply continue on another worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.fulfilment import FulfilmentActivities
from activities.inventory import InventoryActivities
from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.replenishment import ReplenishmentActivities
from activities.returns import ReturnActivities
from adapters.carrier import SandboxCarrier
from adapters.payments import SandboxGateway
from adapters.supplier import SandboxSupplier
from config import Settings, get_settings
from connection import connect, ensure_search_attributes, exit_without_finalizing
from db import SessionFactory, make_engine, make_session_factory
from workflows.order import OrderWorkflow
from workflows.replenishment import ReplenishmentWorkflow

log = logging.getLogger("oms.worker")

WORKFLOWS = [OrderWorkflow, ReplenishmentWorkflow]


def build_activities(sessions: SessionFactory, client: Client, settings: Settings) -> list[object]:
    orders = OrderActivities(sessions)
    payments = PaymentActivities(SandboxGateway(sessions))
    inventory = InventoryActivities(sessions)
    fulfilment = FulfilmentActivities(sessions, SandboxCarrier(sessions))
    notifications = NotificationActivities(sessions)
    returns = ReturnActivities(sessions)
    replenishment = ReplenishmentActivities(
        sessions, client, SandboxSupplier(), settings.task_queue, settings.supplier_lead_time
    )
    # fmt: off
    return [
        orders.record_order, orders.validate_order, orders.screen_order, orders.price_sku,
        orders.record_event, orders.record_feedback,
        payments.authorize_payment, payments.capture_payment, payments.void_payment, payments.refund_payment,
        inventory.reserve_stock, inventory.release_stock, inventory.pick_stock, inventory.restock_picked,
        fulfilment.pack_shipment, fulfilment.ship_shipment, fulfilment.cancel_carrier_booking,
        fulfilment.record_delivery,
        notifications.send_notification,
        returns.record_return, returns.receive_return, returns.close_return,
        replenishment.replenish_if_low, replenishment.release_backorders, replenishment.low_stock,
        replenishment.raise_purchase_order, replenishment.receive_purchase_order,
    ]
    # fmt: on


def workflow_runner() -> SandboxedWorkflowRunner:
    # pydantic validates EmailStr with email_validator, loaded lazily: share it with the sandbox.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator")
    )


def build_worker(
    client: Client, sessions: SessionFactory, settings: Settings, activities: list[object] | None = None
) -> Worker:
    threads = settings.worker_activity_threads
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities if activities is not None else build_activities(sessions, client, settings),
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="oms-activity"),
        max_concurrent_activities=threads,
        graceful_shutdown_timeout=timedelta(seconds=10),
        workflow_runner=workflow_runner(),
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    client = await connect(settings)
    added = await ensure_search_attributes(client)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    engine = make_engine(settings.database_url)
    worker = build_worker(client, make_session_factory(engine), settings)

    async with worker:
        log.info("worker polling task queue %r on %s", settings.task_queue, settings.temporal_address)
        await stop.wait()
        log.info("shutting down")
    engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(get_settings(), stop)

    asyncio.run(_main())
    exit_without_finalizing(0)


if __name__ == "__main__":
    main()
