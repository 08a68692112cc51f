"""The support console's stock pages (`api/routes/console_stock.py`) against the real API process:
levels with the reorder point and LOW, a SKU's movements newest first, and the admin-only adjust and
receive forms (support sees no forms and its POSTs are 403), refusals that change nothing, escaping,
and signing out. The admin adjust flow runs in headless Chromium (tests/browser.py).

The tests skip while the API does not serve `/console/stock` (the router not yet registered in
`api/app.py`): they run as soon as it is."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from db import SessionFactory
from domain.api_keys import Role
from domain.catalog import load_catalog
from domain.stock import stock_levels
from models import tables as t
from models.catalog import CatalogFile
from tests.api_server import ApiServer
from tests.browser import chromium, new_context
from tests.helpers import unique
from tests.test_console_session import csrf_of, key_name, sign_in

pytestmark = pytest.mark.timeout(240)

EVIL = "<script>window.__pwned = 1</script>"
ESCAPED = "&lt;script&gt;window.__pwned = 1&lt;/script&gt;"


@pytest.fixture(autouse=True)
def stock_pages_served(api: ApiServer) -> None:
    """Skip while the router is not registered: a signed-out GET is then 404 instead of 303."""
    answer = httpx.get(f"{api.url}/console/stock", follow_redirects=False, timeout=30)
    if answer.status_code == 404:
        pytest.skip("GET /console/stock is 404: api/routes/console_stock.py is not registered in api/app.py")


def stocked_sku(sessions: SessionFactory, on_hand: int = 10, reorder_point: int | None = None) -> str:
    """A new product with stock in W1 (no reorder quantity: a LOW level starts no replenishment)."""
    sku = unique("STK")
    load_catalog(
        sessions,
        CatalogFile.model_validate(
            {
                "warehouses": [{"code": "W1", "name": "Warehouse W1"}],
                "products": [
                    {
                        "sku": sku,
                        "name": f"Product {sku}",
                        "price": "10.00",
                        "currency": "EUR",
                        "weight_g": 100,
                    }
                ],
                "stock": [
                    {"sku": sku, "warehouse": "W1", "on_hand": on_hand, "reorder_point": reorder_point}
                ],
            }
        ),
    )
    return sku


def on_hand(sessions: SessionFactory, sku: str) -> int:
    (level,) = [s for s in stock_levels(sessions, sku) if s.warehouse == "W1"]
    return level.on_hand


def movements(sessions: SessionFactory, sku: str) -> list[t.StockMovement]:
    with sessions() as session:
        rows = session.query(t.StockMovement).filter_by(sku=sku).order_by(t.StockMovement.id).all()
        session.expunge_all()
        return rows


async def test_signed_out_the_stock_pages_send_you_to_sign_in(http, sessions):
    sku = stocked_sku(sessions)
    for path in ("/console/stock", f"/console/stock?sku={sku}", f"/console/stock/{sku}"):
        answer = await http.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in", path
    for action, form in (
        ("adjust", {"warehouse": "W1", "delta": "5", "reason": "x", "csrf": "x"}),
        ("receive", {"warehouse": "W1", "quantity": "5", "csrf": "x"}),
    ):
        answer = await http.post(f"/console/stock/{sku}/{action}", data=form)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    assert on_hand(sessions, sku) == 10


async def test_admin_sees_levels_and_adjusts_in_a_browser(api, api_keys, sessions):
    low = stocked_sku(sessions, on_hand=3, reorder_point=5)
    async with chromium() as browser:
        context = await new_context(browser, base_url=api.url)
        page: Page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto("/console/sign-in")
        await page.fill("#api_key", api_keys[Role.admin])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{api.url}/console")

        await page.goto("/console/stock")
        await page.fill("#sku", low)
        await page.get_by_role("button", name="Filter").click()
        row = page.locator("table.levels tbody tr", has_text=low)
        await expect(row).to_have_count(1)
        cells = [c.strip() for c in await row.locator("td").all_inner_texts()]
        assert cells == [low, "W1", "3", "0", "3", "5", "LOW"], cells

        await row.get_by_role("link", name=low).click()
        await expect(page).to_have_url(f"{api.url}/console/stock/{low}")
        await expect(page.locator("h1")).to_have_text(f"Stock of {low}")
        await page.select_option("#adjust-warehouse", "W1")
        await page.fill("#adjust-delta", "4")
        await page.fill("#adjust-reason", f"cycle count found more {EVIL}")
        async with page.expect_response(lambda r: r.request.method == "POST") as answer:
            await page.get_by_role("button", name="Adjust stock").click()
        assert (await answer.value).status == 303
        await expect(page).to_have_url(f"{api.url}/console/stock/{low}")

        newest = page.locator("table.movements tbody tr").first
        await expect(newest.locator(".kind")).to_have_text("adjust")
        await expect(newest.locator(".on-hand")).to_have_text("+4")
        who = key_name(sessions, api_keys[Role.admin])
        await expect(newest.locator(".reason")).to_have_text(f"cycle count found more {EVIL} (by {who})")
        level = page.locator("table.levels tbody tr", has_text="W1")
        await expect(level).not_to_contain_text("LOW")  # 7 available, above the reorder point 5
        assert await page.evaluate("window.__pwned === undefined")
        assert dialogs == []
        await context.close()

    assert on_hand(sessions, low) == 7
    adjust = movements(sessions, low)[-1]
    assert (adjust.kind, adjust.on_hand_delta) == ("adjust", 4)
    assert adjust.reason == f"cycle count found more {EVIL} (by {who})"


async def test_admin_receives_goods(http, api_keys, sessions):
    sku = stocked_sku(sessions, on_hand=2)
    assert (await sign_in(http, api_keys[Role.admin])).status_code == 303
    page = await http.get(f"/console/stock/{sku}")
    assert page.status_code == 200 and f'action="/console/stock/{sku}/receive"' in page.text
    token = csrf_of(page)

    answer = await http.post(
        f"/console/stock/{sku}/receive", data={"warehouse": "W1", "quantity": "6", "csrf": token}
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/console/stock/{sku}"
    assert on_hand(sessions, sku) == 8
    booked = movements(sessions, sku)[-1]
    assert (booked.kind, booked.on_hand_delta, booked.warehouse) == ("receive", 6, "W1")
    page = await http.get(f"/console/stock/{sku}")
    assert '<td class="kind">receive</td>' in page.text and '<td class="on-hand">+6</td>' in page.text

    # refusals: nothing booked, the reason shown
    for form, reason in (
        ({"quantity": "0"}, "greater than 0"),
        ({"quantity": "many"}, "not a whole number"),
        ({"quantity": "1", "purchase_order": "NO-SUCH-PO"}, "unknown purchase order NO-SUCH-PO"),
        ({"quantity": "1", "warehouse": "NOWHERE"}, "unknown warehouse NOWHERE"),
    ):
        sent = {"warehouse": "W1", "csrf": token, **form}
        answer = await http.post(f"/console/stock/{sku}/receive", data=sent)
        assert answer.status_code == 422 and "Not done" in answer.text and reason in answer.text, answer.text
    assert on_hand(sessions, sku) == 8 and movements(sessions, sku)[-1].id == booked.id


async def test_support_sees_levels_and_movements_but_no_forms_and_may_not_post(http, api_keys, sessions):
    sku = stocked_sku(sessions, on_hand=5)
    before = len(movements(sessions, sku))
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    levels = await http.get(f"/console/stock?sku={sku}")
    assert levels.status_code == 200 and f'href="/console/stock/{sku}"' in levels.text
    page = await http.get(f"/console/stock/{sku}")
    assert page.status_code == 200
    assert 'table class="movements"' in page.text or "No movements yet" in page.text
    assert "/adjust" not in page.text and "/receive" not in page.text
    assert "Only an admin can adjust or receive stock" in page.text
    token = csrf_of(page)  # the sign-out form's: a valid token of this session
    for action, form in (
        ("adjust", {"warehouse": "W1", "delta": "5", "reason": "forged"}),
        ("receive", {"warehouse": "W1", "quantity": "5"}),
    ):
        answer = await http.post(f"/console/stock/{sku}/{action}", data={**form, "csrf": token})
        assert answer.status_code == 403 and "only an admin" in answer.text
    assert on_hand(sessions, sku) == 5 and len(movements(sessions, sku)) == before


async def test_a_bad_adjustment_is_refused_with_the_reason_and_changes_nothing(http, api_keys, sessions):
    sku = stocked_sku(sessions, on_hand=4)
    before = len(movements(sessions, sku))
    assert (await sign_in(http, api_keys[Role.admin])).status_code == 303
    page = await http.get(f"/console/stock/{sku}")
    token = csrf_of(page)
    for form, status, reason in (
        ({"delta": "0", "reason": "nothing"}, 422, "non-zero delta"),
        ({"delta": "ten", "reason": "typo"}, 422, "not a whole number"),
        ({"delta": "2", "reason": ""}, 422, "reason: String should have at least 1 character"),
        ({"delta": "-9", "reason": "lost"}, 422, "would fall below"),
        ({"delta": "2", "reason": "no token", "csrf": ""}, 403, "did not come from this page"),
        ({"delta": "2", "reason": "forged", "csrf": "not-the-token"}, 403, "did not come from this page"),
    ):
        sent = {"warehouse": "W1", "csrf": token, **form}
        answer = await http.post(f"/console/stock/{sku}/adjust", data=sent)
        assert answer.status_code == status and reason in answer.text, (form, answer.text)
        if status == 422:  # the page again, with the form as sent
            assert f'value="{form["delta"]}"' in answer.text
    assert on_hand(sessions, sku) == 4 and len(movements(sessions, sku)) == before
    # markup in a refused form comes back as text
    answer = await http.post(
        f"/console/stock/{sku}/adjust", data={"warehouse": "W1", "delta": EVIL, "reason": "x", "csrf": token}
    )
    assert answer.status_code == 422 and EVIL not in answer.text and "&lt;script&gt;" in answer.text
    # an unknown SKU is a 404 page
    assert (await http.get("/console/stock/NO-SUCH-SKU-1")).status_code == 404
