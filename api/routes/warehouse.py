"""Warehouses as a party of their own: their queue of released shipments, and what they report back
(picked, packed, handed over). See models/fulfilment.py."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Role, Warehouse, allow
from api.errors import KEYED_ROUTE_ERRORS, ApiError, ErrorBody, Responses
from api.idempotency import IDEMPOTENT
from api.routes import JSON_BODY, StrictJsonRoute
from api.state import AppState, app_state
from domain.shipments import QueuedShipment
from models.fulfilment import MAX_PARCELS, ParcelWeight, PickedLine, ReportOutcome, WarehouseReport
from models.fulfilment import WarehouseStep as Step
from models.orders import ExternalId
from services import fulfilment

router = APIRouter(tags=["warehouse"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]
Reader = Annotated[Principal, Depends(allow(Role.warehouse, Role.support))]
T = TypeVar("T")

# a shipment id in a path: what the reports' models accept (else 422, before anything is asked)
ShipmentId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", description="ORDER-S<n>")
]
RETRY_AFTER_S = 5  # a report that came too early: when to try again
ReportId = ExternalId | None

_errors = KEYED_ROUTE_ERRORS
_report_errors: Responses = _errors | {
    404: {"model": ErrorBody, "description": "unknown shipment"},
    409: {
        "model": ErrorBody,
        "description": "refused with the reason (a duplicate or out of order): nothing changed; or "
        "`too_early`: the order is not ready for it yet, retry after `Retry-After` seconds",
    },
    422: {"model": ErrorBody, "description": "invalid fields, each named"},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PickedIn(_Body):
    lines: list[PickedLine] = Field(default=[], max_length=200)  # lines left out were picked in full
    report_id: ReportId = None  # the warehouse's own id for this report


class PackedIn(_Body):
    parcels_g: list[ParcelWeight] = Field(min_length=1, max_length=MAX_PARCELS)
    # only when no pick was reported: this report confirms the pick too (lines as for `picked`)
    lines: list[PickedLine] = Field(default=[], max_length=200)
    report_id: ReportId = None


class HandedOverIn(_Body):
    report_id: ReportId = None


@router.get(
    "/warehouses/{code}/queue",
    responses=_errors | {404: {"model": ErrorBody, "description": "unknown warehouse"}},
    summary="Shipments released to a warehouse and waiting, oldest first",
)
async def queue(code: Annotated[str, Path(max_length=64)], who: Reader, state: State) -> list[QueuedShipment]:
    """The same list as `starter.py warehouse queue WH --json`: each with its pick list and, once the
    carrier booking is made, its label."""
    return await run_in_threadpool(fulfilment.warehouse_queue, state.reads, code)


@router.post(
    "/shipments/{shipment_id}/picked",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_report_errors,
    summary="The warehouse picked a shipment",
)
async def picked(shipment_id: ShipmentId, body: PickedIn, who: Warehouse, state: State) -> ReportOutcome:
    """Units found per line; a line left out was picked in full, fewer than ordered is a short pick."""
    report = WarehouseReport(
        shipment_id=shipment_id, step=Step.picked, lines=body.lines, report_id=body.report_id, by=who.name
    )
    return await _report(fulfilment.submit_warehouse_report(state.client, report))


@router.post(
    "/shipments/{shipment_id}/packed",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_report_errors,
    summary="The warehouse packed a shipment",
)
async def packed(shipment_id: ShipmentId, body: PackedIn, who: Warehouse, state: State) -> ReportOutcome:
    """One weight in grams per parcel; the carrier booking (and its label) follows. Straight after the
    release (no `picked` reported) it confirms the pick too: `lines` as for `picked`."""
    report = WarehouseReport(
        shipment_id=shipment_id,
        step=Step.packed,
        parcels_g=body.parcels_g,
        lines=body.lines,
        report_id=body.report_id,
        by=who.name,
    )
    return await _report(fulfilment.submit_warehouse_report(state.client, report))


@router.post(
    "/shipments/{shipment_id}/handed-over",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_report_errors,
    summary="The warehouse handed a shipment to the carrier",
)
async def handed_over(
    shipment_id: ShipmentId, who: Warehouse, state: State, body: HandedOverIn | None = None
) -> ReportOutcome:
    """The body may be left out. Too early (`too_early`, 409 with `Retry-After`) until the label is
    printed."""
    report_id = body.report_id if body is not None else None
    report = WarehouseReport(shipment_id=shipment_id, step=Step.handed_over, report_id=report_id, by=who.name)
    return await _report(fulfilment.submit_warehouse_report(state.client, report))


async def _report(call: Awaitable[T]) -> T:
    """A report's answer; one that came before the order is ready for it is 409 `too_early` with
    `Retry-After` (the rest of the refusals map in api/errors.py)."""
    try:
        return await call
    except fulfilment.ReportTooEarly as exc:
        raise too_early(exc) from None


def too_early(exc: Exception) -> ApiError:
    error = ApiError(409, "too_early", f"{exc}; retry later")
    error.headers = {"Retry-After": str(RETRY_AFTER_S)}
    return error
