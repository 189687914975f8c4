"""
pytest configuration shared by every tcplab test.

The reactor is never imported at module level here: pytest-twisted installs
it from ``--reactor`` first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Loopback


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """Real loopback listeners and connections, all closed after the test."""
    helper = Loopback()
    yield helper
    helper.closeAll()
