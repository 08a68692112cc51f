"""One router per area; shared pieces of the routes."""

from __future__ import annotations

from fastapi import Depends, Request

from api.errors import ApiError


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
