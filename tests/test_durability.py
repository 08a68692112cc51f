"""Nothing is lost when the Temporal server or the worker goes away mid-order."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from connection import ensure_search_attributes
from services.orders import confirm_delivery, order_view
from tests.conftest import TEMPORAL_BIN, TEST_CONVERTER
from tests.helpers import add_products, ledger, order_doc, place, stock_of, wait_status
from worker import build_worker


async def _server(db_file: Path) -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_database_filename=str(db_file),
        data_converter=TEST_CONVERTER,
        dev_server_log_level="error",
    )
    await ensure_search_attributes(env.client)
    return env


async def test_an_order_survives_a_server_restart(tmp_path, settings, sessions):
    skus = add_products(sessions, {"LAMP": 4}, price="30.00")
    env = await _server(tmp_path / "temporal.db")
    try:
        async with build_worker(env.client, sessions, settings):
            order_id = await place(env.client, settings, order_doc([(skus["LAMP"], 1)]))
            await wait_status(env.client, order_id, "shipped")
    finally:
        await env.shutdown()  # the server goes away while the order awaits its delivery

    env = await _server(tmp_path / "temporal.db")  # same persistence file, new process
    try:
        async with build_worker(env.client, sessions, settings):
            assert (await order_view(env.client, order_id)).status == "shipped"
            await confirm_delivery(env.client, order_id)
            view = await wait_status(env.client, order_id, "delivered")
    finally:
        await env.shutdown()
    assert [e.type for e in view.events].count("payment_captured") == 1
    assert ledger(sessions, order_id) == {"authorization": 30, "capture": 30}
    assert stock_of(sessions, skus["LAMP"]) == (3, 0)


async def test_an_order_waits_for_a_worker_and_then_carries_on(client, settings, sessions):
    skus = add_products(sessions, {"FAN": 2}, price="25.00")
    lonely = settings.model_copy(update={"task_queue": f"{settings.task_queue}-later"})
    order_id = await place(client, lonely, order_doc([(skus["FAN"], 1)]))  # no worker polls this queue yet
    async with build_worker(client, sessions, lonely):
        view = await wait_status(client, order_id, "shipped")
    assert view.payment_status == "captured"
    assert stock_of(sessions, skus["FAN"]) == (1, 0)
