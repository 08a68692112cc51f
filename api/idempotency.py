"""`Idempotency-Key` on every mutating door: a retried request (same caller, same key, same request)
gets the first answer again and changes nothing twice; the same key with another request is refused
(409 `conflict`), as `POST /orders` answers an order id placed before with another content.

A route opts in with `dependencies=[IDEMPOTENT]` (which also documents the header in OpenAPI); the route
class (api/routes/__init__.py) then wraps the route's request handler in `guarded`, which claims the key
before the handler runs (or answers without running it) and records the handler's answer after it.

Only a 2xx answer is remembered. Every error answer of this API means nothing was changed
(docs/http-api.md, Statuses), so the key is given back and a retry runs anew: a 409 `too_early` or a
503 retried with the same key is then served, not answered the same refusal until the key expires.
One exception to "nothing was changed": services/stock.py writes the stock ledger before it starts a
replenishment or serves backorders over Temporal, so a 503 from those comes after the stock moved. Its
movement carries the request (`door_request`), so the retry finds it and moves nothing again, and only
does what follows.
The rows themselves: domain/idempotency.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Message, Receive

from api.auth import identify
from api.errors import ApiError
from api.state import AppState
from domain import idempotency
from domain.idempotency import Claimed, Conflict, InProgress, KeyedRequest, RecordedAnswer, Replay
from models.stock import DoorRequest
from models.text import CONTROL_CHARACTERS

log = logging.getLogger("oms.api.idempotency")
HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on an answer replayed from the first request
MAX_KEY_LENGTH = 255
# a claim this old that never completed is in doubt: its process died while it ran, perhaps after the
# change. A retry is refused rather than run again (a change twice is what the key is there to prevent)
LEASE = timedelta(minutes=10)
POLL_S = 0.05  # how often a duplicate looks whether the first request has answered
RETRY_AFTER_S = 1
PRUNE_EVERY_S = 60.0  # expired keys are deleted at most this often per process, by a request passing by
_next_prune = 0.0
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


async def _documented_header(
    idempotency_key: Annotated[
        str | None,
        Header(
            description="any string of up to 255 characters, new for each new request: a retry with the "
            "same key and the same request answers the first answer and changes nothing twice "
            "(remembered for OMS_IDEMPOTENCY_TTL, 24 h)",
            max_length=MAX_KEY_LENGTH,
        ),
    ] = None,
) -> None:
    """Nothing to do by the time it runs: `guarded` has handled the key before the handler."""


IDEMPOTENT = Depends(_documented_header)


def takes_idempotency_key(dependencies: Sequence[object]) -> bool:
    """Whether a route's dependencies (FastAPI's `Dependant.dependencies`) include `IDEMPOTENT`."""
    return any(getattr(d, "call", None) is _documented_header for d in dependencies)


def guarded(handler: Handler) -> Handler:
    """Wrap a route's request handler (the route class does it: api/routes/__init__.py)."""

    async def idempotent(request: Request) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await handler(request)
        if (problem := _invalid(key)) is not None:
            raise ApiError(422, "invalid_request", "the Idempotency-Key header is invalid", [problem])
        state: AppState = request.app.state.oms
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        who = await identify(state, token) if scheme.lower() == "bearer" and token else None
        if who is None:  # the route answers 401; nothing is claimed for an unknown caller
            return await handler(request)
        request.state.principal = who  # the audit line names a replay's caller too
        body = await request.body()
        method, path = request.method, request.url.path
        digest = idempotency.request_digest(method, path, request.scope.get("query_string", b""), body)
        keyed = KeyedRequest(caller=who.name, key=key, route=f"{method} {path}", digest=digest)
        outcome = await _claim(state, keyed)
        request.state.idempotency = keyed  # the same scope: the handler's request sees it (door_request)
        if isinstance(outcome, Replay):
            return _replay(outcome.answer)
        if isinstance(outcome, Conflict):
            raise ApiError(409, "conflict", _conflict_detail(key, outcome))
        if isinstance(outcome, InProgress):
            raise _in_progress(key, outcome)
        # the handler reads the body again: hand it a request whose stream replays what was read
        return await _run(state, outcome, handler, Request(request.scope, _replaying(body, request.receive)))

    return idempotent


