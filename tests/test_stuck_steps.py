"""A step that keeps failing for a reason that is not a business refusal is not left retrying unseen:
after OMS_STEP_ATTENTION_ATTEMPTS attempts the order is marked NeedsAttention with a `step_stuck`
event (the step and its last error), and the step goes on retrying; when it succeeds, `step_recovered`
clears the mark. Here, what support sees of it (the CLI's list, status and reconcile) on the real stack;
the workflow's side alone (a refusal is not stuck, a stuck order cancelled from Temporal) is in the
fast tier (tests/fast/test_lifecycle.py, tests/fast/test_exits.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from config import Settings
from db import SessionFactory
from models import search_attributes as sa
from models.orders import OrderView
from services.orders import handle, order_view
from tests.helpers import (
    add_products,
    cli,
    eventually,
    order_doc,
    place,
    wait_status,
)
from worker import build_activities, build_worker

pytestmark = pytest.mark.usefixtures("worker")

ATTEMPTS = 3  # OMS_STEP_ATTENTION_ATTEMPTS for these tests (the default, 5, only takes longer)


@pytest.fixture(autouse=True)
def few_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers of this process read the setting through workflows.steps (passed through the
    sandbox, so this reaches the workflows too)."""
    monkeypatch.setattr("workflows.steps.step_attention_attempts", lambda: ATTEMPTS)


def failing_until(
    fn: Callable[..., Any], released: threading.Event, error: str, stall: float = 0.0
) -> Callable[..., Any]:
    """The activity, failing with a transient (retryable) error until `released` is set; each failing
    attempt first stalls `stall` seconds (a database that does not answer)."""

    @functools.wraps(fn, updated=())
    def fail_then_run(arg: Any) -> Any:
        if not released.is_set():
            released.wait(stall)
            raise RuntimeError(error)
        return fn(arg)

    return activity.defn(name=fn.__name__)(fail_then_run)


@pytest.fixture
async def flaky_worker(client: Client, sessions: SessionFactory, settings: Settings):
    """A worker on its own task queue whose named activity fails until the test releases it."""
    started: list[tuple[Worker, threading.Event]] = []

    async def start(name: str, error: str, stall: float = 0.0) -> tuple[Settings, threading.Event]:
        own = settings.model_copy(
            update={"task_queue": f"{settings.task_queue}-flaky-{uuid.uuid4().hex[:6]}"}
        )
        released = threading.Event()
        activities = [
            failing_until(fn, released, error, stall) if fn.__name__ == name else fn
            for fn in build_activities(sessions, client, own)
        ]
        worker = build_worker(client, sessions, own, activities=activities)
        started.append((worker, released))
        asyncio.get_running_loop().create_task(worker.run())
        return own, released

    yield start
    for worker, released in started:
        released.set()
        await worker.shutdown()


async def needs_attention(client: Client, order_id: str) -> bool | None:
    description = await handle(client, order_id).describe()
    return description.typed_search_attributes.get(sa.NEEDS_ATTENTION)


async def event_of(client: Client, order_id: str, event_type: str) -> OrderView:
    return await eventually(
        lambda: order_view(client, order_id), lambda v: any(e.type == event_type for e in v.events)
    )


async def test_a_stuck_step_marks_the_order_and_its_recovery_clears_it(client, sessions, flaky_worker):
    settings, released = await flaky_worker("record_pack", "label printer offline")
    sku = add_products(sessions, {"TEE": 5}, price="15.00")["TEE"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))

    view = await event_of(client, order_id, "step_stuck")
    (stuck,) = [e for e in view.events if e.type == "step_stuck"]
    assert stuck.detail == (
        f"record the parcels of {order_id}-S1: failed {ATTEMPTS} attempts, still retrying; "
        "last error: RuntimeError: label printer offline"
    )
    assert view.status == "picking"
    assert await needs_attention(client, order_id) is True

    # support finds it: `list --needs-attention`, `status`, and reconcile's report (listed, not settled)
    async def listed() -> list[str]:
        status, out = await cli(settings, "list", "--needs-attention", "--json")
        assert status == 0
        return [o["order_id"] for o in json.loads(out)]

    await eventually(listed, lambda ids: order_id in ids)
    status, out = await cli(settings, "status", order_id)
    assert status == 0 and "step_stuck" in out and "label printer offline" in out
    status, out = await cli(settings, "reconcile", "--json")
    report = json.loads(out)
    assert order_id in [o["order_id"] for o in report["needs_attention"]]
    assert order_id not in [o["order_id"] for o in report["orders"]]
    description = await handle(client, order_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING  # still retrying

    released.set()

    view = await wait_status(client, order_id, "shipped")
    (recovered,) = [e for e in view.events if e.type == "step_recovered"]
    assert recovered.detail == f"record the parcels of {order_id}-S1: succeeded after being stuck"
    assert [e.type for e in view.events].index("step_recovered") > [e.type for e in view.events].index(
        "step_stuck"
    )
    assert await needs_attention(client, order_id) is False
    await eventually(listed, lambda ids: order_id not in ids)
    assert view.payment_status == "captured"


async def test_a_local_step_that_times_out_is_stuck_and_the_order_is_not_lost(
    client, sessions, flaky_worker, monkeypatch
):
    """A database that stalls instead of refusing: each attempt of the admission (a local step) runs
    past its timeout. The SDK reports the first phase's last one as cancelled with a timeout as the
    cause; the order once failed there and vanished (the chaos run's database outage found it). Now
    the step is stuck and retried on, and the order goes on once the database answers."""
    monkeypatch.setattr("workflows.steps.LOCAL_STEP_TIMEOUT", timedelta(seconds=1))
    settings, released = await flaky_worker("admit_order", "database not answering", stall=1.5)
    sku = add_products(sessions, {"MUG": 5}, price="8.00")["MUG"]
    order_id = await place(client, settings, order_doc([(sku, 1)]))

    view = await event_of(client, order_id, "step_stuck")
    (stuck,) = [e for e in view.events if e.type == "step_stuck"]
    assert stuck.detail.startswith(f"record, validate, screen: failed {ATTEMPTS} attempts, still retrying")
    assert stuck.detail.endswith("last error: Activity timed out"), stuck.detail
    assert (await handle(client, order_id).describe()).status == WorkflowExecutionStatus.RUNNING

    released.set()
    view = await wait_status(client, order_id, "shipped")
    assert "step_recovered" in [e.type for e in view.events]
    assert view.payment_status == "captured"
