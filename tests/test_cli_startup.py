"""
How the ``tcplab`` command starts: the cyclic garbage collector is paused
while the command parses and imports its subcommand, and comes back on,
with what start-up made frozen, before the command runs
(L{tcplab.cli.collectorPaused}).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tcplab.cli import collectorPaused


@pytest.fixture
def collectorState() -> Iterator[None]:
    """Put the collector back as it was: on or off, nothing frozen."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_collector_is_off_during_start_up_and_back_on_after(collectorState: None) -> None:
    """Inside the pause no collection runs; after it the collector is on again."""
    gc.enable()
    with collectorPaused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_start_up_objects_are_frozen(collectorState: None) -> None:
    """What exists when start-up ends is moved out of the collector's way for good."""
    gc.unfreeze()
    with collectorPaused():
        made: list[list[int]] = [[] for _ in range(100)]
    assert gc.get_freeze_count() >= len(made)


def test_collector_left_off_stays_off(collectorState: None) -> None:
    """A program that turned the collector off keeps it off."""
    gc.disable()
    with collectorPaused():
        pass
    assert not gc.isenabled()


def test_collector_back_on_after_a_failed_start(collectorState: None) -> None:
    """A usage error (SystemExit) inside the pause still turns the collector back on."""
    gc.enable()
    with pytest.raises(SystemExit), collectorPaused():
        raise SystemExit(2)
    assert gc.isenabled()
