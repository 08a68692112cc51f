"""The rough edges a new user meets first (issue 25), each as that user sees it: over HTTP, on the
command line, in the console."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.async_api import Route, expect

from cli.common import CLI_ACTOR
from domain.api_keys import Role
from domain.blocklist import update_blocklist
from tests.api_server import ApiServer
from tests.browser import chromium, new_context
from tests.helpers import add_products, as_, cli, events, eventually, order_doc, unique, wait_status
from tests.test_console_session import sign_in


async def _chunks(size: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body of `size` bytes sent as it is produced: chunked, with no Content-Length."""
    for start in range(0, size, chunk):
        yield b"x" * min(chunk, size - start)


async def test_a_chunked_body_over_the_limit_is_413_as_with_a_content_length(
    http: httpx.AsyncClient, api_keys
):
    answer = await http.post(
        "/orders",
        content=_chunks(2 * 1024 * 1024),
        headers={**as_(api_keys, Role.source), "Content-Type": "application/json"},
    )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "too_large"


async def test_a_small_chunked_body_is_read_as_any_other(http: httpx.AsyncClient, api_keys):
    async def body() -> AsyncIterator[bytes]:
        yield b'{"order_id": '

    answer = await http.post(
        "/orders", content=body(), headers={**as_(api_keys, Role.source), "Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_json"), answer.text


async def test_the_queue_of_an_unknown_warehouse_is_404_not_an_empty_list(http, api_keys, settings):
    answer = await http.get("/warehouses/NOPE/queue", headers=as_(api_keys, Role.warehouse))
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"error": "not_found", "detail": "unknown warehouse NOPE", "problems": []}
    status, out = await cli(settings, "warehouse", "queue", "NOPE", "--json")
    assert (status, out) == (1, "")


async def test_money_is_one_decimal_string_with_two_places_in_every_door(
    http: httpx.AsyncClient, api_keys, sessions, settings
):
    skus = add_products(sessions, {"money": 5}, price="44.95")
    customer = unique("C-MONEY")
    doc = order_doc([(skus["money"], 2)])
    doc["customer"]["id"] = customer
    support = as_(api_keys, Role.support)
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201, placed.text

    view = (await http.get(f"/orders/{doc['order_id']}", headers=support)).json()
    assert view["total"] == "89.90"
    assert (view["lines"][0]["unit_price"], view["lines"][0]["line_total"]) == ("44.95", "89.90")
    assert view["payment"] == {
        "authorized": "89.90",
        "captured": "0.00",
        "refunded": "0.00",
        "goodwill_refunded": "0.00",
        "voided": "0.00",
    }
    assert {s["amount"] for s in view["shipments"]} == {"89.90"}

    async def listed() -> list[dict[str, Any]]:
        answer = await http.get("/orders", params={"customer": customer}, headers=support)
        return answer.json()["orders"]

    (summary,) = await eventually(listed, lambda found: len(found) == 1, what="the order in the list")
    assert summary["total"] == "89.90"

    status, out = await cli(settings, "status", doc["order_id"], "--json")
    assert status == 0 and json.loads(out)["payment"]["captured"] == "0.00"
    status, out = await cli(settings, "list", "--customer", customer, "--json")
    assert status == 0 and [o["total"] for o in json.loads(out)] == ["89.90"]


async def test_newest_first_is_by_placement_across_running_and_closed_orders(
    http: httpx.AsyncClient, api_keys, sessions, settings
):
    skus = add_products(sessions, {"newest": 5})
    customer = unique("C-NEWEST")
    placed = []
    for token in ("tok_visa", "tok_declined"):  # running (on its way), then closed at once (rejected)
        doc = order_doc([(skus["newest"], 1)], token=token)
        doc["customer"]["id"] = customer
        answer = await http.post(
            "/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"}
        )
        assert answer.status_code == 201, answer.text
        placed.append(doc["order_id"])
    running, rejected = placed
    support = as_(api_keys, Role.support)

    async def pages() -> list[list[tuple[str, str]]]:
        found, token = [], None
        while True:
            params = {"customer": customer, "page_size": "1"} | ({"page_token": token} if token else {})
            page = (await http.get("/orders", params=params, headers=support)).json()
            found.append([(o["order_id"], o["status"]) for o in page["orders"]])
            if not (token := page["next_page_token"]):
                return found

    listed = await eventually(
        pages,
        lambda found: [o for p in found for o, status in p if status != "received"] == [rejected, running],
        what="both orders listed",
    )
    assert [[order for order, _ in page] for page in listed] == [[rejected], [running]]
    status, out = await cli(settings, "list", "--customer", customer, "--json")
    assert status == 0 and [o["order_id"] for o in json.loads(out)] == [rejected, running]
    status, out = await cli(settings, "list", "--customer", customer, "--all", "--json")
    assert status == 0 and [o["order_id"] for o in json.loads(out)] == [rejected, running]


UI_TIMEOUT_MS = 60_000


async def test_the_api_docs_render_with_no_request_beyond_the_api(api: ApiServer):
    async with chromium() as browser:
        context = await new_context(browser, base_url=api.url)
        elsewhere: list[str] = []

        async def only_the_api(route: Route) -> None:
            if route.request.url.startswith(api.url):
                await route.continue_()
            else:  # as on a machine without the internet
                elsewhere.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_the_api)
        page = await context.new_page()
        await page.goto("/docs")
        # the first /openapi.json an API builds takes a while on a loaded machine: wait for it, not 5 s
        await expect(page.get_by_text("Place an order").first).to_be_visible(timeout=UI_TIMEOUT_MS)
        await page.goto("/redoc")
        await expect(page.get_by_role("heading", name="Place an order")).to_be_visible(timeout=UI_TIMEOUT_MS)
        await context.close()
    assert elsewhere == []


