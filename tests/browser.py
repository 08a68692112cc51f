"""A real browser for the tests: Debian's headless Chromium (`/usr/bin/chromium`, the `chromium` package)
driven by Playwright's Python package. Never a browser Playwright downloads (`playwright install` is not
part of this project): launching names the executable.

Without Chromium the browser tests skip, unless OMS_REQUIRE_BROWSER=1 (CI sets it after installing the
package): then they fail, so that a missing browser never passes for a green run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = "OMS_REQUIRE_BROWSER"
LAUNCH_TIMEOUT_MS = 60_000  # a cold start on a busy CI machine
ACTION_TIMEOUT_MS = 20_000  # each click, fill, navigation and expectation unless it says otherwise
VIEWPORT = {"width": 1400, "height": 1000}


def browser_required() -> bool:
    return os.environ.get(REQUIRE_BROWSER, "").strip().lower() in ("1", "true", "yes")


def chromium_or_skip() -> Path:
    """Debian's Chromium; without it the test skips, or fails when OMS_REQUIRE_BROWSER=1. Call it before
    starting anything else, so a skip costs nothing."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    missing = f"{CHROMIUM} not found: the browser tests need Debian's chromium"
    if browser_required():
        pytest.fail(
            f"{missing}, and {REQUIRE_BROWSER}=1 says they must run: install Debian's chromium with "
            "`sudo apt-get install chromium chromium-driver` (.ci/run does)",
            pytrace=False,
        )
    pytest.skip(f"{missing} (`sudo apt-get install chromium`; {REQUIRE_BROWSER}=1 makes this a failure)")


@asynccontextmanager
async def chromium(**launch_options: Any) -> AsyncIterator[Browser]:
    """Headless Debian Chromium for the length of the block (skips when it is missing, see above)."""
    executable = chromium_or_skip()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable),
            headless=True,
            timeout=LAUNCH_TIMEOUT_MS,
            **launch_options,
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """A fresh profile (cookies, localStorage) with bounded waits and a desktop-sized window."""
    context = await browser.new_context(**{"viewport": VIEWPORT, **options})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
    return context


SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "images"


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a test's screenshot goes: the test's tmp dir, or with OMS_UPDATE_SCREENSHOTS=1 the
    README's docs/images/ (a normal run does not rewrite them: they show run ids and times)."""
    if os.environ.get("OMS_UPDATE_SCREENSHOTS", "").strip() in ("1", "true", "yes"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS / name
    return tmp_path / name
