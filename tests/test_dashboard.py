"""Issue 11: the console's dashboard. The figures (`domain/dashboard.py`) against rows written by real
orders through the suite's worker; then the page in Debian's headless Chromium (tests/browser.py):
a signed-in support person sees them, a signed-out browser is sent to sign in.

The database is the suite's, shared with other tests: the figures are checked for our orders and as
increases, never as absolute totals. OMS_UPDATE_SCREENSHOTS=1 writes the page's picture to
docs/images/console-dashboard.png (docs/console.md's); otherwise it goes to the test's tmp dir.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import expect
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.api_keys import Role, create_key
from domain.dashboard import dashboard, on_hold_orders
from domain.stock import raise_purchase_order
from services.orders import confirm_delivery
from tests.api_server import ApiServer
from tests.browser import chromium, chromium_or_skip, new_context, screenshot_path
from tests.helpers import add_products, order_doc, place, set_stock, unique, wait_status

DASHBOARD_SHOT = "console-dashboard.png"

pytestmark = pytest.mark.timeout(240)


async def held_and_delivered(
    client: Client, settings: Settings, sessions: SessionFactory
) -> tuple[str, str, str, str]:
    """An order on hold (above the review limit), an order delivered now, a stock below its reorder
    point and an open purchase order for it: (held order, delivered order, low sku, purchase order)."""
    skus = add_products(sessions, {"LAMP": 10, "RUG": 3})
    held = await place(client, settings, order_doc([(skus["LAMP"], 1)]), review_above=Decimal("5"))
    delivered = await place(client, settings, order_doc([(skus["LAMP"], 1)]))
    await wait_status(client, held, "on_hold")
    await wait_status(client, delivered, "shipped")
    await confirm_delivery(client, delivered)
    await wait_status(client, delivered, "delivered", "completed")
    set_stock(sessions, skus["RUG"], "W1", 3, reorder_point=5, reorder_qty=20)
    po = unique("PO-DASH")
    raise_purchase_order(
        sessions, po, skus["RUG"], "W1", 20, datetime.now(UTC) + timedelta(days=2), unique("SUP")
    )
    return held, delivered, skus["RUG"], po


async def test_the_figures_count_real_orders(
    client: Client, settings: Settings, sessions: SessionFactory, worker: None
):
    before = dashboard(sessions)
    held, delivered, low_sku, po = await held_and_delivered(client, settings, sessions)
    after = dashboard(sessions)

    with sessions() as session:
        assert held in [line.order_id for line in on_hold_orders(session)]
    # (other tests' orders may move meanwhile in the background: a hold timing out, a parcel shipping)
    assert after.counts["on_hold"] >= 1 and after.by_status["on_hold"] >= 1
    # both placed today; the delivered one shipped and was delivered in this hour (or the last, at a
    # turn of the hour), each counted once however many events it wrote
    assert after.placed_today >= before.placed_today + 2
    assert after.shipped_today >= before.shipped_today + 1
    assert after.delivered_today >= before.delivered_today + 1
    hour = after.at.hour
    assert after.today[hour].delivered >= 1 or after.today[(hour - 1) % 24].delivered >= 1
    assert len(after.today) == 24 and [h.hour for h in after.today] == list(range(24))
    assert after.total_orders >= before.total_orders + 2

    (rug,) = [s for s in after.low_stock if s.sku == low_sku]
    assert (rug.warehouse, rug.available, rug.reorder_point) == ("W1", 3, 5)
    (open_po,) = [p for p in after.open_purchase_orders if p.id == po]
    assert (open_po.sku, open_po.quantity, open_po.late) == (low_sku, 20, False)
    assert after.counts["open_purchase_orders"] == before.counts["open_purchase_orders"] + 1
    # nobody flagged these orders
    assert held not in {line.order_id for line in after.attention + after.overdue}
    assert delivered not in {line.order_id for line in after.attention + after.overdue}


async def test_the_page_shows_the_figures_to_support_and_sends_others_to_sign_in(
    api: ApiServer, client: Client, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    chromium_or_skip()  # before anything starts
    held, _, low_sku, po = await held_and_delivered(client, settings, sessions)
    support_key = create_key(sessions, unique("dashboard-support"), Role.support).key
    figures = dashboard(sessions)

    async with chromium() as browser:
        # signed out: the dashboard sends the browser to sign in
        context = await new_context(browser)
        page = await context.new_page()
        await page.goto(f"{api.url}/console/dashboard")
        await page.wait_for_url(re.compile(rf"^{re.escape(api.url)}/console/sign-in$"))
        await expect(page.locator('input[name="api_key"]')).to_be_visible()
        await context.close()

        context = await new_context(browser)
        page = await context.new_page()
        try:
            await page.goto(f"{api.url}/console/sign-in")
            await page.locator('input[name="api_key"]').fill(support_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(re.compile(rf"^{re.escape(api.url)}/console/?$"))
            answer = await page.goto(f"{api.url}/console/dashboard")
            assert answer is not None and answer.status == 200
            assert answer.headers.get("refresh") == "30"  # it reloads itself
            await expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
            await expect(page.locator("#decisions")).to_contain_text(held)
            await expect(page.locator("#low-stock")).to_contain_text(low_sku)
            await expect(page.locator("#open-pos")).to_contain_text(po)
            on_hold_tile = await page.locator("#tile-on-hold .n").inner_text()
            assert int(on_hold_tile) >= figures.counts["on_hold"]
            assert int(await page.locator("#tile-delivered-today .n").inner_text()) >= 1
            # the charts: one bar per status, and bars for today's hours
            assert await page.locator('svg[aria-labelledby="by-status"] rect').count() == len(
                figures.by_status
            )
            assert await page.locator('svg[aria-labelledby="per-hour"] rect').count() >= 3
            await expect(page.locator('svg[aria-labelledby="by-status"]')).to_contain_text("on hold")
            # the report's figures of the last 30 days (domain/reports.py), and its download
            assert int(await page.locator("#report-placed .n").inner_text()) >= 2
            await expect(page.locator("#report-on-time")).to_contain_text("delivered on time")
            await expect(page.locator("#report-download")).to_have_attribute(
                "href", re.compile(r"^/console/reports\?since=\d{4}-\d{2}-\d{2}&until=\d{4}-\d{2}-\d{2}$")
            )
            await page.screenshot(path=screenshot_path(tmp_path, DASHBOARD_SHOT), full_page=True)
        except Exception as exc:
            shot = tmp_path / "failure.png"
            await page.screenshot(path=shot, full_page=True)
            log = "\n".join(api.log().splitlines()[-30:])
            raise AssertionError(f"{exc}\n--- the page: {shot}\n--- API log ---\n{log}") from exc
