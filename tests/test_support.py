"""The test helpers themselves: a helper that races makes CI fail by chance."""

from __future__ import annotations

import os
import re

from tests.support import OutputLines


def test_lines_after_a_match_in_the_same_read_are_kept() -> None:
    """Two lines arriving in one read: waiting for the first still finds the second."""
    readEnd, writeEnd = os.pipe()
    try:
        os.write(writeEnd, b"listening on 127.0.0.1:1 (tcp:0)\nlistening on 127.0.0.1:2 (ssl:0)\n")
        reader = OutputLines(readEnd)
        assert reader.waitForLine(re.compile(r":(\d+) \(tcp")).group(1) == "1"
        assert reader.waitForLine(re.compile(r":(\d+) \(ssl"), timeout=0.5).group(1) == "2"
        assert len(reader.lines) == 2
    finally:
        os.close(readEnd)
        os.close(writeEnd)


def test_a_partial_line_waits_for_its_end() -> None:
    """A line split over two reads is matched once it is complete, not before."""
    readEnd, writeEnd = os.pipe()
    try:
        reader = OutputLines(readEnd)
        os.write(writeEnd, b"listening on 127.0.0.1:12")
        os.write(writeEnd, b"34 (tcp:0)\n")
        assert reader.waitForLine(re.compile(r":(\d+) ")).group(1) == "1234"
    finally:
        os.close(readEnd)
        os.close(writeEnd)
