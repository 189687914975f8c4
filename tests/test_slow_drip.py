"""
Slow-drip clients, in memory on a shared clock: a peer that keeps one frame
header or one line unfinished, a byte at a time, loses its slot within the
message timeout (plus one sweep), while everyone else is served as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from twisted.internet.testing import MemoryReactorClock

from tcplab.chat import ChatFactory
from tcplab.files import FileServerFactory, wire
from tcplab.observe import ConnectionObserver
from tcplab.timeouts import SWEEPS_PER_PERIOD
from tests.memory import MemoryConnection, connectInMemory

MESSAGE_TIMEOUT = 30.0
IDLE_TIMEOUT = 60.0
DRIP_INTERVAL = 1.0
LATEST_CUT = MESSAGE_TIMEOUT + MESSAGE_TIMEOUT / SWEEPS_PER_PERIOD + DRIP_INTERVAL
"""A dripper is cut within the timeout, plus one sweep period, plus one drop."""


def observed(factory: object, name: str, clock: MemoryReactorClock) -> ConnectionObserver:
    """C{factory} behind the plumbing's timeouts, on C{clock}."""
    observer = ConnectionObserver(
        factory,  # type: ignore[arg-type]
        name,
        idleTimeout=IDLE_TIMEOUT,
        messageTimeout=MESSAGE_TIMEOUT,
        reactor=clock,
    )
    observer.doStart()
    return observer


def dripUntilCut(connection: MemoryConnection, opening: bytes, drop: bytes) -> float:
    """
    Send C{opening}, then one C{drop} every L{DRIP_INTERVAL} seconds (never
    finishing the message) until the server hangs up; return how long that took.
    """
    started = connection.clock.seconds()
    connection.clientSends(opening)
    while not connection.client.closed.called:
        assert connection.clock.seconds() - started < 10 * MESSAGE_TIMEOUT, "never cut"
        connection.advance(DRIP_INTERVAL)
        connection.clientSends(drop)
        connection.advance(0)
    return connection.clock.seconds() - started


def request(message: dict[str, object]) -> bytes:
    """One request frame of docs/protocol.md."""
    return wire.frame(wire.encode(message))


def test_file_frame_header_dripped_is_cut(tmp_path: Path) -> None:
    """
    Two bytes of a frame's length, then a byte of the frame every tick:
    disconnected with the reason, and an honest client is unaffected.
    """
    (tmp_path / "a.txt").write_bytes(b"hello")
    clock = MemoryReactorClock()
    observer = observed(FileServerFactory(str(tmp_path)), "tcplab-files", clock)
    honest = connectInMemory(observer, clock=clock)
    dripper = connectInMemory(observer, clock=clock)
    # Half of a length prefix; the drops finish it (0x0101: a 257-byte
    # frame) and then trickle into the frame, which would take 257 ticks.
    took = dripUntilCut(dripper, b"\x00\x00", b"\x01")
    assert MESSAGE_TIMEOUT <= took <= LATEST_CUT
    assert b"message not completed within 30 seconds" in dripper.received()
    honest.clientSends(request({"op": "stat", "path": "a.txt"}))
    assert b'"ok":true' in honest.received()
    observer.doStop()


def test_file_upload_in_progress_is_not_a_drip(tmp_path: Path) -> None:
    """
    An upload trickled across frame boundaries, so that some frame is
    always half-received but frames keep completing, lasting several message
    timeouts, is a transfer in progress, not a drip: it completes.
    """
    clock = MemoryReactorClock()
    observer = observed(FileServerFactory(str(tmp_path), writable=True), "tcplab-files", clock)
    uploader = connectInMemory(observer, clock=clock)
    chunk, count = b"x" * 1000, int(3 * MESSAGE_TIMEOUT)
    uploader.clientSends(request({"op": "put", "path": "up.bin", "size": len(chunk) * count}))
    stream = b"".join(wire.dataFrame(chunk) for _ in range(count))
    piece = 700  # never a whole frame: each send ends inside one
    for offset in range(0, len(stream), piece):
        uploader.advance(DRIP_INTERVAL)
        assert not uploader.client.closed.called, uploader.received()
        uploader.clientSends(stream[offset : offset + piece])
    uploader.clientSends(request({"sha256": hashlib.sha256(chunk * count).hexdigest()}))
    assert b'"done":true' in uploader.received()
    assert (tmp_path / "up.bin").read_bytes() == chunk * count
    observer.doStop()


def test_chat_line_dripped_is_cut() -> None:
    """A line dribbled out a byte per tick never ends: the chat hangs up on it."""
    clock = MemoryReactorClock()
    observer = observed(ChatFactory(joinDelay=0, reactor=clock), "tcplab-chat", clock)
    listener = connectInMemory(observer, clock=clock)
    dripper = connectInMemory(observer, clock=clock)
    took = dripUntilCut(dripper, b"hel", b"l")
    assert MESSAGE_TIMEOUT <= took <= LATEST_CUT
    assert b"message not completed within 30 seconds" in dripper.received()
    listener.flush()
    assert b"left #lobby" in listener.received()
    observer.doStop()
