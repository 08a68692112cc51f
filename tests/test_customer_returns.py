"""Issue 26: returns the customer starts on the tracking page (`POST /track/<token>/returns`, JSON or
the page's form), support's approve / decline (`POST /orders/{id}/returns/{rma}/approve|decline`), the
auto-approval limit, and the existing return path after approval: the real API process, the real worker,
the database and the outbox."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.api_keys import Role
from domain.tracking_links import server_secret, tracking_token
from models import tables as t
from services.orders import confirm_delivery, order_view
from tests.api_server import running_api
from tests.browser import chromium, chromium_or_skip, new_context
from tests.helpers import (
    add_products,
    as_,
    cli,
    eventually,
    notifications,
    order_doc,
    place,
    unique,
    wait_status,
)
from tests.test_console_session import sign_in

pytestmark = pytest.mark.usefixtures("worker")

OPEN_WINDOW = timedelta(seconds=60)


async def delivered(
    client: Client, settings: Settings, sessions: SessionFactory, window: timedelta = OPEN_WINDOW
) -> tuple[str, str, str]:
    """An order of 2 x BOOT (20.00) and 3 x LACE (5.00), delivered, its return window open; its token."""
    skus = add_products(sessions, {"BOOT": 10}, price="20.00") | add_products(
        sessions, {"LACE": 10}, price="5.00"
    )
    order_id = await place(
        client, settings, order_doc([(skus["BOOT"], 2), (skus["LACE"], 3)]), return_window=window
    )
    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(
        lambda: order_view(client, order_id),
        lambda v: v.status == "delivered" and v.return_window_ends is not None,
    )
    return order_id, skus["BOOT"], skus["LACE"]


def token_of(settings: Settings, order_id: str) -> str:
    return tracking_token(server_secret(settings), order_id)


def kinds(sessions: SessionFactory, order_id: str) -> list[str]:
    return [n.kind for n in notifications(sessions, order_id)]


def return_rows(sessions: SessionFactory, order_id: str) -> list[tuple[str, str]]:
    with sessions() as session:
        return list(
            session.execute(
                select(t.Return.rma, t.Return.status)
                .where(t.Return.order_id == order_id)
                .order_by(t.Return.rma)
            ).tuples()
        )


async def test_request_approved_by_support_then_received_and_refunded(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id, boot, lace = await delivered(client, settings, sessions)
    token = token_of(settings, order_id)
    ask = {"lines": [{"sku": boot, "quantity": 1}, {"sku": lace, "quantity": 2}], "reason": "damaged"}
    answer = await http.post(f"/track/{token}/returns", json=ask)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    rma = body["rma"]
    assert body["status"] == "pending_approval" and "unit_price" not in answer.text
    again = await http.post(f"/track/{token}/returns", json=ask)  # the same request: the same answer
    assert again.status_code == 201 and again.json()["rma"] == rma
    assert return_rows(sessions, order_id) == [(rma, "pending_approval")]
    await eventually(lambda: kinds(sessions, order_id), lambda k: "return_requested" in k)
    assert "return_authorized" not in kinds(sessions, order_id)

    # support sees it on the dashboard's decisions and approves it
    dashboard = await http.get("/dashboard", headers=as_(api_keys, Role.support))
    if dashboard.status_code == 200:
        assert rma in dashboard.text or order_id in dashboard.text
    approved = await http.post(
        f"/orders/{order_id}/returns/{rma}/approve", json={}, headers=as_(api_keys, Role.support)
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "requested"
    (message,) = await eventually(
        lambda: [n for n in notifications(sessions, order_id) if n.kind == "return_authorized"], bool
    )
    assert rma in message.body and "1 x " in message.body
    declined = await http.post(
        f"/orders/{order_id}/returns/{rma}/decline", json={}, headers=as_(api_keys, Role.support)
    )
    assert declined.status_code == 409 and "already approved" in declined.text

    page = await http.get(f"/track/{token}")
    assert rma in page.text and "Approved: please send the parcel" in page.text

    # the existing path: receipt, restock, refund
    receipt = await http.post(
        f"/orders/{order_id}/returns/{rma}/receipt",
        json={"condition": "good"},
        headers=as_(api_keys, Role.support),
    )
    assert receipt.status_code == 202, receipt.text
    view = await eventually(
        lambda: order_view(client, order_id), lambda v: v.payment.refunded == Decimal("30.00")
    )
    assert view.status == "partially_returned"
    await eventually(lambda: kinds(sessions, order_id), lambda k: "refund_issued" in k)
    assert return_rows(sessions, order_id) == [(rma, "refunded")]
    page = await http.get(f"/track/{token}")
    assert "Received and refunded" in page.text


async def test_declined_request_tells_the_customer(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id, boot, _ = await delivered(client, settings, sessions)
    answer = await http.post(
        f"/track/{token_of(settings, order_id)}/returns",
        json={"lines": [{"sku": boot, "quantity": 2}], "reason": "no_longer_needed"},
    )
    rma = answer.json()["rma"]
    declined = await http.post(
        f"/orders/{order_id}/returns/{rma}/decline",
        json={"note": "the boots were worn outdoors"},
        headers=as_(api_keys, Role.support),
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    (message,) = await eventually(
        lambda: [n for n in notifications(sessions, order_id) if n.kind == "return_declined"], bool
    )
    assert "the boots were worn outdoors" in message.body
    assert return_rows(sessions, order_id) == [(rma, "declined")]
    unknown = await http.post(
        f"/orders/{order_id}/returns/RMA-nope/approve", headers=as_(api_keys, Role.support)
    )
    assert unknown.status_code == 409 and "no return request RMA-nope" in unknown.text


async def test_console_dashboard_and_command_line(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    http: httpx.AsyncClient,
    api_keys: dict[Role, str],
) -> None:
    order_id, boot, lace = await delivered(client, settings, sessions)
    token = token_of(settings, order_id)
    first = (
        await http.post(
            f"/track/{token}/returns", json={"lines": [{"sku": boot, "quantity": 1}], "reason": "defective"}
        )
    ).json()
    second = (
        await http.post(
            f"/track/{token}/returns", json={"lines": [{"sku": lace, "quantity": 1}], "reason": "other"}
        )
    ).json()

    # the dashboard lists both under the decisions; the order page has approve / decline buttons
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303
    dashboard = await http.get("/console/dashboard")
    assert dashboard.status_code == 200
    assert f"return {first['rma']} requested by the customer" in dashboard.text
    page = await http.get(f"/console/orders/{order_id}")
    assert f"Approve {first['rma']}" in page.text and f"Decline {second['rma']}" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    url = f"/console/orders/{order_id}/returns/{first['rma']}/decision"
    done = await http.post(url, data={"csrf": csrf[1], "decision": "approve", "note": ""})
    assert done.status_code == 303, done.text
    no_csrf = await http.post(
        f"/console/orders/{order_id}/returns/{second['rma']}/decision", data={"decision": "approve"}
    )
    assert no_csrf.status_code == 403
    page = await http.get(f"/console/orders/{order_id}")
    assert f"Approve {first['rma']}" not in page.text and "approved by" in page.text

    # the command line declines the other
    status, out = await cli(settings, "decline-return", order_id, second["rma"], "--note", "opened and used")
    assert status == 0 and f"{second['rma']} declined: declined" in out, out
    status, out = await cli(settings, "approve-return", order_id, second["rma"])
    assert status != 0
    view = await order_view(client, order_id)
    assert {r.rma: r.status.value for r in view.returns} == {
        first["rma"]: "requested",
        second["rma"]: "declined",
    }
    dashboard = await http.get("/console/dashboard")
    assert f"return {first['rma']} requested" not in dashboard.text


async def test_each_bad_request_is_refused_with_its_reason_and_nothing_moves(
    client: Client, settings: Settings, sessions: SessionFactory, http: httpx.AsyncClient
) -> None:
    order_id, boot, lace = await delivered(client, settings, sessions)
    token = token_of(settings, order_id)

    async def refused(body: object, status: int, reason: str, **kw: object) -> None:
        answer = await http.post(f"/track/{token}/returns", json=body, **kw)  # type: ignore[arg-type]
        assert answer.status_code == status, answer.text
        assert reason in answer.text, answer.text

    await refused(
        {"lines": [{"sku": boot, "quantity": 3}], "reason": "damaged"},
        409,
        f"only 2 unit(s) of {boot} remain returnable, not 3",
    )
    await refused(
        {"lines": [{"sku": "NO-SUCH-SKU", "quantity": 1}], "reason": "damaged"}, 409, "was not delivered"
    )
    await refused({"lines": [{"sku": boot, "quantity": 0}], "reason": "damaged"}, 422, "lines.0.quantity")
    await refused({"lines": [{"sku": boot, "quantity": -1}], "reason": "damaged"}, 422, "lines.0.quantity")
    await refused({"lines": [{"sku": boot, "quantity": 1}], "reason": "bored"}, 422, "reason")
    await refused({"lines": [], "reason": "damaged"}, 422, "lines")
    await refused(
        {"lines": [{"sku": boot, "quantity": 1}, {"sku": boot, "quantity": 1}], "reason": "damaged"},
        422,
        "named more than once",
    )
    # more than was delivered minus what is already requested
    first = await http.post(
        f"/track/{token}/returns", json={"lines": [{"sku": lace, "quantity": 2}], "reason": "other"}
    )
    assert first.status_code == 201
    await refused({"lines": [{"sku": lace, "quantity": 2}], "reason": "damaged"}, 409, "only 1 unit(s)")
    # a page elsewhere posting the form: refused before anything is read
    cross = await http.post(
        f"/track/{token}/returns",
        content=f"qty:{boot}=1&reason=damaged",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    no_origin = await http.post(
        f"/track/{token}/returns",
        content=f"qty:{boot}=1&reason=damaged",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert no_origin.status_code == 403
    cross_site = await http.post(
        f"/track/{token}/returns",
        json={"lines": [{"sku": boot, "quantity": 1}], "reason": "damaged"},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "null"},
    )
    assert cross_site.status_code == 403
    # a bad token: a plain 404 that says nothing
    for bad in (token[:-2] + "AA", "nothing", token_of(settings, unique("GHOST"))):
        answer = await http.post(
            f"/track/{bad}/returns", json={"lines": [{"sku": boot, "quantity": 1}], "reason": "damaged"}
        )
        assert (answer.status_code, answer.text) == (404, "Not found\n")
    assert [status for _, status in return_rows(sessions, order_id)] == ["pending_approval"]


async def test_after_the_window_is_refused(
    client: Client, settings: Settings, sessions: SessionFactory, http: httpx.AsyncClient
) -> None:
    order_id, boot, _ = await delivered(client, settings, sessions, window=timedelta(seconds=3))
    await wait_status(client, order_id, "completed")
    answer = await http.post(
        f"/track/{token_of(settings, order_id)}/returns",
        json={"lines": [{"sku": boot, "quantity": 1}], "reason": "damaged"},
    )
    assert answer.status_code == 409 and "return window" in answer.text, answer.text
    assert return_rows(sessions, order_id) == []


async def test_auto_approval_within_the_limit(
    client: Client, settings: Settings, sessions: SessionFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    order_id, boot, lace = await delivered(client, settings, sessions)
    token = token_of(settings, order_id)
    with running_api(settings, tmp_path_factory.mktemp("api"), OMS_RETURN_AUTO_APPROVE_LIMIT="15.00") as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            small = await http.post(
                f"/track/{token}/returns",
                json={"lines": [{"sku": lace, "quantity": 3}], "reason": "wrong_item"},
            )
            assert small.status_code == 201 and small.json()["status"] == "requested", small.text
            big = await http.post(
                f"/track/{token}/returns",
                json={"lines": [{"sku": boot, "quantity": 1}], "reason": "wrong_item"},
            )
            assert big.json()["status"] == "pending_approval"  # 20.00 is above 15.00
    (message,) = await eventually(
        lambda: [n for n in notifications(sessions, order_id) if n.kind == "return_authorized"], bool
    )
    assert small.json()["rma"] in message.body


async def test_the_tracking_page_form(
    client: Client, settings: Settings, sessions: SessionFactory, api: object
) -> None:
    chromium_or_skip()
    order_id, boot, lace = await delivered(client, settings, sessions)
    token = token_of(settings, order_id)
    async with chromium() as browser:
        context = await new_context(browser)
        page = await context.new_page()
        await page.goto(f"{api.url}/track/{token}")  # type: ignore[attr-defined]
        form = page.locator("#return-form")
        await expect(form).to_be_visible()
        await expect(form.locator(f"input[name='qty:{boot}']")).to_have_attribute("max", "2")
        await form.locator("button[type=submit]").click()  # nothing chosen: refused, said on the page
        await expect(page.locator("#notice")).to_contain_text("Choose at least one item")
        await page.locator(f"#return-form input[name='qty:{boot}']").fill("1")
        await page.locator("#return-form select[name=reason]").select_option("defective")
        await page.locator("#return-form button[type=submit]").click()
        ret = page.locator("#returns .return")
        await expect(ret).to_have_count(1)
        await expect(ret).to_contain_text("Requested: waiting for our approval")
        await expect(page.locator(f"#return-form input[name='qty:{boot}']")).to_have_attribute("max", "1")
        await context.close()
    view = await order_view(client, order_id)
    (requested,) = [r for r in view.returns if r.by_customer]
    assert (requested.reason, [(line.sku, line.quantity) for line in requested.lines]) == (
        "defective",
        [(boot, 1)],
    )
