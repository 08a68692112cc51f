"""Issue 11: the support console's order pages in a real browser (Debian's headless Chromium, through
tests/browser.py: skipped without it, failed without it under OMS_REQUIRE_BROWSER=1) against the real API
process, worker and Temporal: finding an order, reading its story, acting on it (cancel, return and
receipt, a refusal), escaping, and the page following an order as a warehouse reports on it.

A few checks need no browser (a redirect, a forged form): httpx with its own cookie jar does those."""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.async_api import Page, expect

from config import SandboxMode, Settings
from domain.api_keys import Role
from models.fulfilment import CarrierEvent, WarehouseReport, WarehouseStep
from models.shipping import CarrierEventType
from models.workflow_names import order_workflow_id
from services.fulfilment import submit_carrier_event, submit_warehouse_report
from services.orders import confirm_delivery, order_view
from tests.api_server import ApiServer
from tests.browser import chromium, new_context, screenshot_path
from tests.helpers import add_products, eventually, money_order_doc, order_doc, place, unique, wait_status
from tests.test_console_session import csrf_of, key_name, sign_in
from tests.test_message_resend import order_with_a_message_given_up

pytestmark = pytest.mark.timeout(240)

LIVE_TIMEOUT_MS = 15_000  # the page polls every 2 s; a step of the worker takes well under a second
EVIL = "<script>window.__pwned = 1</script>"


@pytest.fixture
async def page(api: ApiServer, api_keys) -> AsyncIterator[Page]:  # type: ignore[no-untyped-def]
    """A browser page signed in to the console with the support key, through the sign-in form."""
    async with chromium() as browser:
        context = await new_context(browser, base_url=api.url)
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto("/console/sign-in")
        await page.fill("#api_key", api_keys[Role.support])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{api.url}/console")
        yield page
        assert dialogs == []  # nothing the page showed ran as script
        await context.close()


def customer_doc(lines: list[tuple[str, int]], **overrides) -> dict:  # type: ignore[no-untyped-def,type-arg]
    doc = order_doc(lines, **overrides)
    doc["customer"] = {**doc["customer"], "id": unique("C")}
    return doc


