"""Every error as one JSON shape — `{"error": code, "detail": message, "problems": [...]}` — and the
mapping from the client layer's exceptions to HTTP statuses. Never a stack trace in a response."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException
from temporalio.service import RPCError, RPCStatusCode

from domain.shipments import UnknownWarehouse
from domain.stock import StockError
from services.fulfilment import ReportTooEarly, UnknownShipment, UnknownTracking
from services.messages import UnknownMessage
from services.orders import OrderInputError, Refused, UnknownOrder, Unprocessable

log = logging.getLogger("oms.api")

# Temporal answered nothing useful: it is down, restarting or overloaded. Worth retrying later.
_TEMPORAL_DOWN = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.UNKNOWN,
}


# The client layer's refusals: the message says it all, the status says what kind it is.
REFUSALS: dict[type[Exception], tuple[int, str]] = {
    OrderInputError: (422, "invalid_request"),
    StockError: (422, "invalid_request"),
    UnknownOrder: (404, "not_found"),
    UnknownMessage: (404, "not_found"),
    UnknownShipment: (404, "not_found"),
    UnknownTracking: (404, "not_found"),
    UnknownWarehouse: (404, "not_found"),
    ReportTooEarly: (409, "too_early"),  # the routes add Retry-After (api/routes/warehouse.py)
    Unprocessable: (422, "unprocessable"),  # before Refused, its base: the most specific wins
    Refused: (409, "refused"),
}


class ErrorBody(BaseModel):
    error: str
    detail: str
    problems: list[str] = []


# A route's documented error answers (FastAPI's `responses=`), by status.
Responses = dict[int | str, dict[str, Any]]
# what any route behind an API key may answer
KEYED_ROUTE_ERRORS: Responses = {
    401: {"model": ErrorBody, "description": "no API key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the key's role may not do this"},
    503: {"model": ErrorBody, "description": "Temporal or the database is not answering; nothing was done"},
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        problems: list[str] | None = None,
        bearer_challenge: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.problems = status, error, detail, problems or []
        self.headers = {"WWW-Authenticate": "Bearer"} if bearer_challenge else None


class InvalidBody(HTTPException):
    """A JSON body refused while it is read (duplicate keys), before its fields are validated: 422 with
    the problems named. An HTTPException, because FastAPI turns anything else raised there into 400."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(422, "the request has invalid fields")
        self.problems = problems


def error_response(
    status: int,
    error: str,
    detail: str,
    problems: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, detail=detail, problems=problems or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def field_location(loc: tuple[int | str, ...]) -> str:
    """`body.lines.0.quantity` -> `lines.0.quantity`; query and header fields keep their prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.problems, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, InvalidBody):
            return error_response(422, "invalid_request", str(exc.detail), exc.problems)
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # e.g. nested too deeply
            return error_response(
                400, "invalid_json", "the body could not be parsed as JSON (nested too deeply?)"
            )
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            reason = next(
                e.get("ctx", {}).get("error", "") for e in errors if e.get("type") == "json_invalid"
            )
            return error_response(400, "invalid_json", f"the body is not valid JSON: {reason}".rstrip(": "))
        problems = [f"{field_location(tuple(e['loc']))}: {e['msg']}" for e in errors]
        return error_response(422, "invalid_request", "the request has invalid fields", problems)

    for exc_type, (status, error) in REFUSALS.items():
        app.add_exception_handler(exc_type, _plain(status, error))

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return error_response(404, "not_found", exc.message)
        if exc.status in _TEMPORAL_DOWN or _task_failing(exc):
            log.warning("Temporal unavailable: %s", exc.message)
            return _unavailable("Temporal")
        log.error("Temporal refused a request: %s (%s)", exc.message, exc.status.name)
        return error_response(502, "temporal_error", f"Temporal refused the request: {exc.message}")

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            log.warning(
                "database unavailable: %s", str(exc.orig).strip().splitlines()[0] if exc.orig else exc
            )
            return _unavailable("the database")
        log.exception("database error")
        return error_response(500, "internal_error", "the request failed; it has been logged")

    @app.exception_handler(TimeoutError)
    async def _timeout(_: Request, exc: TimeoutError) -> JSONResponse:
        return error_response(504, "timeout", str(exc) or "timed out")

    # A RuntimeError has a handler of its own (not only the catch-all below): the catch-all runs in
    # Starlette's outermost middleware, which re-raises after answering, and the answer may be lost
    @app.exception_handler(RuntimeError)
    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        if _is_connect_failure(exc):
            log.warning("Temporal unavailable: %s", exc)
            return _unavailable("Temporal")
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the request failed; it has been logged")


def _plain(status: int, error: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return error_response(status, error, str(exc))

    return handler


def _unavailable(what: str) -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        f"{what} is not answering; nothing was changed, retry later",
        headers={"Retry-After": "5"},
    )


def _task_failing(exc: RPCError) -> bool:
    """An update refused while the order's workflow task is being retried (its worker died): transient,
    the same request succeeds once a worker has the order again."""
    return (
        exc.status == RPCStatusCode.FAILED_PRECONDITION
        and "workflow task in failed state" in exc.message.lower()
    )


def _is_connect_failure(exc: Exception) -> bool:
    """A lazy Temporal client that cannot reach the server raises a plain RuntimeError."""
    return isinstance(exc, RuntimeError) and "client connect" in str(exc).lower()
