"""Tests for L{tcplab.lines}: line splitting under every chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from tcplab.lines import Line, LineProtocol, LineSplitter, LineTooLong


def feedAll(splitter: LineSplitter, chunks: list[bytes]) -> list[Line | LineTooLong]:
    events: list[Line | LineTooLong] = []
    for chunk in chunks:
        events.extend(splitter.feed(chunk))
    return events


def splitAt(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def test_all_line_ends() -> None:
    """LF, CRLF and a bare CR each end a line."""
    events = feedAll(LineSplitter(), [b"a\nb\r\nc\rd"])
    assert events == [Line(b"a"), Line(b"b"), Line(b"c")]


def test_crlf_split_across_chunks() -> None:
    """A CRLF cut between two chunks is one line end, not an extra empty line."""
    events = feedAll(LineSplitter(), [b"a\r", b"\nb\n"])
    assert events == [Line(b"a"), Line(b"b")]


def test_empty_lines_kept() -> None:
    """Blank lines are lines too."""
    assert feedAll(LineSplitter(), [b"\n\r\n"]) == [Line(b""), Line(b"")]


def test_too_long_line_skipped_once() -> None:
    """An over-long line is reported once with its size; the next line survives."""
    splitter = LineSplitter(maxLength=4)
    events = feedAll(splitter, [b"abcdef", b"gh", b"ij\nok\n"])
    assert events == [LineTooLong(10), Line(b"ok")]
    assert splitter.pending == b""


def test_too_long_complete_line_keeps_following_lines() -> None:
    """Lines after an over-long one in the same chunk are not lost."""
    events = feedAll(LineSplitter(maxLength=3), [b"toolong\nyes\nno\n"])
    assert events == [LineTooLong(7), Line(b"yes"), Line(b"no")]


def test_buffer_bounded() -> None:
    """A line without end never makes the splitter hold more than its limit."""
    splitter = LineSplitter(maxLength=100)
    for _ in range(1000):
        list(splitter.feed(b"x" * 99))
        assert len(splitter.pending) <= 100


lineText = st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@given(
    lines=st.lists(lineText, max_size=10),
    ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=10, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_any_chunking_same_lines(lines: list[bytes], ends: list[bytes], cuts: list[int]) -> None:
    """However the stream is chunked, the same lines come out."""
    data = b"".join(line + end for line, end in zip(lines, ends))
    whole = feedAll(LineSplitter(maxLength=15), [data])
    pieces = feedAll(LineSplitter(maxLength=15), splitAt(data, cuts))
    assert pieces == whole
    # A bare CR, then an empty line ended by LF, reads as one CRLF: the only
    # way these line ends are ambiguous on the wire.
    ambiguous = any(
        ends[i] == b"\r" and lines[i + 1] == b"" and ends[i + 1] == b"\n"
        for i in range(len(lines) - 1)
    )
    if not ambiguous:
        assert whole == [Line(x) if len(x) <= 15 else LineTooLong(len(x)) for x in lines]


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_byte_at_a_time(cuts: list[int]) -> None:
    """Feeding one byte at a time gives the same lines as one big chunk."""
    data = b"one\r\ntwo\rthree\nfour"
    single = feedAll(LineSplitter(), [data[i : i + 1] for i in range(len(data))])
    assert single == feedAll(LineSplitter(), [data])
    assert feedAll(LineSplitter(), splitAt(data, cuts)) == single


class Recorder(LineProtocol):
    maxLineLength = 5

    def __init__(self) -> None:
        self.events: list[object] = []

    def lineReceived(self, line: bytes) -> None:
        self.events.append(line)
        if line == b"stop":
            assert self.transport is not None
            self.transport.loseConnection()

    def lineTooLong(self, size: int) -> None:
        self.events.append(size)


def test_protocol_dispatch_and_stop_after_close() -> None:
    """LineProtocol dispatches lines and skips the rest once it is closing."""
    protocol = Recorder()
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"hi\nwaytoolong\nstop\nafter\n")
    assert protocol.events == [b"hi", 10, b"stop"]
    protocol.sendLine(b"x")
    assert transport.value() == b"x\r\n"


def test_consumer_that_stops_early_loses_nothing() -> None:
    """Take one event from feed(b"a\\nb\\nc"), then feed(b"\\n") still gives b and c."""
    splitter = LineSplitter()
    assert next(splitter.feed(b"a\nb\nc")) == Line(b"a")
    assert list(splitter.feed(b"\n")) == [Line(b"b"), Line(b"c")]
    assert splitter.pending == b"" and splitter.completed == 3


def test_feed_updates_state_before_the_first_event() -> None:
    """A generator that is never advanced still takes its chunk in."""
    splitter = LineSplitter()
    splitter.feed(b"abandoned\npart")  # never iterated
    assert list(splitter.feed(b"ial\n")) == [Line(b"abandoned"), Line(b"partial")]
