"""The console's session: a signed cookie (Starlette's SessionMiddleware, itsdangerous) that holds the
signed-in API key's row id and the CSRF token of the session's forms — never the key itself.

The cookie's signature carries the time it was issued, and it is issued once, at sign-in: a session
lasts `session_ttl` from then, however busy. Every request re-checks that the key is still in use
(through the key cache), so revoking a key ends its sessions within `api_key_cache_ttl`.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from api.state import AppState
from config import Settings
from domain.api_keys import Principal, Role, principal_by_id
from domain.tracking_links import server_secret

COOKIE = "oms_session"
SIGN_IN = "/console/sign-in"
CONSOLE_ROLES = frozenset({Role.support, Role.admin})
_KEY_ID, _CSRF = "key_id", "csrf"


class SignInRequired(Exception):
    """A console page asked for without a session: the browser is sent to sign in."""


def install(app: FastAPI, settings: Settings) -> None:
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie=COOKIE,
        max_age=int(settings.session_ttl.total_seconds()),
        same_site="lax",  # sent by the Web UI's fetch (same site), not by other sites' forms
        https_only=settings.session_cookie_secure,
    )


async def _to_sign_in(_: Request, __: Exception) -> Response:
    return RedirectResponse(SIGN_IN, status_code=303, headers={"Cache-Control": "no-store"})


def session_secret(settings: Settings) -> str:
    return server_secret(settings)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use: the sign-in form needs one before anyone signs in."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


def csrf_matches(request: Request, sent: str) -> bool:
    expected = request.session.get(_CSRF)
    if not isinstance(expected, str) or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def start(request: Request, who: Principal) -> None:
    """A new session for `who`, with a new CSRF token: nothing is carried over from before sign-in."""
    request.session.clear()
    request.session.update({_KEY_ID: who.key_id, _CSRF: secrets.token_urlsafe(32)})
    request.state.principal = who  # for the audit line


def end(request: Request) -> None:
    request.session.clear()  # the middleware then expires the cookie


async def signed_in(request: Request, state: AppState) -> Principal | None:
    """Who the session belongs to, while their key is in use; the session of a revoked key is ended."""
    key_id = request.session.get(_KEY_ID)
    if type(key_id) is not int:  # no session, or only the sign-in form's CSRF token
        return None
    who = state.keys.get_by_id(key_id)
    if who is None:
        who = await run_in_threadpool(principal_by_id, state.reads, key_id)
        if who is None or who.role not in CONSOLE_ROLES:
            end(request)
            return None
        state.keys.put_by_id(key_id, who)
    request.state.principal = who  # for the audit line
    return who


async def viewer(request: Request, state: AppState) -> Principal:
    """The signed-in support or admin person of a console page; else SignInRequired, which sends the
    browser to the sign-in form."""
    who = await signed_in(request, state)
    if who is None:
        raise SignInRequired
    return who
