"""Batches of orders: CSV or JSON Lines in, an import to follow, placed in the background."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api.auth import Source, SourceOrSupport
from api.errors import ApiError, ErrorBody
from api.idempotency import IDEMPOTENT
from api.routes import StrictJsonRoute
from api.state import AppState, app_state
from domain.order_import import ImportFileError, decode_import
from models.imports import ImportFormat, ImportStatus
from services import imports

log = logging.getLogger("oms.api.imports")
router = APIRouter(tags=["imports"], route_class=StrictJsonRoute)
State = Annotated[AppState, Depends(app_state)]
FORMATS = {
    "text/csv": ImportFormat.csv,
    "application/x-ndjson": ImportFormat.jsonl,
    "application/jsonl": ImportFormat.jsonl,
    "application/jsonlines": ImportFormat.jsonl,
    "application/x-jsonlines": ImportFormat.jsonl,
}
RETRY_BACKOFF = (5.0, 60.0)  # seconds: first and longest wait before an interrupted import goes on
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "CSV (one row per line item, grouped by order_id; see docs/orders.md for the columns) "
        "or JSON Lines (one order document per line).",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/orders/import",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[IDEMPOTENT],
    openapi_extra=_BODY_DOC,
    responses={
        415: {"model": ErrorBody, "description": "neither text/csv nor application/x-ndjson"},
        422: {"model": ErrorBody, "description": "the file as a whole is unreadable; nothing was imported"},
    },
    summary="Import a batch of orders",
)
async def import_orders(request: Request, who: Source, state: State, response: Response) -> ImportStatus:
    """Answers at once with the import (every row already checked: invalid orders are refused with
    their rows and reasons); the valid orders are placed in the background. Follow it at the
    `Location`. One bad row never blocks the rest, and re-importing a file places nothing twice."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = FORMATS.get(content_type)
    if fmt is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send text/csv or application/x-ndjson, not {content_type or 'nothing'}",
        )
    try:
        text = decode_import(await request.body())
        created = await run_in_threadpool(imports.create_import, state.sessions, text, fmt, who.name)
    except ImportFileError as exc:
        raise ApiError(422, "invalid_file", str(exc)) from None
    if created.pending:
        state.spawn(run_in_background(state, created.id))
    response.headers["Location"] = f"/imports/{created.id}"
    return created


@router.get(
    "/imports/{import_id}",
    responses={404: {"model": ErrorBody, "description": "unknown import"}},
    summary="An import's progress",
)
async def import_progress(import_id: str, who: SourceOrSupport, state: State) -> ImportStatus:
    found = await run_in_threadpool(imports.import_status, state.reads, import_id)
    if found is None:
        raise ApiError(404, "not_found", f"unknown import {import_id}")
    return found


async def run_in_background(state: AppState, import_id: str) -> None:
    """Place the import's orders; an outage interrupts it, and it goes on when Temporal is back."""
    wait = RETRY_BACKOFF[0]
    while True:
        try:
            done = await imports.run_import(state.client, state.settings, state.sessions, import_id)
        except imports.ImportBusy as exc:
            # Another process holds its lease: it is placing the orders, or it died and the lease
            # runs out at `until`. Look again then; a finished import ends this loop.
            until = exc.until.timestamp() if exc.until else time.time() + RETRY_BACKOFF[1]
            await asyncio.sleep(max(1.0, until - time.time() + 1.0))
            continue
        except imports.ImportInterrupted as exc:
            log.warning("%s; retrying in %.0f s", exc, wait)
        except Exception:
            log.exception("import %s failed; retrying in %.0f s", import_id, wait)
        else:
            log.info(
                "import %s done: %d accepted, %d duplicates, %d refused",
                done.id,
                done.accepted,
                done.duplicates,
                done.refused,
            )
            return
        await asyncio.sleep(wait)
        wait = min(wait * 2, RETRY_BACKOFF[1])


async def resume_imports(state: AppState) -> None:
    """At start-up: imports that an earlier process left unfinished go on (their leases tell who may)."""
    try:
        unfinished = await run_in_threadpool(imports.unfinished_imports, state.sessions)
    except Exception:
        log.exception("could not look for unfinished imports")
        return
    for import_id in unfinished:
        state.spawn(run_in_background(state, import_id))
