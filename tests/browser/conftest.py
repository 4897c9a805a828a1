"""A real browser (Debian's Chromium driven by Playwright) against a fresh local dev stack on free ports.

Outside CI a missing Chromium skips these tests (with how to install it); with CI=true it fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cfn import ROOT

SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
]
INSTALL_HINT = (
    "Chromium not found: install Debian's package with `apt-get update && apt-get install -y chromium` "
    "(`playwright install` cannot download here; the tests drive `which chromium`)."
)
TIMEOUT_MS = 30_000  # generous: CI runs on 2 cores beside other suites; a passing wait costs nothing extra


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(message: str) -> None:
    if _running_in_ci():
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _unavailable(INSTALL_HINT)
    return found


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed in the venv: run `make setup` (uv sync).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def dev() -> Iterator:
    """A whole local stack (gateway + dashboard, moto, simulated TikTok, one clock) on free ports."""
    from local.dev import start_dev_stack

    with start_dev_stack(port=0, tiktok_port=0) as stack:
        yield stack


@pytest.fixture
def context(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context) -> Iterator:
    yield context.new_page()


@pytest.fixture
def dashboard(page, dev):
    """The dashboard, loaded and showing its first state."""
    page.goto(dev.dashboard_url)
    page.wait_for_selector("body[data-ready=true]")
    return page


@pytest.fixture
def shot(request):
    """shot(page, "state") saves test-output/screenshots/<test>--<state>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name.removeprefix("test_"))

    def take(page, state: str) -> Path:
        path = SCREENSHOTS / f"{prefix}--{state}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
