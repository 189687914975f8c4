"""Tests for L{tcplab.files.wire}: framing and strict message parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplab.files import wire


@dataclass
class Decoded:
    frames: list[bytes] = field(default_factory=list)
    tooLong: list[int] = field(default_factory=list)


def feed(chunks: list[bytes], maxFrame: int = wire.MAX_FRAME) -> Decoded:
    """Feed L{wire.FrameDecoder} chunk by chunk, taking every frame as soon as it is whole."""
    decoder = wire.FrameDecoder(maxFrame)
    result = Decoded()
    for chunk in chunks:
        decoder.feed(chunk)
        try:
            while (payload := decoder.nextFrame()) is not None:
                result.frames.append(payload)
        except wire.FrameTooLarge as e:
            result.tooLong.append(e.length)
            break
    return result


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
    """A full data chunk fits MAX_FRAME exactly; one byte more is refused on its prefix alone."""
    full = wire.dataFrame(b"x" * wire.CHUNK_SIZE)
    assert len(full) - 4 == wire.MAX_FRAME
    assert feed([full]).frames == [full[4:]]
    decoded = feed([wire.PREFIX.pack(wire.MAX_FRAME + 1)])
    assert decoded.tooLong == [wire.MAX_FRAME + 1] and decoded.frames == []
    decoded = feed([wire.frame(b"{}"), wire.PREFIX.pack(2**32 - 1)[:3], b"\xff"])
    assert decoded.frames == [b"{}"] and decoded.tooLong == [2**32 - 1]


def test_frames_wait_until_taken() -> None:
    """Frames stay buffered until taken, so a paused reader loses none; a half frame waits."""
    decoder = wire.FrameDecoder()
    stream = b"".join(wire.frame(bytes([n]) * n) for n in range(1, 6))
    decoder.feed(stream + wire.frame(b"last")[:5])
    assert decoder.nextFrame() == b"\x01"
    assert decoder.framesDecoded == 1 and decoder.buffered == len(stream) - 5 + 5
    rest = [decoder.nextFrame() for _ in range(4)]
    assert rest == [bytes([n]) * n for n in range(2, 6)]
    assert decoder.nextFrame() is None and decoder.buffered == 5
    decoder.feed(wire.frame(b"last")[5:])
    assert decoder.nextFrame() == b"last" and decoder.buffered == 0


def test_listing_pages_stay_within_the_control_limit() -> None:
    """Pages hold at most PAGE_ENTRIES entries and fit MAX_CONTROL even with the longest names."""
    names = ["\U0001f600" * 63 + "x"] * 300 + ["a"] * 600
    entries = ({"name": n, "type": "file", "size": 2**62, "mtime": 2**40} for n in names)
    pages = list(wire.listingPages(entries))
    assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]
    assert all(len(wire.encode(p)) <= wire.MAX_CONTROL for p in pages)
    assert all(0 < len(p["entries"]) <= wire.PAGE_ENTRIES for p in pages)
    assert sum(len(p["entries"]) for p in pages) == 900
    assert list(wire.listingPages(iter([]))) == [{"ok": True, "entries": [], "more": False}]


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
