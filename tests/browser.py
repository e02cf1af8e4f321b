"""Headless Chromium for tests that look at HTML pages the way a person would.

The browser is Debian's ``chromium`` package at ``/usr/bin/chromium`` (installed by
``scripts/system-deps.sh``), driven through Playwright; Playwright's own browser
downloads are never used. :func:`offline_page` opens a local file and records every
request the page makes beyond the file itself, refusing each one, so a test can assert
that a page works without a network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
PACKAGE = "chromium"
VIEWPORT = {"width": 1280, "height": 900}


class ChromiumUnavailable(Exception):
    """Chromium or Playwright is missing on this machine."""


def unavailable(reason: str) -> NoReturn:
    # In CI a missing browser means the pipeline is broken, not that the test is optional.
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is required in CI: {reason}", pytrace=False)
    pytest.skip(f"Chromium not available: {reason}")


def find_chromium() -> Path:
    """The Chromium executable, or :class:`ChromiumUnavailable` saying how to install it."""
    if not os.access(CHROMIUM, os.X_OK):
        raise ChromiumUnavailable(
            f"{CHROMIUM} was not found; install the Debian package '{PACKAGE}' "
            f"(apt-get install {PACKAGE}, or make system-deps)"
        )
    return CHROMIUM


@contextmanager
def launch() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block (skips, or fails in CI, if absent)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    try:
        executable = find_chromium()
    except ChromiumUnavailable as error:
        unavailable(str(error))
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(executable), headless=True, args=["--no-sandbox"]
            )
        except Error as error:
            unavailable(f"{executable} did not start: {error.message.splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """A page showing one local file, and the requests it tried to make besides."""

    page: Page
    url: str
    refused: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    @property
    def strays(self) -> list[str]:
        """Every request other than the file itself, whether refused or seen."""
        return sorted({*self.refused, *(u for u in self.requested if u != self.url)})


@contextmanager
def offline_page(browser: Browser, path: Path) -> Iterator[OfflinePage]:
    """Open ``path`` in a fresh context at 1280 px wide; every other request is refused."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=True)
    page = context.new_page()
    opened = OfflinePage(page=page, url=path.resolve().as_uri())

    def guard(route: Route) -> None:
        if route.request.url == opened.url:
            route.continue_()
        else:
            opened.refused.append(route.request.url)
            route.abort("blockedbyclient")

    def seen(request: Request) -> None:
        opened.requested.append(request.url)

    context.route("**/*", guard)
    context.on("request", seen)
    try:
        page.goto(opened.url, wait_until="load")
        yield opened
    finally:
        context.close()
