"""The console's session: a signed cookie (Starlette's SessionMiddleware, itsdangerous) that holds the
session's id and the CSRF token of its forms — never the key itself — and a row on the server
(`domain/console_sessions.py`) that says whether the session is still live.

A session lasts `session_ttl` from sign-in, however busy. Signing out ends its row, so a copy of the
cookie stops working too: at once in this process, within `api_key_cache_ttl` in the others (each
remembers a live session that long, as it does a key). Revoking the key ends its sessions within
the same time: the lookup checks the key as well.
"""

from __future__ import annotations

import hmac
import secrets
import time

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from api.state import AppState
from config import Settings
from domain.api_keys import Principal, Role
from domain.console_sessions import end_session, session_principal, start_session
from domain.tracking_links import server_secret

COOKIE = "oms_session"
SIGN_IN = "/console/sign-in"
CONSOLE_ROLES = frozenset({Role.support, Role.admin})
_SESSION, _CSRF = "session", "csrf"


class SignInRequired(Exception):
    """A console page asked for without a session: the browser is sent to sign in."""


class SessionCache:
    """Live sessions seen in the last `ttl` seconds and who they belong to: like the key cache, it spares
    most requests a database lookup, at the price of another process noticing a sign-out only after
    up to `ttl`. This process forgets a session the moment it ends it."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, session_id: str) -> Principal | None:
        entry = self._entries.get(session_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, session_id: str, who: Principal) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[session_id] = (time.monotonic() + self._ttl, who)

    def drop(self, session_id: str) -> None:
        self._entries.pop(session_id, None)


def install(app: FastAPI, settings: Settings) -> None:
    app.state.console_sessions = SessionCache(settings.api_key_cache_ttl.total_seconds())
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


async def start(request: Request, state: AppState, who: Principal) -> None:
    """A new session for `who`, with a new CSRF token: nothing is carried over from before sign-in."""
    session_id = await run_in_threadpool(start_session, state.sessions, who, state.settings.session_ttl)
    request.session.clear()
    request.session.update({_SESSION: session_id, _CSRF: secrets.token_urlsafe(32)})
    request.state.principal = who  # for the audit line


async def end(request: Request, state: AppState) -> None:
    """Sign-out: the session ends on the server (for every copy of the cookie), then in this browser."""
    session_id = request.session.get(_SESSION)
    if isinstance(session_id, str):
        await run_in_threadpool(end_session, state.sessions, session_id)
        _cache(request).drop(session_id)
    request.session.clear()  # the middleware then expires the cookie


async def signed_in(request: Request, state: AppState) -> Principal | None:
    """Who the session belongs to while it is live; a session ended, expired or of a revoked key is
    forgotten by this browser too."""
    session_id = request.session.get(_SESSION)
    if not isinstance(session_id, str):  # no session, or only the sign-in form's CSRF token
        return None
    cache = _cache(request)
    who = cache.get(session_id)
    if who is None:
        who = await run_in_threadpool(session_principal, state.reads, session_id)
        if who is None or who.role not in CONSOLE_ROLES:
            request.session.clear()
            return None
        cache.put(session_id, who)
    request.state.principal = who  # for the audit line
    return who


def _cache(request: Request) -> SessionCache:
    return request.app.state.console_sessions


async def viewer(request: Request, state: AppState) -> Principal:
    """The signed-in support or admin person of a console page; else SignInRequired, which sends the
    browser to the sign-in form."""
    who = await signed_in(request, state)
    if who is None:
        raise SignInRequired
    return who
