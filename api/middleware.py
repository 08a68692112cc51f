"""Plain ASGI middlewares: a request-size limit (413), control characters refused in paths and query
parameters (422), the audit line of every mutating request, the codec server's CORS for the
Temporal Web UI (and nothing else's), and the requests' metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.text import CONTROL_CHARACTERS, printable
from observability.metrics import observe_request

audit_log = logging.getLogger("oms.api.audit")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse bodies over `limit` bytes (or `per_path[path]`), by Content-Length or as they stream in."""

    def __init__(self, app: ASGIApp, limit: int, per_path: Mapping[str, int] | None = None) -> None:
        self.app, self.limit, self.per_path = app, limit, dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        received = 0
        exceeded = started = answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, answered
            if exceeded:
                # A body sent without Content-Length (chunked) crosses the limit while a route reads it,
                # and FastAPI makes any error raised there a 400 "error parsing the body": whatever the
                # route answers to the cut-off body, the answer is 413.
                if not started:
                    started = answered = True
                    await _too_large(send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _too_large(send, limit)
            elif not answered:
                raise  # the route had begun answering: only closing the connection is left


async def _too_large(send: Send, limit: int) -> None:
    await _send_error(send, 413, "too_large", f"the request body is larger than {limit} bytes")


async def _send_error(
    send: Send, status: int, error: str, detail: str, problems: list[str] | None = None
) -> None:
    """The API's error shape (api/errors.py), from a middleware, before any route has run."""
    body = json.dumps({"error": error, "detail": detail, "problems": problems or []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RefuseControlCharacters:
    """Refuse (422, the API's error shape) a request whose path or query parameters hold a control
    character, before any route runs: no route's parameter can hold one (ids, codes, filters), and one
    that reached SQL failed there (PostgreSQL refuses NUL) or a visibility query with a 5xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := _control_character_in(scope)) is not None:
            await _send_error(send, 422, "invalid_request", "the request has invalid fields", [problem])
            return
        await self.app(scope, receive, send)


def _control_character_in(scope: Scope) -> str | None:
    path: str = scope["path"]  # already percent-decoded
    if (found := CONTROL_CHARACTERS.search(path)) is not None:
        return (
            f"path: must not contain control characters (found {found.group()!r} at position {found.start()})"
        )
    query = scope.get("query_string", b"").decode("utf-8", "surrogateescape")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        for text in (name, value):
            if (found := CONTROL_CHARACTERS.search(text)) is not None:
                return (
                    f"query.{printable(name)}: must not contain control characters "
                    f"(found {found.group()!r} at position {found.start()})"
                )
    return None


class PathCors:
    """CORS on the paths under `prefix` only, for `origins` only, with credentials (the Temporal Web UI
    fetches the codec server with `credentials: 'include'`, so the console's cookie goes along).

    A request under `prefix` from any other browser origin but the API's own is refused (403) before a
    route runs: SameSite=lax still sends the session cookie from other ports and sibling subdomains of
    the same site, so without this such a page could have payloads decoded with a support session."""

    def __init__(
        self,
        app: ASGIApp,
        prefix: str,
        origins: Sequence[str],
        methods: Sequence[str],
        headers: Sequence[str],
    ) -> None:
        self.app, self.prefix, self.origins = app, prefix, frozenset(origins)
        self.cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=methods,
            allow_headers=headers,
            allow_credentials=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is not None and origin not in self.origins and origin != _own_origin(scope):
            audit_log.warning("refused %s %s from origin %r", scope["method"], scope["path"], origin[:200])
            allowed = ", ".join(sorted(self.origins)) or "none"
            detail = (
                f"origin {origin[:200]!r} may not call {self.prefix}; allowed: {allowed}"
                " (the Temporal Web UI's: OMS_TEMPORAL_UI_ORIGIN)"
            )
            await _send_error(send, 403, "origin_not_allowed", detail)
            return
        await self.cors(scope, receive, send)


def _own_origin(scope: Scope) -> str:
    host = Headers(scope=scope).get("host", "")
    return f"{scope.get('scheme', 'http')}://{host}"


class _Answer:
    """The status a request was answered with, noted on its way out (the audit line and the metrics
    report it); 500 if the application raised before answering, which is what the client then gets."""

    def __init__(self) -> None:
        self.status = 500

    async def forward(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            await send(message)

        await app(scope, receive, noting_send)


class AuditLog:
    """One line per mutating request: who (the API key's name and role), what, and the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        answer = _Answer()
        began = time.perf_counter()
        try:
            await answer.forward(self.app, scope, receive, send)
        finally:
            status = answer.status
            who = scope.get("state", {}).get("principal")
            audit_log.info(
                "key=%s role=%s %s %s -> %d (%.0f ms)",
                who.name if who else "-",
                who.role.value if who else "-",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - began) * 1000,
            )


class RequestMetrics:
    """Counts and times every request (`oms_api_requests_total`, `oms_api_request_duration_seconds`) by
    method, the route's template and status. Outermost, so that the other middlewares' refusals (413,
    403) count too; those never reached a route and count as `unmatched`, like a path no route serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = _Answer()
        began = time.perf_counter()
        try:
            await answer.forward(self.app, scope, receive, send)
        finally:
            # the router writes the matched route into the request's scope (FastAPI's APIRoute)
            route = getattr(scope.get("route"), "path_format", None)
            observe_request(scope["method"], route, answer.status, time.perf_counter() - began)
