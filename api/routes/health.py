"""Probes: the process is up (/healthz); Temporal and the database answer (/readyz)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.state import AppState, app_state
from connection import explain_connect_failure

router = APIRouter(tags=["health"])
PROBE_TIMEOUT = 3.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="Temporal and the database answer", responses={503: {"description": "not ready"}}
)
async def readyz(state: Annotated[AppState, Depends(app_state)]) -> JSONResponse:
    temporal, database = await asyncio.gather(_temporal(state), _database(state))
    ready = temporal == "ok" and database == "ok"
    return JSONResponse(
        # the target too: a 503 from a misconfigured address or TLS setting says so at once
        {"temporal": temporal, "database": database, "temporal_target": state.temporal_target.describe()},
        status_code=200 if ready else 503,
    )


async def _temporal(state: AppState) -> str:
    try:
        await asyncio.wait_for(state.client.service_client.check_health(), PROBE_TIMEOUT)
    except TimeoutError:
        return "unavailable: TimeoutError"
    except Exception as exc:  # any failure means not ready; the reason is shown, never a traceback
        return f"unavailable: {explain_connect_failure(state.temporal_target, exc)}"
    return "ok"


async def _database(state: AppState) -> str:
    def ping() -> None:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(run_in_threadpool(ping), PROBE_TIMEOUT)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
