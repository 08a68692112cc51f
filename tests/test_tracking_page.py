"""Issue 11: the customer's tracking page, `/track/<token>`, reached from the link in the order
confirmation. The API process on the suite's worker and database (the `api` fixture): an order placed
through the real workflow, its confirmation row in the outbox, the page over HTTP."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import expect
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.tracking_links import order_of_token, server_secret, tracking_token
from services.orders import confirm_delivery
from tests.api_server import ApiServer
from tests.browser import chromium, chromium_or_skip, new_context
from tests.helpers import add_products, eventually, notifications, order_doc, place, unique, wait_status

FIRST, LAST = "Wilhelmina", "Quarrington-Smythe"
EMAIL = "wilhelmina.q@example.org"
PHONE = "+44 1688 302 999"
STREET = "3 Puffin Harbour Row"
POSTCODE = "PA75 6NU"
CITY = "Tobermory"
INSTRUCTIONS = "Ring the brass otter bell twice"
PERSONAL = (LAST, EMAIL, PHONE, STREET, POSTCODE, INSTRUCTIONS, "Quarrington")
LINK = re.compile(r"Track your order: (\S+)/track/(\S+)")


def customer_doc(sku: str) -> dict:
    return order_doc(
        [(sku, 1)],
        order_id=unique("TRACK"),
        customer={"id": unique("C"), "name": f"{FIRST} {LAST}", "email": EMAIL, "phone": PHONE},
        shipping_address={
            "name": f"{FIRST} {LAST}",
            "line1": STREET,
            "line2": None,
            "city": CITY,
            "postal_code": POSTCODE,
            "country": "GB",
        },
        delivery_instructions=INSTRUCTIONS,
    )


async def confirmation_link(sessions: SessionFactory, order_id: str) -> tuple[str, str]:
    async def confirmed() -> list:
        return [n for n in notifications(sessions, order_id) if n.kind == "order_confirmed"]

    (row,) = await eventually(confirmed, bool)
    match = LINK.search(row.body)
    assert match, f"no tracking link in the confirmation:\n{row.body}"
    return match.group(1), match.group(2)


@pytest.fixture
async def tracked(
    client: Client, settings: Settings, sessions: SessionFactory, worker: None
) -> tuple[str, str]:
    """A confirmed order and the token its confirmation carries."""
    skus = add_products(sessions, {"KETTLE": 5})
    order_id = await place(client, settings, customer_doc(skus["KETTLE"]))
    await wait_status(client, order_id, "confirmed", "picking", "packed", "shipped")
    _, token = await confirmation_link(sessions, order_id)
    return order_id, token


async def test_the_confirmation_carries_the_order_tracking_link(
    tracked: tuple[str, str], settings: Settings, sessions: SessionFactory
):
    order_id, token = tracked
    base, _ = await confirmation_link(sessions, order_id)
    assert base == settings.public_url.rstrip("/")
    (row,) = [n for n in notifications(sessions, order_id) if n.kind == "order_confirmed"]
    assert f"Track your order: {settings.public_url}/track/{token}\n" in row.body
    secret = server_secret(settings)
    assert token == tracking_token(secret, order_id)
    assert order_of_token(secret, token) == order_id


async def test_the_page_shows_progress_first_name_and_city_and_nothing_else_personal(
    api: ApiServer, tracked: tuple[str, str], client: Client
):
    order_id, token = tracked
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
        page = await http.get(f"/track/{token}")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "script-src 'nonce-" in page.headers["content-security-policy"]
        html = page.text
        assert FIRST in html and CITY in html
        assert 'id="status"' in html and "Status:" in html
        assert "Expected delivery:" in html
        assert "/fragment" in html and "setTimeout" in html  # it polls its fragment
        for text in PERSONAL:
            assert text not in html, f"{text!r} is on the tracking page"

        # the parcel on its way, then delivered: the fragment the page polls follows
        view = await wait_status(client, order_id, "shipped")
        (shipment,) = view.shipments
        fragment = await http.get(f"/track/{token}/fragment")
        assert fragment.status_code == 200
        assert "On its way" in fragment.text and shipment.tracking_number in fragment.text
        assert "1 item" in fragment.text
        assert "<html" not in fragment.text
        await confirm_delivery(client, order_id)
        await wait_status(client, order_id, "delivered", "completed")
        fragment = await http.get(f"/track/{token}/fragment")
        assert "Delivered" in fragment.text
        for text in PERSONAL:
            assert text not in fragment.text


async def test_a_tampered_or_unknown_token_is_a_plain_404(
    api: ApiServer, tracked: tuple[str, str], settings: Settings
):
    order_id, token = tracked
    encoded, mac = token.split(".")
    other_order = tracking_token(server_secret(settings), unique("NO-SUCH-ORDER"))
    forged = tracking_token("not-the-server-secret", order_id)
    tampered = [
        f"{encoded}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BA'}",  # the MAC changed
        f"{encoded}.",  # no MAC
        f"{encoded}X.{mac}",  # the order id changed
        encoded,  # no dot at all
        forged,  # made with another secret
        "x" * 500,
    ]
    async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
        answers = []
        for bad in [*tampered, other_order]:
            for path in (f"/track/{bad}", f"/track/{bad}/fragment"):
                answer = await http.get(path)
                answers.append((path, answer.status_code, answer.text))
    assert {(status, text) for _, status, text in answers} == {(404, "Not found\n")}, answers


async def test_the_page_updates_by_itself_in_a_browser(
    api: ApiServer, tracked: tuple[str, str], client: Client
):
    chromium_or_skip()
    order_id, token = tracked
    await wait_status(client, order_id, "shipped")
    async with chromium() as browser:
        context = await new_context(browser)
        page = await context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        await page.goto(f"{api.url}/track/{token}")
        await expect(page.locator("#status")).to_have_text("On its way")
        await expect(page.locator("#city")).to_have_text(CITY)
        await confirm_delivery(client, order_id)
        # no reload: the page's script swaps in the fresh fragment
        await expect(page.locator("#status")).to_have_text("Delivered", timeout=20_000)
        assert refused == []
        body = await page.content()
        for text in PERSONAL:
            assert text not in body
