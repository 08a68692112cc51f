"""One router per area; shared pieces of the routes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from api.errors import ApiError, InvalidBody
from api.idempotency import guarded, takes_idempotency_key
from models import strict_json


async def _require_json(request: Request) -> None:
    """A JSON endpoint refuses another content type with 415 (not a confusing field error)."""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and not (content_type == "application/json" or content_type.endswith("+json")):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {content_type or 'without a Content-Type'}",
        )


JSON_BODY = Depends(_require_json)


class _StrictJsonRequest(Request):
    """A request whose JSON body is read by `models.strict_json`: duplicate keys are refused (422)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json.loads(await self.body())
            except strict_json.DuplicateKeys as exc:
                raise InvalidBody(exc.problems) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """The route class of every router that takes JSON bodies (FastAPI reads them with `request.json()`).
    A route with the `IDEMPOTENT` dependency is wrapped in the Idempotency-Key guard (api/idempotency.py)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return guarded(strict) if takes_idempotency_key(self.dependant.dependencies) else strict
