"""The FastAPI application: settings, the Temporal client and the database for its lifetime; routers;
errors; limits; audit. Built by `create_app`, served by `python -m api` (uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import console_session, errors
from api.middleware import AuditLog, BodyLimit, PathCors, RefuseControlCharacters, RequestMetrics
from api.routes import (
    carrier,
    codec,
    console,
    console_dashboard,
    console_mailbox,
    console_stock,
    console_webhooks,
    docs,
    health,
    imports,
    orders,
    stock,
    tracking,
    warehouse,
    webhooks,
)
from api.state import AppState, KeyCache
from config import Settings
from connection import connect, temporal_target
from db import make_engine, make_session_factory
from encryption.codec import EncryptionCodec
from encryption.converter import key_ring
from observability.tracing import instrument_app

DESCRIPTION = """
The order management system's HTTP API: order sources place orders (one at a time or in batches),
support staff read and act on them, warehouses report picks, parcels and handovers and book stock, carriers
report tracking events; admins subscribe URLs to outbound webhooks (`/webhooks`).

Every request but the probes needs an API key (`Authorization: Bearer <key>`); each key has one role
and reaches only its endpoints. Errors are JSON: `{"error", "detail", "problems"}`.

The codec server (`/codec/decode`, `/codec/encode`) lets the Temporal Web UI and CLI read the encrypted
payloads; it also takes the session of the support console (`/console`), which the Web UI's browser sends.
"""


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        # lazy: start and answer 503 while Temporal is down, instead of not starting at all
        temporal = client or await connect(settings, lazy=True)
        # on SQLite, reads (keys, stock, progress) get an engine that does not queue behind writers
        read_engine = (
            make_engine(settings.database_url, read_only=True, pool_size=settings.database_pool_size)
            if engine.dialect.name == "sqlite"
            else engine
        )
        sessions = make_session_factory(engine)
        state = AppState(
            settings=settings,
            client=temporal,
            temporal_target=temporal_target(settings),
            engine=engine,
            sessions=sessions,
            reads=make_session_factory(read_engine) if read_engine is not engine else sessions,
            keys=KeyCache(settings.api_key_cache_ttl.total_seconds()),
            codec=EncryptionCodec(key_ring(settings)),
        )
        app.state.oms = state
        await imports.resume_imports(state)
        try:
            yield
        finally:
            for task in list(state.background):
                task.cancel()
            engine.dispose()
            read_engine.dispose()

    app = FastAPI(
        title="OMS API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are docs.install's: without a CDN
        redoc_url=None,
    )
    errors.install(app)
    docs.install(app)
    routers = (
        orders,
        imports,
        carrier,
        warehouse,
        stock,
        health,
        codec,
        console,
        console_dashboard,
        console_stock,
        console_webhooks,
        console_mailbox,
        tracking,
        webhooks,
    )
    for module in routers:
        app.include_router(module.router)
    # the last added runs first: CORS outermost, so that the Web UI can read even a 413's answer
    console_session.install(app, settings)
    app.add_middleware(RefuseControlCharacters)  # inside the audit: a refused request is audited too
    app.add_middleware(AuditLog)
    app.add_middleware(
        BodyLimit,
        limit=settings.api_max_body,
        per_path={
            "/orders/import": settings.api_max_import,
            "/codec/decode": settings.codec_max_body,
            "/codec/encode": settings.codec_max_body,
        },
    )
    app.add_middleware(
        PathCors,
        prefix="/codec/",
        origins=settings.temporal_ui_origins,
        methods=["POST"],
        headers=["content-type", "x-namespace", "authorization"],
    )
    app.add_middleware(RequestMetrics)  # every answer counts, refusals of the others too
    instrument_app(app)  # when tracing: a span per request, outside every middleware (their logs in it)
    return app
