"""Tests for L{tcplab.files.pieces}: the frame stream decoded without copying file data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcplab.files import wire
from tcplab.files.pieces import FrameItem, PieceDecoder

Token = tuple[str, bytes]


def decodeAll(decoder: PieceDecoder, chunks: list[bytes]) -> list[FrameItem]:
    """Feed C{chunks} one by one, taking every item as soon as it is there."""
    items: list[FrameItem] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (item := decoder.next()) is not None:
            items.append(item)
    return items


def merged(items: list[FrameItem]) -> list[Token]:
    """Items as tokens, consecutive data pieces joined (their frame boundaries mean nothing)."""
    tokens: list[Token] = []
    for item in items:
        if isinstance(item, memoryview):
            if tokens and tokens[-1][0] == "data":
                tokens[-1] = ("data", tokens[-1][1] + bytes(item))
            else:
                tokens.append(("data", bytes(item)))
        else:
            tokens.append(("control", item))
    return tokens


def expected(frames: list[bytes]) -> list[Token]:
    """What C{frames} (whole frames, encoded) must decode to, merged."""
    items: list[FrameItem] = []
    for encoded in frames:
        payload = encoded[4:]
        items.append(memoryview(payload[1:]) if payload[:1] == wire.DATA else payload)
    return merged(items)


messages = st.one_of(
    st.binary(max_size=300).map(wire.dataFrame),
    st.dictionaries(st.text(max_size=5), st.integers(0, 10**6), max_size=4).map(
        lambda d: wire.frame(wire.encode(d))
    ),
    st.just(wire.frame(b"")),
)


@given(frames=st.lists(messages, max_size=8), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_any_chunking_decodes_the_same(frames: list[bytes], cuts: list[int]) -> None:
    """Every split of the stream gives the same control payloads and the same data bytes."""
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    decoder = PieceDecoder()
    assert merged(decodeAll(decoder, chunks)) == expected(frames)
    assert decoder.framesDecoded == len(frames)
    assert not decoder.inFrame


def test_byte_at_a_time() -> None:
    """A data frame fed byte by byte comes out as one-byte views; a control message whole."""
    stream = wire.dataFrame(b"abc") + wire.frame(wire.encode({"ok": True}))
    items = decodeAll(PieceDecoder(), [stream[i : i + 1] for i in range(len(stream))])
    assert [bytes(i) if isinstance(i, memoryview) else i for i in items] == [
        b"",
        b"a",
        b"b",
        b"c",
        b'{"ok":true}',
    ]
    assert [type(i) for i in items[-2:]] == [memoryview, bytes]


def test_data_is_not_copied() -> None:
    """A data frame read whole is handed on as a view of the very bytes the transport read."""
    chunk = wire.dataFrame(b"x" * wire.CHUNK_SIZE)
    decoder = PieceDecoder()
    decoder.feed(chunk)
    item = decoder.next()
    assert isinstance(item, memoryview) and item.obj is chunk
    assert len(item) == wire.CHUNK_SIZE and decoder.framesDecoded == 1


def test_views_stay_valid_after_more_bytes() -> None:
    """A view handed out keeps its bytes while more arrive (its buffer is never resized)."""
    decoder = PieceDecoder()
    stream = wire.dataFrame(b"A" * 10) + wire.frame(b'{"x":1}')
    decoder.feed(stream[:2])
    decoder.feed(stream[2:18])  # joined in the decoder's own buffer, the next header begun
    first = decoder.next()
    assert isinstance(first, memoryview) and bytes(first) == b"A" * 10
    assert decoder.next() is None
    decoder.feed(stream[18:])
    assert decoder.next() == b'{"x":1}'
    assert bytes(first) == b"A" * 10


def test_a_fed_bytearray_is_not_changed() -> None:
    """The decoder grows only buffers of its own, never one it was given."""
    whole = wire.frame(b'{"a":1}')
    given = bytearray(whole[:6])
    decoder = PieceDecoder()
    decoder.feed(given)  # type: ignore[arg-type]  # (Twisted gives bytes; a caller may not)
    decoder.feed(whole[6:])
    assert decoder.next() == b'{"a":1}'
    assert given == whole[:6]


def test_frame_limits() -> None:
    """A full data frame fits; one byte more is refused on its prefix alone, before any data."""
    decoder = PieceDecoder()
    decoder.feed(wire.dataFrame(b"x" * wire.CHUNK_SIZE))
    item = decoder.next()
    assert isinstance(item, memoryview) and len(item) == wire.CHUNK_SIZE
    decoder.feed(wire.PREFIX.pack(wire.MAX_FRAME + 1) + wire.DATA)
    with pytest.raises(wire.FrameTooLarge) as raised:
        decoder.next()
    assert raised.value.length == wire.MAX_FRAME + 1


def test_in_frame_until_the_frame_ends() -> None:
    """A data frame whose bytes were all taken but one is still in progress (slow-drip marker)."""
    decoder = PieceDecoder()
    frame = wire.dataFrame(b"0123456789")
    decoder.feed(frame[:-1])
    assert bytes(decoder.next() or b"") == b"012345678"
    assert decoder.buffered == 0 and decoder.inFrame and decoder.framesDecoded == 0
    assert decoder.next() is None
    decoder.feed(frame[-1:])
    assert bytes(decoder.next() or b"") == b"9"
    assert not decoder.inFrame and decoder.framesDecoded == 1


def test_items_wait_until_taken() -> None:
    """Nothing is lost while the caller takes nothing (a server answering a request)."""
    decoder = PieceDecoder()
    stream = wire.frame(b'{"op":"list"}') * 3
    decoder.feed(stream[:20])
    decoder.feed(stream[20:])
    assert decoder.buffered == len(stream)
    assert decodeAll(decoder, [b""]) == [b'{"op":"list"}'] * 3
    assert decoder.buffered == 0 and decoder.framesDecoded == 3


@given(frames=st.lists(messages, max_size=8), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_borrowed_views_released_decode_the_same(frames: list[bytes], cuts: list[int]) -> None:
    """
    Every split of the stream fed as views of one reused buffer, released
    and overwritten after each, decodes the same: the decoder keeps a copy
    of any remainder and never a reference into the lent memory.
    """
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    lent = bytearray(len(stream) + 1)
    decoder = PieceDecoder()
    items: list[FrameItem] = []
    for a, b in zip([0, *points], [*points, len(stream)]):
        lent[: b - a] = stream[a:b]
        decoder.feed(memoryview(lent)[: b - a])
        while (item := decoder.next()) is not None:
            # Used (copied) before the release, as a sink and a hash do.
            items.append(memoryview(bytes(item)) if isinstance(item, memoryview) else item)
        decoder.release()
        lent[:] = b"\xee" * len(lent)
    assert merged(items) == expected(frames)
    assert decoder.framesDecoded == len(frames)
    assert not decoder.inFrame


def test_a_released_remainder_is_copied() -> None:
    """What is left of a borrowed view at its release (a header begun) survives its reuse."""
    stream = wire.dataFrame(b"abc") + wire.frame(b'{"x":1}')
    lent = bytearray(stream[:10])
    decoder = PieceDecoder()
    decoder.feed(memoryview(lent))
    assert bytes(decoder.next() or b"") == b"abc"
    assert decoder.next() is None
    decoder.release()
    lent[:] = b"\xee" * len(lent)
    decoder.feed(stream[10:])
    assert decoder.next() == b'{"x":1}'