async def _run(state: AppState, claimed: Claimed, handler: Handler, request: Request) -> Response:
    try:
        response = await handler(request)
    except Exception:  # a refusal (Refused, ApiError, ...) or a failure: nothing to remember
        await run_in_threadpool(idempotency.release, state.sessions, claimed.claim_id)
        raise
    # (a cancelled request keeps its claim: whether it changed something is unknown, so its retry is
    # answered `in_progress`, then `in_doubt` after the lease, and never runs the change twice)
    body = getattr(response, "body", None)  # a streamed answer has none to remember (no route streams)
    if not 200 <= response.status_code < 300 or not isinstance(body, bytes):
        await run_in_threadpool(idempotency.release, state.sessions, claimed.claim_id)
        return response
    answer = RecordedAnswer(
        status=response.status_code,
        content_type=response.headers.get("content-type"),
        location=response.headers.get("location"),
        body=body,
    )
    await run_in_threadpool(idempotency.complete, state.sessions, claimed.claim_id, answer)
    return response


def door_request(request: Request) -> DoorRequest | None:
    """The request a handler runs, by its Idempotency-Key (None without one): a change it makes in two
    steps records it with the first, so that a retry after an error in the second skips the first."""
    keyed: KeyedRequest | None = getattr(request.state, "idempotency", None)
    if keyed is None:
        return None
    state: AppState = request.app.state.oms
    since = datetime.now(UTC) - state.settings.idempotency_ttl
    return DoorRequest(ref=idempotency.request_ref(keyed), since=since)


def _invalid(key: str) -> str | None:
    if not key.strip():
        return "header.idempotency-key: must not be blank"
    if len(key) > MAX_KEY_LENGTH:
        return f"header.idempotency-key: at most {MAX_KEY_LENGTH} characters (found {len(key)})"
    if CONTROL_CHARACTERS.search(key) is not None:
        return "header.idempotency-key: must not contain control characters"
    return None


async def _claim(state: AppState, request: KeyedRequest) -> idempotency.ClaimOutcome:
    """Claim the key; while a duplicate of this request runs, wait for its answer (up to the API's wait
    timeout), polling the row: the database is what every API process shares."""
    _prune_now_and_then(state)
    ttl = state.settings.idempotency_ttl
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.api_wait_timeout.total_seconds()
    while True:
        now = datetime.now(UTC)
        outcome = await run_in_threadpool(idempotency.claim, state.sessions, request, now, ttl)
        if not isinstance(outcome, InProgress) or outcome.since < now - LEASE or loop.time() >= deadline:
            return outcome
        await asyncio.sleep(POLL_S)


def _prune_now_and_then(state: AppState) -> None:
    global _next_prune
    if time.monotonic() < _next_prune:
        return
    _next_prune = time.monotonic() + PRUNE_EVERY_S
    state.spawn(_prune(state))


async def _prune(state: AppState) -> None:
    """In the background: the request that passes by does not wait for it, nor fails with it."""
    try:
        pruned = await run_in_threadpool(idempotency.prune, state.sessions, datetime.now(UTC))
    except Exception:
        log.warning("could not delete expired idempotency keys", exc_info=True)
        return
    if pruned:
        log.info("deleted %d expired idempotency keys", pruned)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the route the body read already, then whatever comes (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _replay(answer: RecordedAnswer) -> Response:
    headers = {REPLAYED_HEADER: "true"}
    if answer.location is not None:
        headers["Location"] = answer.location
    return Response(answer.body, answer.status, headers=headers, media_type=answer.content_type)


def _conflict_detail(key: str, conflict: Conflict) -> str:
    used_for = "with a different body" if conflict.same_route else f"for {conflict.route}"
    return (
        f"Idempotency-Key {key!r} was used before {used_for}; a key can be used for one request "
        "(use a new one for a new request)"
    )


def _in_progress(key: str, held: InProgress) -> ApiError:
    if held.since < datetime.now(UTC) - LEASE:
        detail = (
            f"the request with Idempotency-Key {key!r} began at {held.since.isoformat(timespec='seconds')} "
            "and never answered (its process stopped): whether it changed anything is unknown; check, and "
            "use a new key to do it again"
        )
        return ApiError(409, "in_doubt", detail)
    error = ApiError(409, "in_progress", f"a request with Idempotency-Key {key!r} is still running; retry")
    error.headers = {"Retry-After": str(RETRY_AFTER_S)}
    return error
