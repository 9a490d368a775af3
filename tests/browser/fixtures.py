"""Browser fixtures: Debian's headless Chromium driven by Playwright for Python.

(``tests/conftest.py`` imports the fixtures, so every test directory has them.)

``scripts/browser`` installs Chromium (apt-get) when it is missing; if it cannot, the session
fails here saying so: the browser tests never skip. Playwright's own browser downloads are never
used (``executable_path``). Waits are conditions polled with generous timeouts, never sleeps
that assume a speed: the machines are 2 shared cores.

The console's Content-Security-Policy forbids ``eval``, which Playwright's ``wait_for_function``
uses, so :func:`wait_for` polls ``page.evaluate`` (the DevTools protocol, outside the page's
CSP) instead of turning the policy off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-gpu",
]
TOKEN = "test-operator-token-0123456789abcdef"
URL_LINE = re.compile(r"console: (http://\S+/console/)")


def wait_for(page: Any, js: str, *, timeout_s: float = 60.0, what: str = "") -> Any:
    """Poll ``js`` (an expression) in the page until it is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = page.evaluate(js)
        if value:
            return value
        page.wait_for_timeout(200)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what or js} (last: {value!r})")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (installed by scripts/browser when missing)."""
    run = subprocess.run([str(REPO / "scripts" / "browser")], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"no Chromium for the browser tests: scripts/browser failed:\n{run.stderr}")
    path = subprocess.run([str(REPO / "scripts" / "browser"), "path"], capture_output=True,
                          text=True).stdout.strip()
    if not path:
        pytest.fail("scripts/browser installed nothing usable")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """One headless Chromium per test module. Not per session: Playwright's sync API keeps an
    asyncio loop running in this thread while it is open, and the async tests that follow
    need the thread's loop free."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Page:
    """A page with every console error and uncaught exception collected."""

    page: Any
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


@pytest.fixture
def console_page(browser: Any) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page at 1400 x 900."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    out = Page(page)
    page.on("console", lambda m: out.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: out.urls.append(r.url))
    try:
        yield out
    finally:
        context.close()


def sign_in(page: Any, url: str, token: str = TOKEN) -> None:
    """Open the console, sign in through the form, wait for the first picture."""
    page.goto(url)
    page.wait_for_selector("#login:not([hidden])", timeout=30_000)
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    wait_for(page, "window.evConsole && window.evConsole.ready === true", what="first picture")


@dataclass
class Served:
    """``broker replay ... --serve`` as a subprocess: its URL and everything it printed."""

    proc: subprocess.Popen[str]
    url: str
    lines: list[str]

    def output(self) -> str:
        return "\n".join(self.lines)


def serve_replay(incident: Path, out: Path, *extra: str, env: dict[str, str] | None = None
                 ) -> Served:
    """Start the incident player on a free port and wait for the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "replay", str(incident), "--out", str(out), "--serve",
         "--port", "0", "--show", "0", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "BROKER_CONSOLE_TOKEN": TOKEN, "COLUMNS": "200", **(env or {})},
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        m = URL_LINE.search(line)
        if m:
            return Served(proc, m.group(1), lines)
    proc.kill()
    pytest.fail("broker replay --serve printed no console URL:\n" + "\n".join(lines))


def stop(served: Served) -> str:
    """Stop the server (SIGTERM) and return everything it printed."""
    served.proc.terminate()
    rest, _ = served.proc.communicate(timeout=30)
    served.lines += rest.splitlines()
    return served.output()


def api(url: str, path: str, cookies: httpx.Cookies | None = None) -> httpx.Response:
    """GET a console API path without a browser."""
    return httpx.get(url + "api/" + path, cookies=cookies, timeout=10)
