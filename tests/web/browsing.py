"""
What the browser tests share: the marks that skip them, with the reason
shown, only where no Chromium binary is installed (``.ci/run`` installs one),
a phone-sized viewport, and screenshots -- saved under the pytest temporary
directory with their path printed, and with ``TCPLAB_SCREENSHOTS=DIR`` also
written there (``docs/img`` for the README).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.web.webtools import browserBinary

CHROMIUM = browserBinary()
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.subprocess,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium binary: apt-get install chromium (.ci/run does)"
    ),
]
SAVED: list[Path] = []
"""Screenshots taken in this run (listed in the terminal summary, see conftest.py)."""
PHONE = {"width": 390, "height": 760}
TIMEOUT = 20_000
"""Milliseconds a page may take for any one step."""


def screenshot(page: Any, shots: Path, name: str) -> None:
    """Save a screenshot of the page (and into $TCPLAB_SCREENSHOTS when set)."""
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot of the {name} page: {path}")
    SAVED.append(path)
    extra = os.environ.get("TCPLAB_SCREENSHOTS")
    if extra:
        page.screenshot(path=str(Path(extra) / f"{name}.png"))
