"""The support console's session through the real API process: signing in with the form (as a browser
would, CSRF token read from the page), who may, the cookie, signing out, and revocation ending it."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from config import Settings
from db import SessionFactory
from domain.api_keys import Role, authenticate, create_key, revoke_key
from tests.api_server import ApiServer
from tests.helpers import eventually, unique

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
    content = json.loads(base64.b64decode(value.split(".")[0]))
    assert set(content) == {"key_id", "csrf"}
    assert api_keys[Role.support] not in cookie


async def test_a_tampered_cookie_is_no_session(browser, api_keys, api):
    await sign_in(browser, api_keys[Role.support])
    value = browser.cookies[COOKIE]
    forged = base64.b64encode(json.dumps({"key_id": 1, "csrf": "x"}).encode()).decode()
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


async def test_revoking_the_key_ends_its_sessions(browser, sessions):
    name = unique("console-short-lived")
    key = create_key(sessions, name, Role.support).key
    await sign_in(browser, key)
    assert (await browser.get("/console")).status_code == 200
    revoke_key(sessions, name)

    async def console() -> int:
        return (await browser.get("/console")).status_code

    # a running API remembers a key for OMS_API_KEY_CACHE_TTL (2 s) before it looks again
    assert await eventually(console, lambda code: code == 303, timeout=10) == 303
    assert COOKIE not in browser.cookies  # the ended session's cookie is cleared
    answer = await sign_in(browser, key)
    assert answer.status_code == 401 and "unknown or revoked API key" in answer.text
