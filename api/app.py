"""The FastAPI application: settings, the Temporal client and the database for its lifetime; routers;
errors; limits; audit. Built by `create_app`, served by `python -m api` (uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api import errors
from api.middleware import AuditLog, BodyLimit
from api.routes import carrier, health, imports, orders, stock
from api.state import AppState, KeyCache
from config import Settings
from db import make_engine, make_session_factory

DESCRIPTION = """
The order management system's HTTP API: order sources place orders (one at a time or in batches),
support staff read and act on them, carriers report deliveries, warehouses book stock.

Every request but the probes needs an API key (`Authorization: Bearer <key>`); each key has one role
and reaches only its endpoints. Errors are JSON: `{"error", "detail", "problems"}`.
"""


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        temporal = client or await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            lazy=True,  # start and answer 503 while Temporal is down, instead of not starting at all
        )
        # on SQLite, reads (keys, stock, progress) get an engine that does not queue behind writers
        read_engine = (
            make_engine(settings.database_url, read_only=True) if engine.dialect.name == "sqlite" else engine
        )
        sessions = make_session_factory(engine)
        state = AppState(
            settings=settings,
            client=temporal,
            engine=engine,
            sessions=sessions,
            reads=make_session_factory(read_engine) if read_engine is not engine else sessions,
            keys=KeyCache(settings.api_key_cache_ttl.total_seconds()),
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

    app = FastAPI(title="OMS API", version="1", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    for module in (orders, imports, carrier, stock, health):
        app.include_router(module.router)
    app.add_middleware(AuditLog)
    app.add_middleware(
        BodyLimit, limit=settings.api_max_body, per_path={"/orders/import": settings.api_max_import}
    )
    return app
