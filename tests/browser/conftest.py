"""The browser fixtures (tests/browser/fixtures.py) for the tests in this directory."""

from tests.browser.fixtures import browser, chromium, console_page  # noqa: F401