async def held_order(client, settings: Settings, sessions) -> str:  # type: ignore[no-untyped-def]
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    order_id = await place(client, settings, customer_doc([(skus["TV"], 1)]), review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    return order_id


async def test_signed_out_the_order_pages_send_you_to_sign_in(http, client, settings, sessions):
    order_id = await held_order(client, settings, sessions)
    for path in ("/console/orders", f"/console/orders/{order_id}", "/console/orders?customer=C-7"):
        answer = await http.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in", path
    assert (await http.get(f"/console/orders/{order_id}/live")).status_code == 401
    answer = await http.post(f"/console/orders/{order_id}/cancel", data={"reason": "x", "csrf": "x"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    assert (await order_view(client, order_id)).status == "on_hold"


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    http, api_keys, client, settings, sessions
):
    order_id = await held_order(client, settings, sessions)
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    page = await http.get(f"/console/orders/{order_id}")
    assert page.status_code == 200
    token = csrf_of(page)
    for sent in ({"reason": "forged"}, {"reason": "forged", "csrf": "not-the-token"}):
        answer = await http.post(f"/console/orders/{order_id}/cancel", data=sent)
        assert answer.status_code == 403
        assert "did not come from this page" in answer.text
        answer = await http.post(f"/console/orders/{order_id}/notes", data={"text": "forged", **sent})
        assert answer.status_code == 403
    view = await order_view(client, order_id)
    assert view.status == "on_hold" and not [e for e in view.events if e.type == "support_note"]
    # with the page's token the same form works (303 back to the order)
    answer = await http.post(f"/console/orders/{order_id}/notes", data={"text": "called", "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == f"/console/orders/{order_id}"
    # an unknown order is a 404 page, an invalid form a 422 one
    assert (await http.get("/console/orders/NO-SUCH-ORDER-1")).status_code == 404
    answer = await http.post(f"/console/orders/{order_id}/cancel", data={"reason": "", "csrf": token})
    assert answer.status_code == 422 and "Not done" in answer.text
    assert (await order_view(client, order_id)).status == "on_hold"
    # the lines' quantities: not a whole number, or left blank where a line edit needs one
    [sku] = [line.sku for line in (await order_view(client, order_id)).lines]
    forms = [
        ("cancel", {"reason": "x", "line_sku": sku, "line_quantity": "two"}, f"quantity of {sku}: 'two'"),
        ("line-edits", {"line_sku": sku, "line_quantity": "1.5"}, f"quantity of {sku}: '1.5'"),
        ("line-edits", {"line_sku": ["", sku], "line_quantity": ["", ""]}, f"quantity of {sku}: ''"),
        ("line-edits", {"line_sku": "", "line_quantity": "x"}, "quantity of the new SKU: 'x'"),
    ]
    for action, form, problem in forms:
        answer = await http.post(f"/console/orders/{order_id}/{action}", data={**form, "csrf": token})
        assert answer.status_code == 422 and problem in html.unescape(answer.text), (
            action,
            form,
            answer.text,
        )
    view = await order_view(client, order_id)
    assert view.status == "on_hold" and [(x.sku, x.quantity) for x in view.lines] == [(sku, 1)]
    assert not [e for e in view.events if e.type in ("order_edited", "lines_cancelled")]


async def test_find_an_order_by_customer_and_read_its_story(page: Page, api, client, settings, sessions):
    skus = add_products(sessions, {"MUG": 5})
    doc = customer_doc([(skus["MUG"], 2)])
    order_id = await place(client, settings, doc)
    await wait_status(client, order_id, "shipped")

    await page.get_by_role("link", name="Find and work on orders").click()
    await expect(page).to_have_url(f"{api.url}/console/orders")
    await page.fill("#customer", doc["customer"]["id"])
    await page.get_by_role("button", name="Search").click()
    row = page.locator("tbody tr", has_text=order_id)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(doc["customer"]["id"])

    await row.get_by_role("link", name=order_id).click()
    await expect(page).to_have_url(f"{api.url}/console/orders/{order_id}")
    await expect(page.locator("h1")).to_have_text(f"Order {order_id}")
    await expect(page.locator("#order-status")).to_have_text("shipped")
    main = page.locator("main")
    for text in (
        "Ada Lovelace",
        "ada@example.com",
        "12 St James's Sq",
        "Leave with the concierge",
        skus["MUG"],
    ):
        await expect(main).to_contain_text(text)
    story = page.locator("table.events tbody tr")
    types = [t.strip() for t in await story.locator("td:nth-child(3)").all_inner_texts()]
    expected = [e.type for e in (await order_view(client, order_id)).events]
    assert types == expected[: len(types)] and len(types) >= 4, types  # in order, as the story goes
    assert types.index("order_validated") < types.index("stock_reserved") < types.index("payment_captured")
    shipment = page.locator("section.shipment").first
    await expect(shipment.locator(".shipment-status")).to_have_text("shipped")
    await expect(shipment).not_to_contain_text("Tracking number none yet")
    link = page.get_by_role("link", name="This order's run in the Temporal Web UI")
    expected = f"{settings.temporal_ui_origins[0]}/namespaces/{settings.temporal_namespace}/workflows/"
    assert await link.get_attribute("href") == expected + order_workflow_id(order_id)

    # an exact order id goes straight to its page
    await page.goto("/console")
    await page.fill("#order_id", order_id)
    await page.get_by_role("button", name="Open order").click()
    await expect(page).to_have_url(f"{api.url}/console/orders/{order_id}")


async def test_cancel_a_held_order(page: Page, client, settings, sessions, api_keys):
    order_id = await held_order(client, settings, sessions)
    await page.goto(f"/console/orders/{order_id}")
    await expect(page.locator("#order-status")).to_have_text("on_hold")
    await expect(page.get_by_role("button", name="Release hold")).to_be_visible()
    await page.fill("#cancel-reason", "customer called to cancel")
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator("#order-status")).to_have_text("cancelled", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#payment-status")).to_have_text("voided", timeout=LIVE_TIMEOUT_MS)
    await expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    await expect(page.get_by_role("button", name="Release hold")).to_have_count(0)
    view = await order_view(client, order_id)
    (cancelled,) = [e for e in view.events if e.type == "order_cancelled"]
    assert "customer called to cancel" in cancelled.detail
    assert key_name(sessions, api_keys[Role.support]) in cancelled.detail


async def test_authorize_a_return_record_its_receipt_and_see_the_refund(
    page: Page, client, settings, sessions, tmp_path
):
    skus = add_products(sessions, {"HAT": 5}, price="20.00")
    order_id = await place(client, settings, customer_doc([(skus["HAT"], 2)]))
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: v.status == "delivered" and v.return_window_ends is not None,
    )
    await page.goto(f"/console/orders/{order_id}")

    # a refused action: more than was delivered; the page says why and nothing changed
    await page.fill("#return-quantity", "7")
    await page.fill("#return-reason", "too many")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Authorize return").click()
    assert (await answer.value).status == 409
    await expect(page.locator(".message")).to_contain_text("Refused")
    assert (await order_view(client, order_id)).returns == []

    await page.fill("#return-quantity", "1")
    await page.fill("#return-reason", "wrong size")
    await page.get_by_role("button", name="Authorize return").click()
    row = page.locator("table.returns tbody tr", has_text="wrong size")
    await expect(row.locator(".return-status")).to_have_text("requested")
    rma = (await order_view(client, order_id)).returns[0].rma
    await expect(row).to_contain_text(rma)

    await page.get_by_role("button", name=f"Record receipt of {rma}").click()
    await expect(row.locator(".return-status")).to_have_text("refunded", timeout=LIVE_TIMEOUT_MS)
    await expect(row.locator(".refund")).to_have_text("20.00 EUR", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#payment-refunded")).to_have_text("20.00 EUR", timeout=LIVE_TIMEOUT_MS)
    await page.screenshot(path=screenshot_path(tmp_path, "console-order.png"), full_page=True)


async def test_the_order_page_shows_the_orders_money_to_the_cent(
    page: Page, client, settings, sessions, tmp_path
):
    """tests/helpers.py's money order: 3 mugs at 10.00 less a 3.00 discount (code THREE) with 5.40 VAT,
    a lamp at 10.00 with 2.00 VAT, shipping 5.00 with 1.00 VAT: 50.40. The mugs ship from W1, the lamp
    from W2, each parcel capturing its share (36.77 and 13.63); then a goodwill refund of 2.50."""
    mug = add_products(sessions, {"MUG": 5}, price="10.00")["MUG"]
    lamp = add_products(sessions, {"LAMP": 5}, price="10.00", warehouse="W2")["LAMP"]
    doc = money_order_doc(mug, lamp)
    doc["customer"] = {**doc["customer"], "id": unique("C")}
    order_id = await place(client, settings, doc)
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: v.payment.captured == Decimal("50.40"),
        what="captured",
    )

    await page.goto(f"/console/orders/{order_id}")
    shown = {
        "#money-subtotal": "40.00 EUR",
        "#money-discounts": "3.00 EUR (code THREE 3.00 EUR)",
        "#money-shipping": "5.00 EUR",
        "#money-tax": "8.40 EUR, added to the prices",
        "#money-total": "50.40 EUR",
        "#payment-authorized": "50.40 EUR",
        "#payment-captured": "50.40 EUR",
        "#payment-refunded": "0.00 EUR",
    }
    for where, text in shown.items():
        await expect(page.locator(where)).to_have_text(text)
    view = await order_view(client, order_id)
    parcels = {s.lines[0].sku: s.id for s in view.shipments}
    await expect(page.locator(f"#shipment-{parcels[mug]} .shipment-amount")).to_have_text("36.77 EUR")
    await expect(page.locator(f"#shipment-{parcels[lamp]} .shipment-amount")).to_have_text("13.63 EUR")

    await page.fill("#goodwill-amount", "2.50")
    await page.get_by_role("button", name="Refund as goodwill").click()
    refunded = page.locator("#payment-refunded")
    await expect(refunded).to_have_text("2.50 EUR (of which goodwill 2.50 EUR)", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#payment-captured")).to_have_text("50.40 EUR")
    await expect(page.locator("#money-total")).to_have_text("50.40 EUR")
    await page.screenshot(path=screenshot_path(tmp_path, "console-order-money.png"), full_page=True)


async def test_markup_in_customer_data_and_notes_shows_as_text(
    page: Page, http, api_keys, client, settings, sessions
):
    skus = add_products(sessions, {"PEN": 5}, price="900.00")
    doc = customer_doc([(skus["PEN"], 1)], delivery_instructions=f"ring twice {EVIL}")
    doc["customer"]["name"] = f"Mallory {EVIL}"
    order_id = await place(client, settings, doc, review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")

    await page.goto(f"/console/orders/{order_id}")
    await page.fill("#note-text", f"customer wrote {EVIL}")
    await page.get_by_role("button", name="Add note").click()
    notes = page.locator("ul.notes")
    await expect(notes).to_contain_text(f"customer wrote {EVIL}", timeout=LIVE_TIMEOUT_MS)
    main = page.locator("main")
    await expect(main).to_contain_text(f"Mallory {EVIL}")
    await expect(main).to_contain_text(f"ring twice {EVIL}")
    assert await page.evaluate("window.__pwned === undefined")

    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    html = (await http.get(f"/console/orders/{order_id}")).text
    assert EVIL not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html


async def test_the_order_page_follows_the_order_without_a_reload(page: Page, client, sessions, gated_worker):
    own, _ = await gated_worker(sandbox_warehouse=SandboxMode.manual)
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(client, own, customer_doc([(skus["LAMP"], 1)]))

    async def released():  # type: ignore[no-untyped-def]
        return await order_view(client, order_id)

    view = await eventually(released, lambda v: any(s.status == "released" for s in v.shipments))
    shipment_id = view.shipments[0].id

    await page.goto(f"/console/orders/{order_id}")
    await page.evaluate("window.__same_page = true")
    status = page.locator(f"#shipment-{shipment_id} .shipment-status")
    await expect(status).to_have_text("released")

    def report(step: WarehouseStep, **fields) -> WarehouseReport:  # type: ignore[no-untyped-def]
        return WarehouseReport(shipment_id=shipment_id, step=step, by="wh-test", **fields)

    await submit_warehouse_report(client, report(WarehouseStep.picked))
    await expect(status).to_have_text("picked", timeout=LIVE_TIMEOUT_MS)
    await submit_warehouse_report(client, report(WarehouseStep.packed, parcels_g=[500]))
    await expect(status).to_have_text("packed", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#order-status")).to_have_text("packed", timeout=LIVE_TIMEOUT_MS)
    await submit_warehouse_report(client, report(WarehouseStep.handed_over))
    await expect(status).to_have_text("shipped", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#order-status")).to_have_text("shipped", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("table.events")).to_contain_text("wh-test", timeout=LIVE_TIMEOUT_MS)
    assert await page.evaluate("window.__same_page === true")  # the same document: no reload


async def test_a_lost_parcel_is_resolved_from_its_tracking_timeline(page: Page, client, settings, sessions):
    skus = add_products(sessions, {"VASE": 3}, price="30.00")
    order_id = await place(client, settings, customer_doc([(skus["VASE"], 1)]))
    (shipment,) = (await wait_status(client, order_id, "shipped")).shipments
    assert shipment.tracking_number is not None
    for kind, place_ in ((CarrierEventType.in_transit, "Leeds hub"), (CarrierEventType.lost, "Leeds hub")):
        await submit_carrier_event(
            client,
            sessions,
            CarrierEvent(
                tracking_number=shipment.tracking_number,
                type=kind,
                event_id=uuid.uuid4().hex,
                at=datetime.now(UTC),
                place=place_,
            ),
        )
    await wait_status(client, order_id, "delivery_exception")

    await page.goto(f"/console/orders/{order_id}")
    section = page.locator(f"#shipment-{shipment.id}")
    await expect(section.locator(".shipment-status")).to_have_text("exception")
    timeline = section.locator("table tbody tr")
    await expect(timeline).to_have_count(2)
    await expect(timeline.nth(0)).to_contain_text("in_transit")
    await expect(timeline.nth(1)).to_contain_text("lost")
    await expect(timeline.nth(1)).to_contain_text("Leeds hub")

    await section.get_by_label("Refund its lines").check()
    await section.get_by_role("button", name=f"Resolve shipment {shipment.id}").click()
    await expect(section.locator(".shipment-status")).to_have_text("resolved", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#payment-status")).to_have_text("refunded", timeout=LIVE_TIMEOUT_MS)
    await expect(page.get_by_role("button", name=f"Resolve shipment {shipment.id}")).to_have_count(0)


async def test_release_a_held_order(page: Page, client, settings, sessions):
    order_id = await held_order(client, settings, sessions)
    await page.goto(f"/console/orders/{order_id}")
    await expect(page.locator("main")).to_contain_text("above the review limit 500")
    await page.get_by_role("button", name="Release hold").click()
    await expect(page.locator("#order-status")).not_to_have_text("on_hold", timeout=LIVE_TIMEOUT_MS)
    await expect(page.get_by_role("button", name="Release hold")).to_have_count(0)
    view = await order_view(client, order_id)
    assert any(e.type == "hold_released" for e in view.events)


async def test_cancel_some_units_of_an_order_in_its_release_window(page: Page, client, settings, sessions):
    """Issue 26: the cancel form's quantity per line cancels only those units; the order goes on."""
    from datetime import timedelta

    sku = add_products(sessions, {"CUP": 5}, price="10.00")["CUP"]
    order_id = await place(client, settings, order_doc([(sku, 3)]), release_delay=timedelta(minutes=10))
    await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)
    await page.goto(f"/console/orders/{order_id}")
    await page.fill("#cancel-reason", "two are enough")
    await page.fill("#cancel-qty-1", "1")
    await page.get_by_role("button", name="Cancel order").click()
    view = await eventually(
        lambda: order_view(client, order_id), lambda v: any(e.type == "lines_cancelled" for e in v.events)
    )
    assert view.status == "confirmed" and view.shipments[0].lines[0].quantity == 2
    assert view.shipments[0].amount == Decimal("20.00")
    await page.fill("#cancel-reason", "too many")
    await page.fill("#cancel-qty-1", "3")
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.get_by_text("only 2 x")).to_be_visible()  # refused with the reason


async def test_change_the_lines_of_an_order_in_its_release_window(page: Page, client, settings, sessions):
    """Issue 26: the line edit form: a quantity changed and a SKU added; the page shows the new total and
    a refusal (out of stock) with its reason, nothing changed."""
    from datetime import timedelta

    skus = add_products(sessions, {"PEN": 5, "INK": 2}, price="4.00")
    order_id = await place(
        client, settings, order_doc([(skus["PEN"], 2)]), release_delay=timedelta(minutes=10)
    )
    await eventually(lambda: order_view(client, order_id), lambda v: v.releases_at is not None)
    await page.goto(f"/console/orders/{order_id}")
    await page.fill("#edit-qty-1", "3")
    await page.fill("#edit-new-sku", skus["INK"])
    await page.fill("#edit-new-qty", "2")
    await page.get_by_role("button", name="Change lines").click()
    view = await eventually(
        lambda: order_view(client, order_id), lambda v: any(e.type == "order_edited" for e in v.events)
    )
    assert view.units() == {skus["PEN"]: 3, skus["INK"]: 2} and view.total == Decimal("20.00")
    assert view.payment.authorized == Decimal("20.00")
    await expect(page.locator("main")).to_contain_text("20.00 EUR", timeout=LIVE_TIMEOUT_MS)
    await page.fill("#edit-qty-2", "5")  # INK: 2 in stock, both reserved
    await page.get_by_role("button", name="Change lines").click()
    await expect(page.get_by_text("out of stock")).to_be_visible()
    assert (await order_view(client, order_id)).units() == {skus["PEN"]: 3, skus["INK"]: 2}


async def test_send_a_refused_message_again_to_a_corrected_address(page: Page, client, settings, sessions):
    """A message the mail server refused shows FAILED with its answer and a "Send again" form; sent
    again to the address typed in, the worker delivers it and the row says who sent it again."""
    order_id, message = await order_with_a_message_given_up(client, settings, sessions)
    await page.goto(f"/console/orders/{order_id}")
    messages = page.locator("table.messages")
    await expect(messages).to_contain_text("FAILED (recipient_refused): 550 5.1.1 no such user")
    await page.fill(f"#resend-to-{message}", "not-an-address")  # the browser's own check stops this
    await page.evaluate("document.querySelector('form.resend').noValidate = true")
    await page.get_by_role("button", name="Send again").click()
    await expect(page.get_by_text("Not done: to:")).to_be_visible()
    await page.fill(f"#resend-to-{message}", "right@example.com")
    await page.get_by_role("button", name="Send again").click()
    await expect(messages).to_contain_text("right@example.com", timeout=LIVE_TIMEOUT_MS)
    await expect(messages).to_contain_text("(sent again by ", timeout=LIVE_TIMEOUT_MS)
    await expect(page.get_by_role("button", name="Send again")).to_have_count(0)
