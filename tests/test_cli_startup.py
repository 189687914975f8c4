"""
How the ``tcplab`` command starts: it builds only the parser of the
subcommand it runs, and the cyclic garbage collector is paused while the
command parses and imports its subcommand, and comes back on, with what
start-up made frozen, before the command runs (L{tcplab.cli.collectorPaused}).
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator

import pytest

from tcplab.cli import buildParser, collectorPaused
from tcplab.cli.parsers import COMMAND_NAMES, REGISTERS


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


@pytest.mark.parametrize("names, register", REGISTERS)
def test_each_builder_adds_the_subcommands_it_names(
    names: tuple[str, ...], register: object
) -> None:
    """The table the command line is looked up in names exactly what each builder adds."""
    parser = argparse.ArgumentParser(prog="tcplab")
    subparsers = parser.add_subparsers()
    register(subparsers)  # type: ignore[operator]
    assert sorted(subparsers.choices) == sorted(names)


def test_every_subcommand_is_named() -> None:
    """The full parser offers exactly the named subcommands."""
    assert set(buildParser()[1]) == COMMAND_NAMES


@pytest.mark.parametrize("command", sorted(COMMAND_NAMES))
def test_a_subcommand_parser_built_alone_is_the_same(command: str) -> None:
    """A subcommand's parser built on its own has the same help, usage and defaults."""
    alone = buildParser(command)[1][command]
    full = buildParser()[1][command]
    assert alone.format_help() == full.format_help()
    for default in ("run", "main", "digests", "quickExit"):
        assert repr(alone.get_default(default)) == repr(full.get_default(default))


def test_echo_builds_only_its_own_parser() -> None:
    """Running ``tcplab echo`` needs no chat or file parsers."""
    assert set(buildParser("echo")[1]) == {"echo"}
