"""The support console's session through the real API process: signing in with the form (as a browser
would, CSRF token read from the page), who may, the cookie, signing out (on the server: a copy of the
cookie is refused everywhere after it), and revocation ending it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from config import Settings
from db import SessionFactory
from domain.api_keys import Role, authenticate, create_key, revoke_key
from domain.console_sessions import session_principal, start_session
from models import tables as t
from services.orders import order_view
from tests.api_server import ApiServer, running_api
from tests.helpers import add_products, eventually, order_doc, place, unique, wait_status

COOKIE = "oms_session"
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def browser(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, like one browser."""
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF_FIELD.search(page.text)
    assert found, f"no CSRF field in the page:\n{page.text}"
    return found.group(1)


async def sign_in(browser: httpx.AsyncClient, key: str) -> httpx.Response:
    """Open the sign-in page and submit the form with `key`; the answer, not followed."""
    form = await browser.get("/console/sign-in")
    assert form.status_code == 200, form.text
    return await browser.post("/console/sign-in", data={"api_key": key, "csrf": csrf_of(form)})


def key_name(sessions: SessionFactory, key: str) -> str:
    who = authenticate(sessions, key)
    assert who is not None
    return who.name


def cookie_content(value: str) -> dict[str, object]:
    """What a session cookie holds: signed, not encrypted, so readable."""
    return json.loads(base64.b64decode(value.split(".")[0]))


class Replay:
    """Someone holding a copy of a browser's session cookie: every request sends the copy afresh (a new
    client each time), so the server clearing the cookie in an answer does not hide a live session."""

    def __init__(self, api: ApiServer, cookie: str) -> None:
        self.api, self.cookie = api, cookie

    async def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.api.url, cookies={COOKIE: self.cookie}, timeout=60) as c:
            return await c.request(method, path, **kwargs)  # type: ignore[arg-type]

    async def console(self) -> int:
        return (await self.request("GET", "/console")).status_code

    async def decode(self) -> int:
        return (await self.request("POST", "/codec/decode", json={"payloads": []})).status_code


async def test_the_sign_in_page_is_a_plain_form(browser):
    page = await browser.get("/console/sign-in")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="password" id="api_key" name="api_key"' in page.text
    assert '<input type="hidden" name="csrf"' in page.text
    assert ">Sign in</button>" in page.text
    assert "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_support_key_signs_in_and_the_console_says_who_and_how_to_set_up_the_web_ui(
    browser, api_keys, sessions, settings: Settings, api
):
    answer = await sign_in(browser, api_keys[Role.support])
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    home = await browser.get("/console")
    assert home.status_code == 200
    assert f"Signed in as {key_name(sessions, api_keys[Role.support])} (support)" in home.text
    assert f'<a href="{settings.temporal_ui_origins[0]}">Temporal Web UI</a>' in home.text
    assert f"<code>{api.url}/codec</code>" in home.text
    assert "Use my browser setting" in home.text and "Include cross-origin credentials" in home.text
    assert 'action="/console/sign-out"' in home.text
    # signed in already: the sign-in page sends you on
    again = await browser.get("/console/sign-in")
    assert again.status_code == 303 and again.headers["location"] == "/console"


async def test_an_admin_key_may_use_the_console_too(browser, api_keys, sessions):
    assert (await sign_in(browser, api_keys[Role.admin])).status_code == 303
    home = await browser.get("/console")
    assert f"Signed in as {key_name(sessions, api_keys[Role.admin])} (admin)" in home.text


async def test_without_a_session_the_console_sends_you_to_sign_in(browser):
    answer = await browser.get("/console")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"


@pytest.mark.parametrize(
    ("role", "status", "message"),
    [
        (None, 401, "unknown or revoked API key"),
        (Role.carrier, 403, "a carrier key cannot use the console"),
        (Role.source, 403, "a source key cannot use the console"),
        (Role.warehouse, 403, "a warehouse key cannot use the console"),
    ],
    ids=["unknown", "carrier", "source", "warehouse"],
)
async def test_sign_in_refuses_unknown_keys_and_other_roles(browser, api_keys, role, status, message):
    key = api_keys[role] if role else "oms_not-a-real-key"
    answer = await sign_in(browser, key)
    assert answer.status_code == status
    assert message in answer.text
    assert ">Sign in</button>" in answer.text  # the form again, to try another key
    assert key not in answer.text  # the key is not echoed back into the page
    assert (await browser.get("/console")).status_code == 303  # and no session


