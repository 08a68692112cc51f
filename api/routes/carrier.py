"""The carrier's webhook: tracking events by tracking number; and support's choice for a parcel the
carrier lost or sent back (reship or refund)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, model_validator

from api.auth import Carrier, Support
from api.errors import ApiError, ErrorBody
from api.idempotency import IDEMPOTENT
from api.routes import JSON_BODY, StrictJsonRoute
from api.routes.warehouse import ShipmentId, too_early
from api.state import AppState, app_state
from domain.shipments import TrackedShipment, shipment_by_tracking
from models.fulfilment import CarrierEvent, DeliveryAttempt, ResolveRequest
from models.orders import ExternalId, OptionalText, OrderView, ShipmentStatus, Timestamp, TrackingNumber
from models.shipping import CarrierEventType, Resolution
from services import fulfilment, orders

router = APIRouter(tags=["carrier"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]


class CarrierEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tracking_number: TrackingNumber
    type: CarrierEventType
    # the carrier's own id: (tracking number, event id) is recorded once. Required but for `delivered`,
    # which without one is the delivery confirmation of old (idempotent by the shipment's status)
    event_id: ExternalId | None = None
    at: Timestamp | None = None  # when it happened (no offset: UTC); default the time it arrives
    place: OptionalText | None = None
    attempt: DeliveryAttempt | None = None  # delivery_failed: which attempt

    @model_validator(mode="after")
    def _event_id_unless_delivered(self) -> CarrierEventIn:
        if self.event_id is None and self.type != CarrierEventType.delivered:
            raise ValueError(f"event_id is required for a {self.type.value} event")
        return self


class CarrierEventResult(BaseModel):
    order_id: str
    shipment_id: str
    duplicate: bool  # True: this event was recorded before (or the shipment was already delivered)
    detail: str | None = None  # what the event changed, in words


@router.post(
    "/carrier/events",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses={
        200: {"model": CarrierEventResult, "description": "recorded before: nothing changed (idempotent)"},
        404: {"model": ErrorBody, "description": "unknown tracking number"},
        409: {
            "model": ErrorBody,
            "description": "refused with the reason (e.g. the shipment is cancelled, or the event is out "
            "of order); `too_early`: retry after `Retry-After` seconds",
        },
        422: {"model": ErrorBody, "description": "invalid fields, each named"},
    },
    summary="A tracking event from the carrier",
)
async def carrier_event(
    body: CarrierEventIn, who: Carrier, state: State, response: Response
) -> CarrierEventResult:
    """A tracking event by tracking number: `in_transit`, `out_for_delivery`, `delivered`,
    `delivery_failed` (with `attempt`), `exception`, `lost`, `returned_to_sender`. Idempotent by
    (tracking number, `event_id`): sending an event again answers 200 with `duplicate: true` and
    changes nothing. A `delivered` without `event_id` is the delivery confirmation of old."""
    if body.event_id is None:
        return await _legacy_delivery(body.tracking_number, who.name, state, response)
    event = CarrierEvent(
        tracking_number=body.tracking_number,
        type=body.type,
        event_id=body.event_id,
        at=body.at or datetime.now(UTC),
        place=body.place,
        attempt=body.attempt,
        by=who.name,
    )
    try:
        outcome = await fulfilment.submit_carrier_event(state.client, state.sessions, event)
    except fulfilment.ReportTooEarly as exc:
        raise too_early(exc) from None
    except orders.Refused as exc:
        if "duplicate" not in str(exc).lower():
            raise
        found = await _tracked(state, body.tracking_number)
        response.status_code = status.HTTP_200_OK
        return CarrierEventResult(
            order_id=found.order_id, shipment_id=found.shipment_id, duplicate=True, detail=str(exc)
        )
    return CarrierEventResult(
        order_id=outcome.order_id, shipment_id=outcome.shipment_id, duplicate=False, detail=outcome.detail
    )


async def _legacy_delivery(
    tracking_number: str, by: str, state: AppState, response: Response
) -> CarrierEventResult:
    """`delivered` without an event id: a shipment already delivered answers 200 `duplicate: true`."""
    found = await _tracked(state, tracking_number)
    view = await orders.order_view(state.client, found.order_id)
    shipment = next((s for s in view.shipments if s.id == found.shipment_id), None)
    if shipment is not None and shipment.status == ShipmentStatus.delivered:
        response.status_code = status.HTTP_200_OK
        return CarrierEventResult(order_id=found.order_id, shipment_id=found.shipment_id, duplicate=True)
    await orders.confirm_delivery(state.client, found.order_id, found.shipment_id, by=by)
    return CarrierEventResult(order_id=found.order_id, shipment_id=found.shipment_id, duplicate=False)


async def _tracked(state: AppState, tracking_number: str) -> TrackedShipment:
    found = await run_in_threadpool(shipment_by_tracking, state.reads, tracking_number)
    if found is None:
        raise ApiError(404, "not_found", f"unknown tracking number {tracking_number}")
    return found


class ResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Resolution


@router.post(
    "/orders/{order_id}/shipments/{shipment_id}/resolution",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses={
        404: {"model": ErrorBody, "description": "unknown order or shipment"},
        409: {"model": ErrorBody, "description": "the shipment is not lost or returned: nothing to resolve"},
        422: {"model": ErrorBody, "description": "invalid fields, each named"},
    },
    summary="Reship or refund a lost or returned parcel",
)
async def resolve(
    order_id: Annotated[str, Path(max_length=64)],
    shipment_id: ShipmentId,
    body: ResolutionIn,
    who: Support,
    state: State,
) -> OrderView:
    """Support's choice for a parcel the carrier lost or sent back: `reship` sends its lines again as a
    new shipment (a claim is lodged with the carrier), `refund` refunds them. Answers the order's view."""
    request = ResolveRequest(shipment_id=shipment_id, resolution=body.resolution, by=who.name)
    return await fulfilment.resolve_shipment(state.client, order_id, request)
