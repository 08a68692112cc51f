"""The console's customer page (the CRM view, `domain/customers.py`): figures from real orders placed through
the suite's worker, the page in Debian's headless Chromium (tests/browser.py: skipped without it, failed
without it under OMS_REQUIRE_BROWSER=1), finding a customer by e-mail, and escaping."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from playwright.async_api import Page, expect

from domain.api_keys import Role
from domain.customers import UnknownCustomer, customer_profile, customers_by_email
from models import tables as t
from models.orders import FeedbackIn, ReturnIn, ReturnReceipt
from services.orders import (
    add_note,
    confirm_delivery,
    give_feedback,
    order_view,
    receive_return,
    request_return,
)
from tests.api_server import ApiServer
from tests.browser import chromium, new_context
from tests.helpers import add_products, eventually, ledger, order_doc, place, unique, wait_status
from tests.test_console_session import sign_in

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("worker")]

EVIL = "<script>window.__pwned = 1</script>"


@dataclass(frozen=True)
class History:
    customer_id: str
    email: str
    returned: str  # the order with a refunded return (2 HAT at 20.00, 1 returned)
    kept: str  # the order kept whole (1 MUG at 10.00)
    rma: str


async def delivered(client, settings, doc) -> str:  # type: ignore[no-untyped-def]
    order_id = await place(client, settings, doc)
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: v.status == "delivered" and v.return_window_ends is not None,
    )
    return order_id


async def history(client, settings, sessions) -> History:  # type: ignore[no-untyped-def]
    """A customer with two delivered orders, a refunded return of one unit, two feedbacks and a note."""
    skus = add_products(sessions, {"HAT": 5}, price="20.00")
    mugs = add_products(sessions, {"MUG": 5}, price="10.00")
    customer_id = unique("CRM")
    email = f"{customer_id.lower()}@example.com"

    def doc(lines):  # type: ignore[no-untyped-def]
        d = order_doc(lines)
        d["customer"] = {**d["customer"], "id": customer_id, "email": email}
        return d

    returned = await delivered(client, settings, doc([(skus["HAT"], 2)]))
    kept = await delivered(client, settings, doc([(mugs["MUG"], 1)]))
    ret = await request_return(client, returned, ReturnIn(sku=skus["HAT"], quantity=1, reason="too big"))
    await receive_return(client, returned, ReturnReceipt(rma=ret.rma, condition="good", by="wh-test"))
    await give_feedback(client, returned, FeedbackIn(score=2, comment=f"hat too big {EVIL}"))
    await give_feedback(client, kept, FeedbackIn(score=5, comment="lovely mug"))
    await add_note(client, returned, f"customer wrote {EVIL}", by="support-test")
    await add_note(client, kept, "asked about gift wrap", by="support-test")

    def settled(profile) -> bool:  # type: ignore[no-untyped-def]
        return (
            len(profile.feedback) == 2
            and len(profile.notes) == 2
            and [r.status for r in profile.returns] == ["refunded"]
            and ledger(sessions, returned).get("refund") == Decimal("20.00")
        )

    async def probe():  # type: ignore[no-untyped-def]
        return customer_profile(sessions, customer_id)

    await eventually(probe, settled)
    return History(customer_id, email, returned, kept, ret.rma)


async def test_the_profile_figures_are_exact(client, settings, sessions):
    h = await history(client, settings, sessions)
    profile = customer_profile(sessions, h.customer_id)
    assert (profile.name, profile.email) == ("Ada Lovelace", h.email)
    assert [o.order_id for o in profile.orders] == [h.kept, h.returned]  # newest first
    assert [o.total for o in profile.orders] == [Decimal("10.00"), Decimal("40.00")]
    # captured 40 + 10, refunded 20
    assert ledger(sessions, h.returned) == {
        "authorization": Decimal("40.00"),
        "capture": Decimal("40.00"),
        "refund": Decimal("20.00"),
    }
    assert profile.lifetime_value == {"EUR": Decimal("30.00")}
    assert (profile.units_returned, profile.units_ordered) == (1, 3)
    assert profile.return_rate == Decimal(1) / Decimal(3)
    assert [(r.rma, r.status, r.refund_amount, r.units) for r in profile.returns] == [
        (h.rma, "refunded", Decimal("20.00"), 1)
    ]
    assert sorted((f.order_id, f.score) for f in profile.feedback) == sorted([(h.returned, 2), (h.kept, 5)])
    assert profile.average_score == Decimal("3.5")
    notes = {n.order_id: n.text for n in profile.notes}
    assert f"customer wrote {EVIL}" in notes[h.returned] and "gift wrap" in notes[h.kept]
    # the e-mail lookup is exact and case-insensitive
    assert customers_by_email(sessions, h.email.upper()) == [h.customer_id]
    assert customers_by_email(sessions, "x" + h.email) == []
    with pytest.raises(UnknownCustomer):
        customer_profile(sessions, "NO-SUCH-CUSTOMER")


async def test_a_customer_without_orders_has_no_return_rate(sessions):
    customer_id = unique("CRM")
    with sessions.begin() as session:
        session.add(t.Customer(id=customer_id, name="Nobody", email="nobody@example.com"))
    profile = customer_profile(sessions, customer_id)
    assert profile.orders == [] and profile.lifetime_value == {}
    assert profile.return_rate is None and profile.average_score is None


async def test_signed_out_the_customer_page_sends_you_to_sign_in(http):
    for path in ("/console/customers/C-7", "/console/orders?email=ada%40example.com"):
        answer = await http.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in", path


async def test_the_customer_page_in_a_browser(api: ApiServer, api_keys, http, client, settings, sessions):
    h = await history(client, settings, sessions)
    async with chromium() as browser:
        context = await new_context(browser, base_url=api.url)
        page: Page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        await page.goto("/console/sign-in")
        await page.fill("#api_key", api_keys[Role.support])
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{api.url}/console")

        # found by e-mail (any case): one customer, so straight to their page
        await page.goto("/console/orders")
        await page.fill("#email", h.email.upper())
        await page.get_by_role("button", name="Find customer").click()
        await expect(page).to_have_url(f"{api.url}/console/customers/{h.customer_id}")
        await expect(page.locator("h1")).to_have_text(f"Customer {h.customer_id}")

        rows = page.locator("table.orders tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_contain_text(h.kept)
        await expect(rows.nth(1)).to_contain_text(h.returned)
        await expect(rows.nth(1)).to_contain_text("40.00 EUR")
        await expect(page.locator("#lifetime-value")).to_have_text("30.00 EUR")
        await expect(page.locator("#return-rate")).to_have_text("33.3%")
        await expect(page.locator("main")).to_contain_text("1 units returned / 3 units ordered")
        notes = page.locator("ul.notes")
        await expect(notes).to_contain_text(f"customer wrote {EVIL}")
        await expect(notes).to_contain_text("asked about gift wrap")
        returns = page.locator("table.returns tbody tr")
        await expect(returns).to_have_count(1)
        await expect(returns.locator(".return-status")).to_have_text("refunded")
        await expect(returns.locator(".refund")).to_have_text("20.00")
        await expect(returns).to_contain_text(h.rma)
        feedback = page.locator("table.feedback")
        await expect(feedback).to_contain_text("lovely mug")
        await expect(feedback).to_contain_text(f"hat too big {EVIL}")
        await expect(page.locator("#average-score")).to_have_text("3.5")
        assert await page.evaluate("window.__pwned === undefined")

        # the orders list links each order's customer
        await page.goto(f"/console/orders?customer={h.customer_id}")
        listed = page.locator("tbody tr", has_text=h.kept)
        await expect(listed).to_have_count(1)
        await listed.get_by_role("link", name=h.customer_id).click()
        await expect(page).to_have_url(f"{api.url}/console/customers/{h.customer_id}")

        # from an order's page to its customer's, and back
        await rows.nth(1).get_by_role("link", name=h.returned).click()
        await expect(page).to_have_url(f"{api.url}/console/orders/{h.returned}")
        await page.get_by_role("link", name=h.customer_id).click()
        await expect(page).to_have_url(f"{api.url}/console/customers/{h.customer_id}")
        assert dialogs == []
        await context.close()

    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    html = (await http.get(f"/console/customers/{h.customer_id}")).text
    assert EVIL not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    answer = await http.get("/console/customers/NO-SUCH-CUSTOMER")
    assert answer.status_code == 404 and "unknown customer NO-SUCH-CUSTOMER" in answer.text
    answer = await http.get("/console/orders", params={"email": "nobody-at-all@example.com"})
    assert answer.status_code == 200 and "no customer has the e-mail" in answer.text
    # several customers with the e-mail: each is listed with a link to their page
    shared = f"{unique('shared').lower()}@example.com"
    twins = sorted(unique("CRM") for _ in range(2))
    with sessions.begin() as session:
        session.add(t.Customer(id=twins[0], name="One", email=shared))
        session.add(t.Customer(id=twins[1], name="Two", email=shared.upper()))
    answer = await http.get("/console/orders", params={"email": shared})
    assert answer.status_code == 200
    for twin in twins:
        assert f'href="/console/customers/{twin}"' in answer.text