async def test_sign_in_without_the_pages_csrf_token_is_refused(browser, api_keys):
    await browser.get("/console/sign-in")  # the session's token exists, but the form is forged
    for sent in ({"api_key": api_keys[Role.support]}, {"api_key": api_keys[Role.support], "csrf": "forged"}):
        answer = await browser.post("/console/sign-in", data=sent)
        assert answer.status_code == 403
        assert "this form has expired or did not come from this page" in answer.text
        assert (await browser.get("/console")).status_code == 303
    # another browser, without the session cookie the token belongs to, is refused as well
    async with httpx.AsyncClient(base_url=str(browser.base_url)) as other:
        stolen = csrf_of(await browser.get("/console/sign-in"))
        answer = await other.post(
            "/console/sign-in", data={"api_key": api_keys[Role.support], "csrf": stolen}
        )
        assert answer.status_code == 403


async def test_the_session_cookie_is_http_only_same_site_lax_and_holds_no_key(
    browser, api_keys, settings: Settings
):
    answer = await sign_in(browser, api_keys[Role.support])
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    flags = [f.strip().lower() for f in cookie.split(";")[1:]]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert f"max-age={int(settings.session_ttl.total_seconds())}" in flags
    assert "secure" not in flags  # OMS_SESSION_COOKIE_SECURE is off for plain http
    # signed, not encrypted: what it holds is readable, and it is the key's row id, not the key
    value = cookie.split(";")[0].removeprefix(f"{COOKIE}=")
    content = cookie_content(value)
    assert set(content) == {"session", "csrf"}
    assert api_keys[Role.support] not in cookie


async def test_a_tampered_cookie_is_no_session(browser, api_keys, api):
    await sign_in(browser, api_keys[Role.support])
    value = browser.cookies[COOKIE]
    forged = base64.b64encode(json.dumps({"session": "x", "csrf": "x"}).encode()).decode()
    async with httpx.AsyncClient(
        base_url=api.url, cookies={COOKIE: forged + value[value.index(".") :]}
    ) as other:
        assert (await other.get("/console")).status_code == 303


async def test_signing_out_ends_the_session(browser, api_keys):
    await sign_in(browser, api_keys[Role.support])
    home = await browser.get("/console")
    assert home.status_code == 200

    forged = await browser.post("/console/sign-out", data={"csrf": "forged"})
    assert forged.status_code == 403 and "did not come from this page" in forged.text
    assert (await browser.get("/console")).status_code == 200  # still signed in

    out = await browser.post("/console/sign-out", data={"csrf": csrf_of(home)})
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    assert COOKIE not in browser.cookies
    answer = await browser.get("/console")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"


async def test_revoking_the_key_ends_its_sessions(browser, api, sessions):
    name = unique("console-short-lived")
    key = create_key(sessions, name, Role.support).key
    await sign_in(browser, key)
    assert (await browser.get("/console")).status_code == 200
    copy = Replay(api, browser.cookies[COOKIE])
    revoke_key(sessions, name)

    async def console() -> int:
        return (await browser.get("/console")).status_code

    # a running API remembers a key for OMS_API_KEY_CACHE_TTL (2 s) before it looks again
    assert await eventually(console, lambda code: code == 303, timeout=10) == 303
    assert COOKIE not in browser.cookies  # the ended session's cookie is cleared
    assert await copy.console() == 303 and await copy.decode() == 401  # and a copy of it is worthless
    answer = await sign_in(browser, key)
    assert answer.status_code == 401 and "unknown or revoked API key" in answer.text


def test_an_expired_session_is_refused_and_pruned_at_the_next_sign_in(sessions):
    key = create_key(sessions, unique("console-expiring"), Role.support).key
    who = authenticate(sessions, key)
    assert who is not None
    expired = start_session(sessions, who, timedelta(seconds=-1))
    assert session_principal(sessions, expired) is None
    live = start_session(sessions, who, timedelta(hours=1))
    assert session_principal(sessions, live) == who
    with sessions() as session:
        hashes = set(session.scalars(select(t.ConsoleSession.session_hash)))
    assert hashlib.sha256(expired.encode()).hexdigest() not in hashes


