"""Outbound webhooks (docs/webhooks.md): admins subscribe URLs to event types, read the delivery log
and redeliver. Admin keys only (403 for any other role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from api.auth import Principal, allow
from api.errors import KEYED_ROUTE_ERRORS, ApiError, ErrorBody, Responses
from api.idempotency import IDEMPOTENT
from api.routes import JSON_BODY, StrictJsonRoute
from api.state import AppState, app_state
from domain.webhook_subscriptions import DELIVERY_LIMIT
from models.webhooks import DeliveryView, RotateSecretIn, WebhookCreated, WebhookIn, WebhookView
from services import webhooks

router = APIRouter(tags=["webhooks"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]
Admin = Annotated[Principal, Depends(allow())]  # admin only: no other role is named

_unknown: Responses = KEYED_ROUTE_ERRORS | {404: {"model": ErrorBody, "description": "unknown subscription"}}


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JSON_BODY],
    responses=KEYED_ROUTE_ERRORS
    | {
        200: {"model": WebhookCreated, "description": "the same Idempotency-Key's subscription"},
        409: {"model": ErrorBody, "description": "the Idempotency-Key was used for another subscription"},
        422: {"model": ErrorBody, "description": "an unknown event type, a bad URL or a non-public target"},
    },
    summary="Subscribe a URL to event types",
)
async def subscribe(
    body: WebhookIn,
    who: Admin,
    state: State,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(description="a retry with the same key creates nothing new", max_length=200)
    ] = None,
) -> WebhookCreated:
    """The answer holds the signing `secret` (`whsec_...`): shown this once, never by GET."""
    try:
        created, new = await webhooks.subscribe(
            state.sessions, state.settings, body, who.name, idempotency_key
        )
    except webhooks.TargetRefused as exc:
        raise ApiError(422, "invalid_request", str(exc), [f"url: {exc}"]) from None
    except webhooks.WebhookConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    response.headers["Location"] = f"/webhooks/{created.id}"
    if not new:
        response.status_code = status.HTTP_200_OK
    return created


@router.get("/webhooks", responses=KEYED_ROUTE_ERRORS, summary="Subscriptions (never their secrets)")
async def list_subscriptions(who: Admin, state: State) -> list[WebhookView]:
    return await webhooks.subscriptions(state.reads)


@router.get("/webhooks/{subscription_id}", responses=_unknown, summary="One subscription")
async def get_subscription(subscription_id: str, who: Admin, state: State) -> WebhookView:
    try:
        return await webhooks.subscription(state.reads, subscription_id)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_unknown,
    summary="Remove a subscription",
)
async def remove_subscription(subscription_id: str, who: Admin, state: State) -> Response:
    """Nothing more is sent to it, pending deliveries included; its delivery log stays readable."""
    try:
        await webhooks.unsubscribe(state.sessions, subscription_id)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/{subscription_id}/enable", responses=_unknown, summary="Enable a disabled subscription"
)
async def enable_subscription(subscription_id: str, who: Admin, state: State) -> WebhookView:
    """After it was disabled for failing: what was pending goes out now, in order, with fresh retry
    windows. An active subscription stays as it is (idempotent)."""
    try:
        return await webhooks.enable(state.sessions, subscription_id)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.post(
    "/webhooks/{subscription_id}/rotate-secret",
    dependencies=[JSON_BODY, IDEMPOTENT],
    responses=_unknown,
    summary="A new signing secret",
)
async def rotate_secret(
    subscription_id: str, who: Admin, state: State, body: RotateSecretIn | None = None
) -> WebhookCreated:
    """The new secret is shown this once. The old one keeps signing next to it (two signatures in
    `webhook-signature`) for `keep_old_for_seconds`, default OMS_WEBHOOK_SECRET_OVERLAP (24 h), so the
    receiver can switch without losing a message; 0 stops it at once (a leaked secret)."""
    keep = body.keep_old_for() if body is not None else None
    try:
        return await webhooks.rotate_secret(state.sessions, state.settings, subscription_id, keep)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.get(
    "/webhooks/{subscription_id}/deliveries", responses=_unknown, summary="A subscription's delivery log"
)
async def list_deliveries(
    subscription_id: str,
    who: Admin,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = DELIVERY_LIMIT,
) -> list[DeliveryView]:
    """Newest first, each with its attempts (status code, latency, response excerpt)."""
    try:
        return await webhooks.deliveries(state.reads, subscription_id, limit)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@router.post(
    "/webhooks/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=KEYED_ROUTE_ERRORS
    | {
        404: {"model": ErrorBody, "description": "unknown delivery"},
        409: {"model": ErrorBody, "description": "its subscription is removed or disabled"},
    },
    summary="Send a delivery again",
)
async def redeliver(delivery_id: int, who: Admin, state: State) -> DeliveryView:
    """Queued now under the same `webhook-id`, with a fresh retry window; the worker sends it in its
    order's turn. Asking again before it is sent changes nothing (idempotent)."""
    try:
        return await webhooks.redeliver(state.sessions, delivery_id)
    except webhooks.UnknownWebhook as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except webhooks.WebhookConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
