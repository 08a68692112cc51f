"""Issue 9 end to end in a real browser: the Temporal Web UI shows an order's input as ciphertext, and
decoded only for a support person signed in to the console whose browser sends that session to the
codec server ("Include cross-origin credentials" in the UI's Codec Server settings).

Its own Temporal dev server with the Web UI (2.54.1, from the temporal CLI) whose cluster-level codec
endpoint is the API's `/codec`; the API process on the suite's database; Debian's headless Chromium
(tests/browser.py: skipped without it, failed without it under OMS_REQUIRE_BROWSER=1). No worker: the
workflow's first history event holds the encrypted order, which is all the page needs.

Screenshots go to the test's tmp dir; OMS_UPDATE_SCREENSHOTS=1 writes them to docs/images/ instead
(the README's pictures), so that an ordinary run leaves the checkout as it was.
"""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page, Response, expect
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client

from config import Settings
from connection import ensure_search_attributes
from db import SessionFactory
from domain.api_keys import Role, create_key
from encryption.converter import converter_for, key_ring
from models import tables
from models.orders import OrderInput
from models.workflow_names import order_workflow_id
from services.orders import place_order
from tests.api_server import ApiServer, free_port, running_api
from tests.browser import chromium, chromium_or_skip, new_context, screenshot_path
from tests.conftest import TEMPORAL_BIN
from tests.helpers import order_doc, unique

SERVER_START_TIMEOUT = 60.0  # seconds for the dev server's gRPC port and Web UI to answer
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL
PAGE_TIMEOUT_MS = 30_000  # the workflow page to show the order's input (encrypted or not)
DECODE_TIMEOUT_MS = 45_000  # the decoded input to appear after the codec setting changed
ENCRYPTED_SHOT = "web-ui-encrypted-order.png"
DECODED_SHOT = "web-ui-decoded-order.png"

CUSTOMER = "Zelda Quixote-Marsh"
STREET = "7 Marmalade Lighthouse Lane"
EMAIL = "zelda.quixote@example.org"
PERSONAL = (CUSTOMER, STREET, EMAIL, "Quixote")

pytestmark = pytest.mark.timeout(240)


@dataclass
class WebUiServer:
    address: str  # gRPC, for the SDK client
    ui_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@asynccontextmanager
async def temporal_with_web_ui(
    log_dir: Path, ui_port: int, codec_endpoint: str
) -> AsyncIterator[WebUiServer]:
    """`temporal server start-dev` with its Web UI on `ui_port` and the cluster-level codec endpoint;
    in memory, on 127.0.0.1; stopped by its pid afterwards."""
    port = free_port()
    argv = [
        str(TEMPORAL_BIN),
        *("server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port)),
        *("--ui-codec-endpoint", codec_endpoint),
        "--ui-disable-news-fetch",  # nothing from the internet
        *("--log-level", "warn"),
    ]
    log_path = log_dir / "temporal-web-ui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = WebUiServer(f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", process, log_path)
    try:
        await _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


async def _wait_until_up(server: WebUiServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last: BaseException | None = None
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(f"the dev server exited with {server.process.returncode}:\n{server.log()}")
            try:
                await asyncio.wait_for(Client.connect(server.address), timeout=5)
                if (await http.get(f"{server.ui_url}/api/v1/settings")).status_code == 200:
                    return
            except Exception as exc:  # not up yet
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dev server and its Web UI did not answer within {SERVER_START_TIMEOUT:.0f}s "
                    f"(last error: {last!r}):\n{server.log()}"
                )
            await asyncio.sleep(0.2)


async def stored_input(client: Client, workflow_id: str) -> str:
    """The order as the dev server keeps it (the first event's input, not decoded): its data in base64,
    as the Web UI shows a payload it could not decode."""
    history = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
    )
    (payload,) = history.history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert CUSTOMER.encode() not in payload.data
    return base64.b64encode(payload.data).decode()


@asynccontextmanager
async def diagnosed(page: Page, api: ApiServer, server: WebUiServer, tmp_path: Path) -> AsyncIterator[None]:
    """A failure in the browser leaves a screenshot and says what the API and the dev server logged."""
    try:
        yield
    except Exception as exc:
        shot = tmp_path / "failure.png"
        try:
            await page.screenshot(path=shot, full_page=True, timeout=10_000)
        except Exception:  # the original failure matters, not this one
            shot = None
        api_log = "\n".join(api.log().splitlines()[-30:])
        raise AssertionError(
            f"{exc}\n--- the page: {shot or 'no screenshot'}\n--- API log (last lines) ---\n{api_log}"
            f"\n--- dev server log ---\n{server.log()}"
        ) from exc


async def open_workflow(page: Page, url: str) -> Response:
    """Load the workflow's page; returns the codec server's answer to the UI's first decode."""
    async with page.expect_response(
        lambda r: "/codec/decode" in r.url and r.request.method == "POST", timeout=PAGE_TIMEOUT_MS
    ) as decoded:
        await page.goto(url)
    return await decoded.value


def input_card(page: Page) -> Locator:
    """The workflow's input as the page shows it (a code view labelled "Input")."""
    return page.get_by_role("textbox", name="Input", exact=True)


async def assert_encrypted(page: Page, ciphertext: str) -> None:
    """The input card shows the encrypted payload, and nothing personal is anywhere on the page."""
    await expect(input_card(page)).to_contain_text(ciphertext[:48], timeout=PAGE_TIMEOUT_MS)
    shown, html = await page.locator("body").inner_text(), await page.content()
    for text in PERSONAL:
        assert text not in shown and text not in html, f"{text!r} is on the page without a decoding session"


