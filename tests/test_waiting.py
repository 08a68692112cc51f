"""Waits on Temporal that run out or are cancelled are ordinary: the caller gets its answer, and
asyncio logs no "exception was never retrieved" traceback for what the SDK left behind."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from models.orders import OrderInput
from services.orders import place_order, wait_until_settled
from tests.api_server import free_port
from tests.helpers import add_products, order_doc


def unretrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # asyncio reports an unretrieved error when the future is collected
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.fixture
def idle_settings(settings):
    """No worker polls this queue: every wait on its orders runs out."""
    return settings.model_copy(update={"task_queue": f"{settings.task_queue}-nobody-{free_port()}"})


async def test_placing_with_a_wait_that_runs_out(client, sessions, idle_settings, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    order = OrderInput.model_validate(order_doc([(add_products(sessions, {"KETTLE": 2})["KETTLE"], 1)]))
    placement = await place_order(client, idle_settings, order, wait=0.5)
    assert placement.created and placement.settled is None  # started, not settled: the caller follows it
    with pytest.raises(TimeoutError, match="has not settled within 0.5s"):
        await wait_until_settled(client, order.order_id, timeout=0.5)
    assert unretrieved(caplog) == []


async def test_a_wait_cancelled_from_outside(client, sessions, idle_settings, caplog):
    """The caller gives up first (a client that hung up, a shutdown): its cancellation stands."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    order = OrderInput.model_validate(order_doc([(add_products(sessions, {"KETTLE": 2})["KETTLE"], 1)]))
    await place_order(client, idle_settings, order)
    waiting = asyncio.create_task(wait_until_settled(client, order.order_id, timeout=60))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 1.0)  # the update is in flight by now
    waiting.cancel()
    await asyncio.wait((waiting,))
    assert waiting.cancelled()
    del waiting  # its frames hold what asyncio would report once collected
    assert unretrieved(caplog) == []
