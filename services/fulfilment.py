"""What warehouses, carriers and support do with released shipments, over the Temporal client.

The client layer of issue 10: the CLI (`warehouse`, `carrier-event`, `resolve`), the HTTP API's
warehouse and carrier endpoints and the sandbox parties (sandbox/activities.py) all report
through these functions. Reports reach the order's workflow as updates; its validators refuse a
duplicate or out-of-order report (Refused) or one that comes before the order is ready for it
(ReportTooEarly: try again later).
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from db import SessionFactory
from domain.shipments import QueuedShipment, shipment_by_tracking
from domain.shipments import warehouse_queue as _warehouse_queue
from models.fulfilment import CarrierEvent, ReportOutcome, ReportRefusal, ResolveRequest, WarehouseReport
from models.orders import OrderView
from models.workflow_names import OrderUpdate, order_id_of_shipment
from services.orders import Refused, UnknownOrder, update_order

# `type` of the ApplicationErrors the order's update validators refuse reports with


class ReportTooEarly(Refused):
    """The order is not ready for this report yet (e.g. `handed_over` before the label is printed)."""


class UnknownShipment(LookupError):
    def __init__(self, shipment_id: str) -> None:
        super().__init__(f"unknown shipment {shipment_id}")


class UnknownTracking(LookupError):
    def __init__(self, tracking_number: str) -> None:
        super().__init__(f"unknown tracking number {tracking_number}")


_REFUSALS: dict[str, type[Refused]] = {ReportRefusal.too_early: ReportTooEarly}


async def submit_warehouse_report(
    client: Client, report: WarehouseReport, *, update_id: str | None = None
) -> ReportOutcome:
    """A warehouse's report on a released shipment, to the shipment's order.

    `update_id` (the sandbox warehouse's retries): a repeat gets the first attempt's answer rather than
    a refusal as a duplicate. People and WMS webhooks leave it out: their repeat is refused as such."""
    try:
        order_id = order_id_of_shipment(report.shipment_id)
    except ValueError:
        raise UnknownShipment(report.shipment_id) from None
    try:
        return await update_order(
            client,
            order_id,
            OrderUpdate.warehouse_report,
            ReportOutcome,
            report,
            update_id=update_id,
            refusals=_REFUSALS,
        )
    except UnknownOrder:
        raise UnknownShipment(report.shipment_id) from None


async def submit_carrier_event(
    client: Client, sessions: SessionFactory, event: CarrierEvent, *, update_id: str | None = None
) -> ReportOutcome:
    """A carrier's tracking event, to the order of the shipment with that tracking number.
    `update_id` as for submit_warehouse_report."""
    tracked = await asyncio.to_thread(shipment_by_tracking, sessions, event.tracking_number)
    if tracked is None:
        raise UnknownTracking(event.tracking_number)
    try:
        return await update_order(
            client,
            tracked.order_id,
            OrderUpdate.carrier_event,
            ReportOutcome,
            event,
            update_id=update_id,
            refusals=_REFUSALS,
        )
    except UnknownOrder:  # a shipment row whose order has no workflow (any more): nobody to tell
        raise UnknownTracking(event.tracking_number) from None


async def resolve_shipment(client: Client, order_id: str, request: ResolveRequest) -> OrderView:
    """Support's choice for a lost or returned parcel: reship or refund."""
    return await update_order(
        client, order_id, OrderUpdate.resolve_shipment, OrderView, request, refusals=_REFUSALS
    )


def warehouse_queue(sessions: SessionFactory, warehouse: str) -> list[QueuedShipment]:
    """Shipments released to `warehouse` and not yet handed over, oldest release first. Raises
    domain.shipments.UnknownWarehouse."""
    return _warehouse_queue(sessions, warehouse)
