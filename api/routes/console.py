"""The support console: server-rendered pages (Jinja2, no script). For now, signing in with a support or
admin API key, which starts the session the Temporal Web UI's codec calls ride on, and how to point the
Web UI at the codec server. Its pages extend `api/templates/base.html`.

Forms carry the session's CSRF token; pages are never cached, framed or given a Referer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api import console_session
from api.console_session import CONSOLE_ROLES
from api.state import AppState, app_state
from domain.api_keys import Principal, authenticate

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
State = Annotated[AppState, Depends(app_state)]

HOME, SIGN_IN = "/console", "/console/sign-in"
_NO_CSRF = "this form has expired or did not come from this page: reload it and try again"
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none';"
        " base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/sign-in")
async def sign_in_form(request: Request, state: State) -> Response:
    if await console_session.signed_in(request, state) is not None:
        return _redirect(HOME)
    return _sign_in_page(request, state)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    state: State,
    api_key: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    if not console_session.csrf_matches(request, csrf):
        return _sign_in_page(request, state, _NO_CSRF, 403)
    who = await run_in_threadpool(authenticate, state.reads, api_key.strip())
    if who is None:
        return _sign_in_page(request, state, "unknown or revoked API key", 401)
    if who.role not in CONSOLE_ROLES:
        request.state.principal = who  # the audit line names who tried
        message = f"a {who.role.value} key cannot use the console: sign in with a support or admin key"
        return _sign_in_page(request, state, message, 403)
    console_session.start(request, who)
    return _redirect(HOME)


@router.get("")
async def home(request: Request, state: State) -> Response:
    who = await console_session.signed_in(request, state)
    if who is None:
        return _redirect(SIGN_IN)
    return _home_page(request, state, who)


@router.post("/sign-out")
async def sign_out(request: Request, state: State, csrf: Annotated[str, Form()] = "") -> Response:
    who = await console_session.signed_in(request, state)
    if who is None:  # signed out already (or the session has ended): nothing to do
        return _redirect(SIGN_IN)
    if not console_session.csrf_matches(request, csrf):
        return _home_page(request, state, who, _NO_CSRF, 403)
    console_session.end(request)
    return _redirect(SIGN_IN)


def _sign_in_page(request: Request, state: AppState, message: str = "", status: int = 200) -> Response:
    ttl = _in_words(state.settings.session_ttl)
    return _page(request, "sign_in.html", {"message": message, "session_ttl": ttl}, status)


def _home_page(
    request: Request, state: AppState, who: Principal, message: str = "", status: int = 200
) -> Response:
    origins = state.settings.temporal_ui_origins
    context = {
        "who": who,
        "message": message,
        "temporal_ui": origins[0] if origins else None,
        "ui_origins": origins,
        "codec_url": f"{str(request.base_url).rstrip('/')}/codec",
    }
    return _page(request, "console.html", context, status)


def _page(request: Request, template: str, context: dict[str, Any], status: int) -> Response:
    context = {"csrf": console_session.csrf_token(request), **context}
    return templates.TemplateResponse(request, template, context, status_code=status, headers=_HEADERS)


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def _in_words(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"
