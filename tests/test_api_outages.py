"""The API while Temporal or the database is down: 503 with a clear JSON body, and nothing half-done."""

from __future__ import annotations

from pathlib import Path

import httpx

from domain.api_keys import Role
from services.orders import UnknownOrder, order_view
from tests.api_server import free_port, running_api
from tests.helpers import add_products, order_doc


async def test_temporal_down_is_503_and_starts_nothing(settings, sessions, client, api_keys, tmp_path: Path):
    skus = add_products(sessions, {"KETTLE": 3})
    doc = order_doc([(skus["KETTLE"], 1)])
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_api(settings, tmp_path, ready=False, OMS_TEMPORAL_ADDRESS=dead) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["temporal"].startswith("unavailable") and ready.json()["database"] == "ok"
            answer = await http.post(
                "/orders", json=doc, headers={"Authorization": f"Bearer {api_keys[Role.source]}"}
            )
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "unavailable" and "Temporal" in answer.json()["detail"]
            assert answer.headers["retry-after"] == "5"
            assert "Traceback" not in answer.text
    try:
        await order_view(client, doc["order_id"])
        raise AssertionError("the order must not exist")
    except UnknownOrder:
        pass


async def test_database_down_is_503(settings, api_keys, tmp_path: Path):
    unreachable = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    with running_api(settings, tmp_path, ready=False, OMS_DATABASE_URL=unreachable) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["database"].startswith("unavailable")
            answer = await http.get("/orders", headers={"Authorization": f"Bearer {api_keys[Role.support]}"})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "unavailable" and "database" in answer.json()["detail"]