async def test_the_console_order_page_links_to_the_customers_tracking_page(
    http: httpx.AsyncClient, api_keys, sessions
):
    skus = add_products(sessions, {"tracked": 5})
    doc = order_doc([(skus["tracked"], 1)])
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201, placed.text
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303

    page = await http.get(f"/console/orders/{doc['order_id']}")
    found = re.search(
        r'<a id="tracking-link" href="([^"]+)"[^>]*>The customer\'s tracking page</a>', page.text
    )
    assert found, page.text
    link = httpx.URL(found.group(1))
    assert link.path.startswith("/track/")  # under OMS_PUBLIC_URL, as in the customer's messages
    tracking = await http.get(link.path)
    assert tracking.status_code == 200 and "Ada" in tracking.text, tracking.text


async def test_the_dashboard_says_why_an_order_is_held(http: httpx.AsyncClient, api_keys, sessions):
    skus = add_products(sessions, {"held": 5})
    doc = order_doc([(skus["held"], 1)])
    doc["customer"]["email"] = f"{unique('blocked').lower()}@example.com"
    update_blocklist(sessions, "add", doc["customer"]["email"], "chargebacks")
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201 and placed.json()["status"] == "on_hold", placed.text
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303

    page = await http.get("/console/dashboard")
    row = re.search(
        rf"<tr><td><code>{re.escape(doc['order_id'])}</code></td><td>on_hold</td><td>([^<]*)</td>", page.text
    )
    assert row is not None, page.text
    assert row.group(1) == "customer on the blocklist"


async def test_a_lost_parcel_waiting_for_supports_choice_needs_attention(
    http: httpx.AsyncClient, api_keys, sessions, settings, client
):
    skus = add_products(sessions, {"lost": 5})
    customer = unique("C-LOST")
    doc = order_doc([(skus["lost"], 1)])
    doc["customer"]["id"] = customer
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201, placed.text
    order_id = doc["order_id"]
    (shipment,) = (await wait_status(client, order_id, "shipped")).shipments
    lost = {"tracking_number": shipment.tracking_number, "type": "lost", "event_id": unique("ev")}
    answer = await http.post("/carrier/events", json=lost, headers=as_(api_keys, Role.carrier))
    assert answer.status_code == 202, answer.text
    await wait_status(client, order_id, "delivery_exception")
    support = as_(api_keys, Role.support)

    async def needing_attention() -> list[dict[str, Any]]:
        params = {"customer": customer, "needs_attention": "true"}
        return (await http.get("/orders", params=params, headers=support)).json()["orders"]

    (listed,) = await eventually(
        needing_attention, lambda found: len(found) == 1, what="listed as needing attention"
    )
    assert (listed["order_id"], listed["needs_attention"]) == (order_id, True)
    status, out = await cli(settings, "list", "--needs-attention", "--customer", customer, "--json")
    assert status == 0 and [o["order_id"] for o in json.loads(out)] == [order_id]

    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    page = await http.get("/console/dashboard")
    decisions = page.text[page.text.index('id="decisions"') :]
    row = re.search(
        rf"<tr><td><code>{re.escape(order_id)}</code></td><td>delivery_exception</td><td>([^<]*)</td>",
        decisions,
    )
    assert row is not None, page.text
    assert row.group(1) == "lost parcel: reship or refund"


async def test_who_chose_a_lost_parcels_fate_reads_in_one_pair_of_brackets(
    http: httpx.AsyncClient, api_keys, sessions, settings, client
):
    skus = add_products(sessions, {"chosen": 5})
    doc = order_doc([(skus["chosen"], 1)])
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201, placed.text
    order_id = doc["order_id"]
    (shipment,) = (await wait_status(client, order_id, "shipped")).shipments
    lost = {"tracking_number": shipment.tracking_number, "type": "lost", "event_id": unique("ev")}
    assert (
        await http.post("/carrier/events", json=lost, headers=as_(api_keys, Role.carrier))
    ).status_code == 202
    await wait_status(client, order_id, "delivery_exception")

    status, _ = await cli(settings, "resolve", order_id, shipment.id, "--refund")
    assert status == 0
    view = (await http.get(f"/orders/{order_id}", headers=as_(api_keys, Role.support))).json()
    (resolved,) = [e["detail"] for e in view["events"] if e["type"] == "shipment_resolved"]
    assert resolved == f"{shipment.id}: refunded 10.00 EUR (chosen by {CLI_ACTOR})"
    stored = await eventually(
        lambda: [e.detail for e in events(sessions, order_id) if e.type == "shipment_resolved"],
        lambda found: len(found) == 1,
        what="the event stored",
    )
    assert stored == [resolved]


async def test_a_forecast_right_after_the_first_shipments_says_what_to_run(
    http: httpx.AsyncClient, api_keys, sessions, settings, client
):
    skus = add_products(sessions, {"forecast": 5})
    doc = order_doc([(skus["forecast"], 2)])
    placed = await http.post("/orders", json=doc, headers=as_(api_keys, Role.source), params={"wait": "true"})
    assert placed.status_code == 201, placed.text
    await wait_status(client, doc["order_id"], "shipped")  # today, as after `make run`'s demo
    today = datetime.now(UTC).date()

    status, out = await cli(settings, "forecast", "--sku", skus["forecast"])
    assert status == 0
    assert "nothing to forecast" in out
    hint = f"starter.py forecast --as-of {today:%Y-%m-%d}"
    assert out.rstrip().endswith(hint), out

    status, out = await cli(settings, "forecast", "--sku", skus["forecast"], "--as-of", f"{today:%Y-%m-%d}")
    assert status == 0
    assert out.startswith(f"forecast as of {today:%Y-%m-%d}: 1 sku/warehouse pair(s)"), out