async def test_the_server_keeps_only_the_hash_of_the_session_id(browser, api_keys, sessions):
    await sign_in(browser, api_keys[Role.support])
    session_id = cookie_content(browser.cookies[COOKIE])["session"]
    assert isinstance(session_id, str) and len(session_id) >= 43  # 256 random bits
    with sessions() as session:
        hashes = set(session.scalars(select(t.ConsoleSession.session_hash)))
    assert hashlib.sha256(session_id.encode()).hexdigest() in hashes
    assert session_id not in hashes


async def test_after_sign_out_a_copy_of_the_cookie_is_refused_everywhere(
    browser, api, api_keys, client, settings: Settings, sessions
):
    skus = add_products(sessions, {"TV": 3}, price="900.00")
    doc = order_doc([(skus["TV"], 1)])
    order_id = await place(client, settings, doc, review_above=Decimal("500"))
    await wait_status(client, order_id, "on_hold")
    await sign_in(browser, api_keys[Role.support])
    page = await browser.get(f"/console/orders/{order_id}")
    assert page.status_code == 200
    token = csrf_of(page)
    copy = Replay(api, browser.cookies[COOKIE])
    # while the session lives, the copy is as good as the browser's cookie: page, action, codec
    assert await copy.console() == 200
    note = await copy.request(
        "POST", f"/console/orders/{order_id}/notes", data={"text": "before", "csrf": token}
    )
    assert note.status_code == 303 and note.headers["location"] == f"/console/orders/{order_id}"
    assert await copy.decode() == 200

    out = await browser.post("/console/sign-out", data={"csrf": token})
    assert out.status_code == 303 and COOKIE not in browser.cookies

    # at once (the same API process): no polling
    page = await copy.request("GET", f"/console/orders/{order_id}")
    assert page.status_code == 303 and page.headers["location"] == "/console/sign-in"
    assert await copy.console() == 303
    note = await copy.request(
        "POST", f"/console/orders/{order_id}/notes", data={"text": "after", "csrf": token}
    )
    assert note.status_code == 303 and note.headers["location"] == "/console/sign-in"
    decode = await copy.request("POST", "/codec/decode", json={"payloads": []})
    assert decode.status_code == 401 and decode.json()["error"] == "unauthenticated"

    async def notes() -> list[str]:
        return [e.detail for e in (await order_view(client, order_id)).events if e.type == "support_note"]

    seen = await eventually(notes, lambda found: any("before" in n for n in found))
    assert not any("after" in n for n in seen)


async def test_signing_out_ends_only_its_own_session(api, api_keys):
    key = api_keys[Role.support]
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=60) as leaving,
        httpx.AsyncClient(base_url=api.url, timeout=60) as staying,
    ):
        await sign_in(leaving, key)
        await sign_in(staying, key)  # the same key, another browser: a session of its own
        home = await leaving.get("/console")
        left = Replay(api, leaving.cookies[COOKIE])
        assert (await leaving.post("/console/sign-out", data={"csrf": csrf_of(home)})).status_code == 303
        assert await left.console() == 303
        assert (await staying.get("/console")).status_code == 200
        assert (await staying.post("/codec/decode", json={"payloads": []})).status_code == 200


async def test_an_ended_session_is_refused_by_every_api_process(browser, api, api_keys, settings, tmp_path):
    """Two API processes on one database, as behind a load balancer: a sign-out through one ends the
    session in the other within its cache's TTL (OMS_API_KEY_CACHE_TTL, 2 s here)."""
    with running_api(settings, tmp_path, OMS_API_KEY_CACHE_TTL="2s") as other:
        await sign_in(browser, api_keys[Role.support])
        home = await browser.get("/console")
        copy = Replay(other, browser.cookies[COOKIE])
        assert await copy.console() == 200  # the other process now remembers the session
        assert (await browser.post("/console/sign-out", data={"csrf": csrf_of(home)})).status_code == 303
        assert await eventually(copy.console, lambda code: code == 303, timeout=10) == 303
        assert await copy.decode() == 401
