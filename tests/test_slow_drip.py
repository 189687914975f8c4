"""
Slow-drip clients over real loopback sockets: a peer that keeps one frame
header or one line unfinished, a byte at a time, loses its slot within the
message timeout, while everyone else is served as before.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest_twisted
from twisted.internet import task

from tcplab.chat import ChatFactory
from tcplab.files import FileClient, FileServerFactory, wire
from tcplab.observe import ConnectionObserver
from tests.support import Collector, Loopback, reactor

MESSAGE_TIMEOUT = 0.5
DRIP_INTERVAL = 0.1


async def dripUntilCut(loopback: Loopback, port: int, opening: bytes, drop: bytes) -> Collector:
    """
    Connect, send C{opening}, then one C{drop} every L{DRIP_INTERVAL}
    seconds (never finishing the message) until the server hangs up.
    """
    dripper: Collector = await loopback.connect(port)
    dripper.transport.write(opening)
    drip = task.LoopingCall(dripper.transport.write, drop)
    drip.clock = reactor()
    drip.start(DRIP_INTERVAL, now=False)
    try:
        await dripper.closed.addTimeout(10 * MESSAGE_TIMEOUT + 5, reactor())
    finally:
        drip.stop()
    return dripper


@pytest_twisted.ensureDeferred
async def test_file_frame_header_dripped_is_cut(loopback: Loopback, tmp_path: Path) -> None:
    """
    Two bytes of a frame's length, then a byte of the frame every tick:
    disconnected with the reason, and a real client is unaffected.
    """
    (tmp_path / "a.txt").write_bytes(b"hello")
    port = await loopback.listen(
        ConnectionObserver(
            FileServerFactory(str(tmp_path)),
            "tcplab-files",
            idleTimeout=60,
            messageTimeout=MESSAGE_TIMEOUT,
        )
    )
    honest: FileClient = await loopback.connect(port, FileClient())
    # Half of a length prefix; the drops finish it (0x0101: a 257-byte
    # frame) and then trickle into the frame, which would take 25 s.
    dripper = await dripUntilCut(loopback, port, b"\x00\x00", b"\x01")
    assert b"message not completed within 0.5 seconds" in bytes(dripper.received)
    sink = io.BytesIO()
    await honest.get("a.txt", sink)
    assert sink.getvalue() == b"hello"


@pytest_twisted.ensureDeferred
async def test_file_upload_in_progress_is_not_a_drip(loopback: Loopback, tmp_path: Path) -> None:
    """
    An upload of complete frames, one per tick, lasting several message
    timeouts, is a transfer in progress, not a drip: it completes.
    """
    port = await loopback.listen(
        ConnectionObserver(
            FileServerFactory(str(tmp_path), writable=True),
            "tcplab-files",
            idleTimeout=60,
            messageTimeout=MESSAGE_TIMEOUT,
        )
    )
    uploader: Collector = await loopback.connect(port)
    chunk, count = b"x" * 1000, 30  # 30 ticks: six message timeouts
    uploader.transport.write(
        wire.frame(wire.encode({"op": "put", "path": "up.bin", "size": 30_000}))
    )
    for _ in range(count):
        await task.deferLater(reactor(), DRIP_INTERVAL, lambda: None)
        assert not uploader.closed.called, bytes(uploader.received)
        uploader.transport.write(wire.dataFrame(chunk))
    digest = hashlib.sha256(chunk * count).hexdigest()
    uploader.transport.write(wire.frame(wire.encode({"sha256": digest})))
    await uploader.waitForText(b'"done":true')
    assert (tmp_path / "up.bin").read_bytes() == chunk * count


@pytest_twisted.ensureDeferred
async def test_chat_line_dripped_is_cut(loopback: Loopback) -> None:
    """A line dribbled out a byte per tick never ends: the chat hangs up on it."""
    port = await loopback.listen(
        ConnectionObserver(
            ChatFactory(joinDelay=0),
            "tcplab-chat",
            idleTimeout=60,
            messageTimeout=MESSAGE_TIMEOUT,
        )
    )
    listener: Collector = await loopback.connect(port)
    dripper = await dripUntilCut(loopback, port, b"hel", b"l")
    assert b"message not completed within 0.5 seconds" in bytes(dripper.received)
    assert b"left #lobby" in await listener.waitForText(b"left #lobby")
