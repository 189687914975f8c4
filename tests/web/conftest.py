"""
Fixtures of the web tests: one headless Chromium for the whole run (launched
only when a browser test asks for it), and where screenshots go.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browsing import CHROMIUM, SAVED


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's, through Playwright) for the run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this run's screenshots go."""
    return tmp_path_factory.mktemp("screenshots")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where this run's screenshots of the pages are, for a person to look at."""
    for path in SAVED:
        terminalreporter.write_line(f"screenshot of the {path.stem} page: {path}")


@pytest.fixture(scope="module")
def firefox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Firefox ESR (driven over Marionette) for a test module, always quit."""
    from tests.web.firefox import FIREFOX, Firefox

    if FIREFOX is None:
        pytest.skip("no Firefox binary: apt-get install firefox-esr (.ci/run does)")
    launched = Firefox(FIREFOX, tmp_path_factory.mktemp("firefox"))
    try:
        yield launched
    finally:
        launched.quit()
