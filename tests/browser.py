"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright.

Playwright (PyPI) brings its driver but never downloads a browser here: it launches the
Chromium the bootstrap installed (`local/bootstrap.d/ingest-api.sh`). Each test gets a fresh
browser context, so storage (the trackers' ids, queues, consent) starts empty.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium() -> Iterator[Any]:
    """A running Chromium (a Playwright `Browser`), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium missing: run local/bootstrap.d/ingest-api.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Any) -> Iterator[Any]:
    """A page in a context of its own; the page's console lines are kept in
    `page.console_messages`."""
    context = browser.new_context()
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(message.text))
    try:
        yield page
    finally:
        context.close()
