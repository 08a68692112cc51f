"""Who is calling, and may they: API keys as bearer tokens, one role each.

Every route names the roles it admits (admin is admitted everywhere). No key or an unknown or revoked
key is 401; a key whose role is not admitted is 403. The caller's name is kept on the request so the
audit line and the order's event log can say who did it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
    who = state.keys.get(credentials.credentials)
    if who is None:
        who = await run_in_threadpool(authenticate, state.reads, credentials.credentials)
        if who is not None:
            state.keys.put(credentials.credentials, who)
    if who is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked API key", bearer_challenge=True)
    request.state.principal = who  # for the audit line
    return who


def allow(*roles: Role) -> Callable[..., object]:
    """A dependency admitting the given roles and admin; it returns the caller."""
    admitted = {Role.admin, *roles}
    names = " or ".join(sorted(r.value for r in admitted))

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role not in admitted:
            raise ApiError(403, "forbidden", f"a {who.role.value} key may not do this (it takes {names})")
        return who

    return check


Source = Annotated[Principal, Depends(allow(Role.source))]
Support = Annotated[Principal, Depends(allow(Role.support))]
SourceOrSupport = Annotated[Principal, Depends(allow(Role.source, Role.support))]
SupportOrWarehouse = Annotated[Principal, Depends(allow(Role.support, Role.warehouse))]
Carrier = Annotated[Principal, Depends(allow(Role.carrier))]
Warehouse = Annotated[Principal, Depends(allow(Role.warehouse))]
