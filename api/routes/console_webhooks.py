"""The console's webhooks page, `/console/webhooks`, for an admin session only (support gets 403): the
subscriptions with their latest deliveries and attempts, and forms to subscribe (the secret shown on the
answer page, once), remove, redeliver and rotate a secret, through services/webhooks.py like `/webhooks` and the CLI.

Session, CSRF, page headers and the layout are the console's (`api/routes/console.py`). No script.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import console_session
from api.routes.console import NO_CSRF, State, render_page, see_other
from api.state import AppState
from domain.api_keys import Principal, Role
from models.choices import WebhookEventType
from models.webhooks import WebhookCreated, WebhookIn
from services import webhooks

router = APIRouter(prefix="/console/webhooks", include_in_schema=False)
DELIVERIES_SHOWN = 20  # per subscription
_ADMIN_ONLY = "webhooks are an admin's: sign in with an admin key"


@router.get("")
async def webhooks_page(request: Request, state: State) -> Response:
    who = await console_session.viewer(request, state)
    return await _page(request, state, who)


@router.post("")
async def subscribe_action(
    request: Request,
    state: State,
    csrf: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    who, refusal = await _admin(request, state, csrf)
    if refusal is not None:
        return refusal
    try:
        body = WebhookIn(url=url.strip(), events=events or [])
        created, _ = await webhooks.subscribe(state.sessions, state.settings, body, who.name)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return await _page(request, state, who, f"Not done: {problems}", 422)
    except webhooks.TargetRefused as exc:
        return await _page(request, state, who, f"Not done: url: {exc}", 422)
    return await _page(request, state, who, status=201, created=created)


@router.post("/{subscription_id}/remove")
async def remove_action(
    request: Request, state: State, subscription_id: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    return await _admin_action(request, state, csrf, webhooks.unsubscribe(state.sessions, subscription_id))


@router.post("/{subscription_id}/enable")
async def enable_action(
    request: Request, state: State, subscription_id: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    return await _admin_action(request, state, csrf, webhooks.enable(state.sessions, subscription_id))


@router.post("/{subscription_id}/rotate-secret")
async def rotate_action(
    request: Request,
    state: State,
    subscription_id: str,
    csrf: Annotated[str, Form()] = "",
    stop_old_now: Annotated[str, Form()] = "",
) -> Response:
    """A new secret, shown on the answer page once; the old one signs next to it for
    OMS_WEBHOOK_SECRET_OVERLAP, or stops now when the form says it leaked."""
    who, refusal = await _admin(request, state, csrf)
    if refusal is not None:
        return refusal
    keep = timedelta(0) if stop_old_now else None
    try:
        rotated = await webhooks.rotate_secret(state.sessions, state.settings, subscription_id, keep)
    except webhooks.UnknownWebhook as exc:
        return await _page(request, state, who, f"Not done: {exc}", 404)
    return await _page(request, state, who, created=rotated, rotated=True)


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver_action(
    request: Request, state: State, delivery_id: int, csrf: Annotated[str, Form()] = ""
) -> Response:
    return await _admin_action(request, state, csrf, webhooks.redeliver(state.sessions, delivery_id))


async def _admin_action(
    request: Request, state: AppState, csrf: str, action: Coroutine[Any, Any, object]
) -> Response:
    """Run a form's action for a signed-in admin, then back to the page; a refusal answers on the page
    (unknown: 404, in a state that refuses it: 409). The action is awaited only once admitted."""
    who, refusal = await _admin(request, state, csrf)
    if refusal is not None:
        action.close()  # never started: no "coroutine was never awaited"
        return refusal
    try:
        await action
    except webhooks.UnknownWebhook as exc:
        return await _page(request, state, who, f"Not done: {exc}", 404)
    except webhooks.WebhookConflict as exc:
        return await _page(request, state, who, f"Refused: {exc}", 409)
    return see_other("/console/webhooks")


async def _admin(request: Request, state: AppState, csrf: str) -> tuple[Principal, Response | None]:
    """The signed-in admin, or the page answering why not (support: 403; a stale form: 403)."""
    who = await console_session.viewer(request, state)
    if who.role != Role.admin:
        return who, await _page(request, state, who, _ADMIN_ONLY, 403)
    if not console_session.csrf_matches(request, csrf):
        return who, await _page(request, state, who, NO_CSRF, 403)
    return who, None


async def _page(
    request: Request,
    state: AppState,
    who: Principal,
    message: str = "",
    status: int = 200,
    created: WebhookCreated | None = None,
    rotated: bool = False,
) -> Response:
    context: dict[str, Any] = {
        "who": who,
        "message": message,
        "created": created,
        "rotated": rotated,
        "subscriptions": [],
    }
    if who.role != Role.admin:
        return render_page(request, "console/webhooks.html", {**context, "message": _ADMIN_ONLY}, 403)
    found = await webhooks.subscriptions(state.reads)
    context["subscriptions"] = [
        (w, await webhooks.deliveries(state.reads, w.id, DELIVERIES_SHOWN)) for w in found
    ]
    context["event_types"] = [t.value for t in WebhookEventType]
    return render_page(request, "console/webhooks.html", context, status)