async def configure_codec(page: Page, endpoint: str) -> None:
    """What an operator does in the Web UI (2.54.1): the codec icon in the top bar opens "Codec Server";
    "Use my browser setting", the endpoint, "Include cross-origin credentials" on, Apply."""
    await page.locator('[data-testid^="data-encoder-status-"]').first.click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading", name="Codec Server")).to_be_visible()
    await dialog.get_by_label("Use my browser setting").check()
    await dialog.get_by_label("Codec Server browser endpoint").fill(endpoint)
    credentials = dialog.get_by_role("switch", name="Include cross-origin credentials")
    if not await credentials.is_checked():
        # the switch's input is visually hidden: its label takes the click
        await dialog.get_by_test_id("data-encoder-include-credentials").click()
    await expect(credentials).to_be_checked()
    await dialog.get_by_role("button", name="Apply").click()
    await expect(dialog).to_be_hidden()
    stored = await page.evaluate(
        "() => ['endpoint', 'includeCredentials', 'overrideRemoteCodecConfiguration']"
        ".map((key) => window.localStorage.getItem(key))"
    )
    assert stored == [f'"{endpoint}"', "true", "true"], stored


async def sign_in(page: Page, api_url: str, key: str) -> None:
    await page.goto(f"{api_url}/console/sign-in")
    await page.locator('input[name="api_key"]').fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(rf"^{re.escape(api_url)}/console/?$"))
    cookies = {c["name"]: c for c in await page.context.cookies(api_url)}
    assert "oms_session" in cookies, f"no session cookie after signing in: {sorted(cookies)}"
    assert cookies["oms_session"]["httpOnly"] and cookies["oms_session"]["sameSite"] == "Lax"


async def test_web_ui_shows_orders_decoded_only_to_a_signed_in_support_person(
    settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    chromium_or_skip()  # before anything starts
    # API processes (tests/api_server.py) inherit the environment: they must encrypt like the suite
    assert key_ring(Settings()) == key_ring(settings), (
        "the settings fixture's codec keys differ from those an API process started by the tests loads "
        "(OMS_CODEC_KEYS / OMS_CODEC_KEY_FILE in the environment): tests/conftest.py should set them"
    )
    key_name = unique("web-ui-support")
    support_key = create_key(sessions, key_name, Role.support).key
    ui_port = free_port()
    ui_origin = f"http://127.0.0.1:{ui_port}"

    with running_api(settings, tmp_path, OMS_TEMPORAL_UI_ORIGIN=ui_origin) as api:
        codec_endpoint = f"{api.url}/codec"
        async with temporal_with_web_ui(tmp_path, ui_port, codec_endpoint) as server:
            assert server.ui_url == ui_origin
            client = await Client.connect(server.address, data_converter=converter_for(settings))
            await ensure_search_attributes(client)
            doc = order_doc(
                [("SKU-WEBUI", 1)],
                order_id=unique("WEBUI"),
                customer={"id": "C-ZQM", "name": CUSTOMER, "email": EMAIL, "phone": "+44 20 7946 0123"},
                shipping_address={
                    "name": CUSTOMER,
                    "line1": STREET,
                    "line2": None,
                    "city": "Portmeirion",
                    "postal_code": "LL48 6ER",
                    "country": "GB",
                },
            )
            own = settings.model_copy(
                update={"temporal_address": server.address, "task_queue": unique("web-ui-no-worker")}
            )
            placed = await place_order(client, own, OrderInput.model_validate(doc))
            workflow_id = order_workflow_id(placed.order_id)
            ciphertext = await stored_input(client, workflow_id)
            workflow_url = f"{server.ui_url}/namespaces/{own.temporal_namespace}/workflows/{workflow_id}"

            async with chromium() as browser:
                context = await new_context(browser)
                page = await context.new_page()
                async with diagnosed(page, api, server, tmp_path):
                    # Not signed in: the UI asks the cluster-level codec endpoint, which refuses.
                    answer = await open_workflow(page, workflow_url)
                    assert answer.status == 401, f"decode without a session answered {answer.status}"
                    await assert_encrypted(page, ciphertext)
                    await page.screenshot(path=screenshot_path(tmp_path, ENCRYPTED_SHOT))

                    # Signed in, but the cluster-level setting sends no credentials: still ciphertext.
                    await sign_in(page, api.url, support_key)
                    answer = await open_workflow(page, workflow_url)
                    assert answer.status == 401, f"decode without credentials answered {answer.status}"
                    await assert_encrypted(page, ciphertext)

                    # The browser setting with cross-origin credentials: the session reaches the codec.
                    await configure_codec(page, codec_endpoint)
                    answer = await open_workflow(page, workflow_url)
                    assert answer.status == 200, f"decode with the session answered {answer.status}"
                    await expect(input_card(page)).to_contain_text(CUSTOMER, timeout=DECODE_TIMEOUT_MS)
                    await expect(input_card(page)).to_contain_text(STREET)
                    await expect(input_card(page)).not_to_contain_text(ciphertext[:48])
                    await page.screenshot(path=screenshot_path(tmp_path, DECODED_SHOT))

    with sessions() as session:
        rows = session.scalars(
            select(tables.CodecAudit).where(tables.CodecAudit.workflow_ids.contains(workflow_id))
        ).all()
    decoded = [
        r
        for r in rows
        if r.operation == "decode" and r.outcome == "ok" and workflow_id in r.workflow_ids.split(",")
    ]
    assert decoded, f"no audited decode of {workflow_id}: {[(r.operation, r.outcome) for r in rows]}"
    assert {(r.actor, r.role, r.via, r.origin, r.namespace) for r in decoded} == {
        (key_name, "support", "session", ui_origin, own.temporal_namespace)
    }
