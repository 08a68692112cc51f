"""Records workflow histories for the replay test: `make histories` (not part of the suite).

Run it when the workflow changes on purpose in a way running orders must survive; the recorded
files are committed, and tests/test_replay.py replays them against the current workflow code.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from models.orders import FeedbackIn
from services.orders import confirm_delivery, give_feedback, handle, order_view
from tests.helpers import add_products, eventually, order_doc, place, wait_status

HISTORIES = Path(__file__).parent / "histories"

pytestmark = pytest.mark.usefixtures("worker")


async def _save(client: Client, order_id: str, name: str) -> None:
    history = await handle(client, order_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))


async def test_record_completed_with_feedback(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5, "MUG": 5}, price="12.50")
    order_id = await place(
        client, settings, order_doc([(skus["TEE"], 2), (skus["MUG"], 1)]), return_window=timedelta(seconds=3)
    )
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await wait_status(client, order_id, "delivered")
    await give_feedback(client, order_id, FeedbackIn(score=4, comment="quick"))
    await handle(client, order_id).result()
    await _save(client, order_id, "completed_with_feedback")


async def test_record_declined(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5})
    order_id = await place(client, settings, order_doc([(skus["TEE"], 1)], token="tok_declined"))
    await handle(client, order_id).result()
    await _save(client, order_id, "payment_declined")


async def test_record_overdue_then_delivered(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5})
    order_id = await place(
        client,
        settings,
        order_doc([(skus["TEE"], 1)], token="tok_flaky"),
        delivery_sla=timedelta(seconds=1),
        return_window=timedelta(seconds=1),
    )
    await wait_status(client, order_id, "shipped")
    await eventually(lambda: order_view(client, order_id), lambda v: v.overdue, timeout=20)
    await confirm_delivery(client, order_id)
    await handle(client, order_id).result()
    await _save(client, order_id, "overdue_then_delivered")
