"""Who is calling, and may they: API keys as bearer tokens, one role each.

Every route names the roles it admits (admin is admitted everywhere). No key or an unknown or revoked
key is 401; a key whose role is not admitted is 403. The caller's name is kept on the request so the
audit line and the order's event log can say who did it.

The codec server also admits the console's session cookie (`key_or_session`): the Temporal Web UI's
browser sends the cookie, not a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import console_session
from api.errors import ApiError
from api.state import AppState, app_state
from domain.api_keys import Principal, Role, authenticate

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="API key",
    description="`Authorization: Bearer <key>`; keys come from `starter.py apikey create --role ROLE --name N`",
)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    state: Annotated[AppState, Depends(app_state)],
) -> Principal:
    if credentials is None:
        raise ApiError(
            401,
            "unauthenticated",
            "an API key is required: Authorization: Bearer <key>",
            bearer_challenge=True,
        )
    who = await identify(state, credentials.credentials)
    if who is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key", bearer_challenge=True)
    request.state.principal = who  # for the audit line
    return who


async def identify(state: AppState, key: str) -> Principal | None:
    """Whose key this is (None: unknown or revoked), from the cache or the database."""
    who = state.keys.get(key)
    if who is None:
        who = await run_in_threadpool(authenticate, state.reads, key)
        if who is not None:
            state.keys.put(key, who)
    return who


async def key_or_session(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    state: Annotated[AppState, Depends(app_state)],
) -> Principal:
    """A bearer key when one is sent (the Temporal CLI's --codec-auth), else the console's session (the
    Temporal Web UI). `request.state.via` says which: `api_key` or `session`."""
    if credentials is not None:
        who = await principal(request, credentials, state)
        request.state.via = "api_key"
        return who
    signed_in = await console_session.signed_in(request, state)
    if signed_in is None:
        raise ApiError(
            401,
            "unauthenticated",
            "an API key (Authorization: Bearer <key>) or a console session (sign in at /console/sign-in)"
            " is required",
            bearer_challenge=True,
        )
    request.state.via = "session"
    return signed_in


def allow(*roles: Role, identify: Callable[..., Awaitable[Principal]] = principal) -> Callable[..., object]:
    """A dependency admitting the given roles and admin; it returns the caller, as `identify` finds
    them (a bearer key unless told otherwise)."""
    admitted = {Role.admin, *roles}
    names = " or ".join(sorted(r.value for r in admitted))

    async def check(who: Principal) -> Principal:
        if who.role not in admitted:
            raise ApiError(403, "forbidden", f"a {who.role.value} key may not do this (it takes {names})")
        return who

    # set here rather than in the signature: annotations are strings here (`from __future__`), which
    # FastAPI resolves among the module's names, and `identify` is not one of them
    check.__annotations__["who"] = Annotated[Principal, Depends(identify)]
    return check


Source = Annotated[Principal, Depends(allow(Role.source))]
Support = Annotated[Principal, Depends(allow(Role.support))]
SourceOrSupport = Annotated[Principal, Depends(allow(Role.source, Role.support))]
SupportOrWarehouse = Annotated[Principal, Depends(allow(Role.support, Role.warehouse))]
Carrier = Annotated[Principal, Depends(allow(Role.carrier))]
Warehouse = Annotated[Principal, Depends(allow(Role.warehouse))]
SupportViaKeyOrSession = Annotated[Principal, Depends(allow(Role.support, identify=key_or_session))]
