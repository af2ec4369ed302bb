"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, for report tests.

Playwright never downloads a browser here: it starts ``/usr/bin/chromium``. ``.ci/run`` installs
both (``apt-get install -y chromium``; ``pip install playwright`` comes with ``.[test]``); where
either is missing the test is skipped with the command that installs it (``tests/components.py``). WebGL runs on the CPU
(SwiftShader), as on any machine without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.components import CHROMIUM, require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: Offline and quiet: no update checks, no sync, no QUIC; software WebGL without a GPU.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch its own new, empty user data directory.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


class Console:
    """Every console message and uncaught error of a page; ``errors`` are the ones that count."""

    def __init__(self, page: Page) -> None:
        self.messages: list[tuple[str, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))
        page.on("requestfailed", lambda r: self.messages.append(("requestfailed", r.url)))

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.messages
                if kind in ("error", "pageerror", "requestfailed")]

    def __repr__(self) -> str:
        return repr(self.messages)


def new_page(browser: Browser, **options: Any) -> tuple[Page, Console]:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **options)
    return page, Console(page)
