"""SIGTERM to a busy worker (`python worker.py`): it drains, and another worker finishes its orders with
nothing lost and nothing done twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from tests.helpers import (
    add_products,
    assert_ledger_invariants,
    events,
    eventually,
    ledger,
    order_doc,
    place,
    stock_of,
    wait_status,
)
from tests.worker_process import running_worker, start_worker

ORDERS = 8
# the suite's fast sandbox warehouse and a manual carrier (the orders stop at `shipped`); two threads,
# so that most orders' steps wait in line when SIGTERM comes
BUSY_WORKER = {
    "OMS_SANDBOX_PICK_TIME": "0s",
    "OMS_SANDBOX_PACK_TIME": "0s",
    "OMS_SANDBOX_CARRIER": "manual",
    "OMS_WORKER_ACTIVITY_THREADS": "2",
}


@pytest.mark.timeout(240)
async def test_sigterm_under_load_drains_and_a_second_worker_finishes_every_order_once(
    client: Client, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    log_path = tmp_path / "workers.log"
    skus = add_products(sessions, {"TEE": ORDERS + 2}, price="19.90")
    async with running_worker(settings, log_path, **BUSY_WORKER) as (own, first):
        order_ids = await asyncio.gather(
            *(place(client, own, order_doc([(skus["TEE"], 1)])) for _ in range(ORDERS))
        )
        # SIGTERM once the first payment is through: the other orders are somewhere in their steps
        await eventually(
            lambda: sum(any(e.type == "payment_authorized" for e in events(sessions, o)) for o in order_ids),
            lambda authorized: authorized >= 1,
            timeout=60,
        )
        await asyncio.to_thread(first.stop)
        assert first.process.returncode == 0, first.tail(40)  # drained within its time, not killed
        shipped = [o for o in order_ids if any(e.type == "shipment_shipped" for e in events(sessions, o))]
        assert len(shipped) < ORDERS, "every order shipped before SIGTERM: nothing was in flight"

        second = await start_worker(own, log_path, **BUSY_WORKER)
        try:
            for order_id in order_ids:
                await wait_status(client, order_id, "shipped", timeout=90)
        finally:
            await asyncio.to_thread(second.stop)

    total = Decimal("19.90")
    for order_id in order_ids:
        assert ledger(sessions, order_id) == {"authorization": total, "capture": total}, order_id
        assert_ledger_invariants(sessions, order_id)
        kinds = [e.type for e in events(sessions, order_id)]
        assert kinds.count("payment_authorized") == kinds.count("shipment_shipped") == 1, kinds
    assert stock_of(sessions, skus["TEE"]) == (2, 0)  # each order picked its one unit, once
    assert "Traceback" not in log_path.read_text()
