"""Workflow types, workflow ids and message names, defined once.

The workflows register their handlers under these names and the client layer calls them by these
names, so the client layer needs no import of workflow code. The values are the method names the
first histories were recorded with: changing one breaks every running order.
"""

from __future__ import annotations

from enum import StrEnum

ORDER_WORKFLOW = "OrderWorkflow"
REPLENISHMENT_WORKFLOW = "ReplenishmentWorkflow"
# the sandbox parties: a warehouse working through one released shipment, a carrier carrying one parcel
SANDBOX_WAREHOUSE_WORKFLOW = "SandboxWarehouseWorkflow"
SANDBOX_CARRIER_WORKFLOW = "SandboxCarrierWorkflow"
# the sandbox warehouse's update: may its shipment go to another address (an order edit after release)
SANDBOX_WAREHOUSE_CHANGE_ADDRESS = "change_address"
_ORDER_PREFIX = "order-"


def order_workflow_id(order_id: str) -> str:
    return f"{_ORDER_PREFIX}{order_id}"


def order_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix(_ORDER_PREFIX)


def replenishment_workflow_id(sku: str, warehouse: str) -> str:
    return f"replenish-{sku}-{warehouse}"


def sandbox_warehouse_workflow_id(shipment_id: str) -> str:
    return f"warehouse-sandbox-{shipment_id}"


def sandbox_carrier_workflow_id(tracking_number: str) -> str:
    return f"carrier-sandbox-{tracking_number}"


def order_id_of_shipment(shipment_id: str) -> str:
    """Shipment ids are `<order id>-S<n>` (see the reserve step): the order a report is for."""
    order_id, sep, number = shipment_id.rpartition("-S")
    if not sep or not order_id or not number.isdigit():
        raise ValueError(f"{shipment_id!r} is not a shipment id (ORDER-S<n>)")
    return order_id


def step_key(workflow_id: str, step: str) -> str:
    """Idempotency key of an outside-world request: the workflow id plus the step."""
    return f"{workflow_id}:{step}"


class OrderUpdate(StrEnum):
    cancel = "cancel"
    release = "release"
    retry_reservation = "retry_reservation"
    request_return = "request_return"
    customer_return = "customer_return"  # the customer's request (the tracking page)
    decide_return = "decide_return"  # support approves or declines it
    goodwill_refund = "goodwill_refund"
    edit = "edit"  # an order edit before release (issue 26): the shipping address
    wait_settled = "wait_settled"
    # warehouses and carriers report (models/fulfilment.py)
    warehouse_report = "warehouse_report"
    carrier_event = "carrier_event"
    resolve_shipment = "resolve_shipment"


class OrderSignal(StrEnum):
    confirm_delivery = "confirm_delivery"
    submit_feedback = "submit_feedback"
    add_note = "add_note"
    return_received = "return_received"


class OrderQuery(StrEnum):
    view = "view"


class ReplenishmentSignal(StrEnum):
    goods_received = "goods_received"
