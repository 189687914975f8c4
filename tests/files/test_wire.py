"""Tests for L{tcplab.files.wire}: framing and strict message parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import Int32StringReceiver

from tcplab.files import wire


class Recorder(Int32StringReceiver):
    MAX_LENGTH = wire.MAX_FRAME

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.tooLong: list[int] = []

    def stringReceived(self, string: bytes) -> None:
        self.frames.append(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.tooLong.append(length)


def feed(chunks: list[bytes]) -> Recorder:
    recorder = Recorder()
    recorder.makeConnection(StringTransport())
    for chunk in chunks:
        recorder.dataReceived(chunk)
    return recorder


messages = st.one_of(
    st.binary(max_size=300).map(wire.dataFrame),
    st.dictionaries(st.text(max_size=5), st.integers(0, 10**6), max_size=4).map(
        lambda d: wire.frame(wire.encode(d))
    ),
)


@given(frames=st.lists(messages, max_size=8), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_any_chunking_decodes_the_same(frames: list[bytes], cuts: list[int]) -> None:
    """Every way of splitting the byte stream yields the same frames."""
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    assert feed(chunks).frames == feed([stream]).frames == [f[4:] for f in frames]


def test_byte_at_a_time() -> None:
    """Frames fed one byte at a time decode like frames fed whole."""
    stream = wire.dataFrame(b"abc") + wire.frame(wire.encode({"ok": True}))
    assert feed([stream[i : i + 1] for i in range(len(stream))]).frames == [
        b"\x00abc",
        b'{"ok":true}',
    ]


def test_data_frame_limits() -> None:
    """A full data chunk fits MAX_FRAME exactly; one byte more is refused unread."""
    assert len(wire.dataFrame(b"x" * wire.CHUNK_SIZE)) - 4 == wire.MAX_FRAME
    recorder = feed([wire.PREFIX.pack(wire.MAX_FRAME + 1) + b"x" * 10])
    assert recorder.tooLong == [wire.MAX_FRAME + 1] and recorder.frames == []


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"op": "get", "offset": NaN}',
        b'{"op": "get", "offset": Infinity}',
        b'{"op": "get", "op": "put"}',
        b"[" * 100000 + b"]" * 100000,
        b"\xff\xfe",
        b"{" + b" " * wire.MAX_CONTROL + b"}",
    ],
)
def test_malformed_control_messages(payload: bytes) -> None:
    """Non-objects, NaN/Infinity, duplicate keys, deep nesting, bad UTF-8, huge: bad_request."""
    with pytest.raises(wire.ProtocolError) as caught:
        wire.decode(payload)
    assert caught.value.code == wire.BAD_REQUEST


@pytest.mark.parametrize(
    "message, problem",
    [
        ({"op": "rename"}, "unknown op"),
        ({"path": "x"}, "missing field 'op'"),
        ({"op": "get", "path": 5}, "'path' must be str"),
        ({"op": "get", "path": "x", "offset": True}, "'offset' must be int"),
        ({"op": "get", "path": "x", "offset": -1}, "out of range"),
        ({"op": "get", "path": "x", "offset": 1.5}, "must be int"),
        ({"op": "put", "path": "x"}, "missing field 'size'"),
        ({"op": "put", "path": "x", "size": 1, "overwrite": 1}, "'overwrite' must be bool"),
        ({"op": "put", "path": "x", "size": 2**64}, "out of range"),
    ],
)
def test_request_validation(message: dict[str, object], problem: str) -> None:
    """Fields are checked for presence and exact type (a bool is not an int)."""
    with pytest.raises(wire.ProtocolError, match=problem):
        wire.parseRequest(json.dumps(message).encode())


def test_valid_requests() -> None:
    """Well-formed requests parse into Request objects with defaults."""
    assert wire.parseRequest(b'{"op":"list"}') == wire.Request("list", "")
    assert wire.parseRequest(b'{"op":"get","path":"a","offset":7}').offset == 7
    put = wire.parseRequest(b'{"op":"put","path":"a","size":3,"overwrite":true}')
    assert (put.size, put.overwrite, put.resume) == (3, True, True)


def test_digest_validation() -> None:
    """An upload's digest must be 64 lower-case hex digits."""
    good = "ab" * 32
    assert wire.parseDigest(json.dumps({"sha256": good}).encode()) == good
    for bad in ["AB" * 32, "ab" * 31, 5]:
        with pytest.raises(wire.ProtocolError):
            wire.parseDigest(json.dumps({"sha256": bad}).encode())
