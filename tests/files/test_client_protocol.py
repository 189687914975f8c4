"""FileClient's protocol behaviour, in memory: one operation at a time, pages, limits."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import pytest
from twisted.internet.protocol import Factory

from tcplab.files import client as clientModule
from tcplab.files import wire
from tcplab.files.client import FileClient, MalformedReply, OperationInProgress, RemoteError
from tcplab.files.replies import Downloaded, Uploaded
from tests.files.fake_server import FakeFileServer, connectFake, entry, outcome, serveInMemory
from tests.memory import connectInMemory


def test_real_server_round_trip_in_memory(tmp_path: Any) -> None:
    """put, list, stat, get and delete against the real server factory return typed records."""
    connection = serveInMemory(str(tmp_path), FileClient(), writable=True)
    files: FileClient = connection.client
    payload = os.urandom(200_000)
    digest = hashlib.sha256(payload).hexdigest()
    assert outcome(connection, files.put("d/x", io.BytesIO(payload))) == Uploaded(
        len(payload), 0, digest
    )
    [listed] = outcome(connection, files.list("d"))
    assert (listed.name, listed.kind, listed.size) == ("x", "file", len(payload))
    assert outcome(connection, files.stat("d/x")) == listed
    sink = io.BytesIO()
    got = outcome(connection, files.get("d/x", sink))
    assert got == Downloaded(len(payload), 0, listed.mtime, digest)
    assert sink.getvalue() == payload
    outcome(connection, files.delete("d/x"))
    assert outcome(connection, files.list("d")) == []


def test_second_concurrent_operation_is_refused(tmp_path: Any) -> None:
    """A second operation while one runs fails at once; the first one is unharmed."""
    (tmp_path / "f").write_bytes(b"hello")
    connection = serveInMemory(str(tmp_path), FileClient())
    files: FileClient = connection.client
    sink = io.BytesIO()
    first = files.get("f", sink)
    assert files.operation == "get"
    with pytest.raises(OperationInProgress, match="get is still in progress"):
        outcome(connection, files.list(""))
    assert outcome(connection, first).size == 5 and sink.getvalue() == b"hello"
    assert files.operation is None
    assert [e.name for e in outcome(connection, files.list(""))] == ["f"]


def pagedListing(pages: list[list[dict[str, Any]]], last: dict[str, Any] | None = None) -> Any:
    """A script answering list with these pages (more: true on all but the last)."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        for number, page in enumerate(pages):
            server.reply(ok=True, entries=page, more=number < len(pages) - 1 or last is not None)
        if last is not None:
            server.reply(**last)

    return script


def test_every_page_of_a_listing_is_read() -> None:
    """Pages with more=true are joined until the one with more=false."""
    pages = [[entry(f"n{p}-{i}") for i in range(3)] for p in range(4)]
    files, connection = connectFake(pagedListing(pages))
    names = [e.name for e in outcome(connection, files.list(""))]
    assert names == [f"n{p}-{i}" for p in range(4) for i in range(3)]
    assert not files.disconnected and files.operation is None


def test_a_reply_without_more_is_a_whole_listing() -> None:
    """An older server's single reply without 'more' is the complete listing."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.reply(ok=True, entries=[entry("a"), entry("b", "dir")])

    files, connection = connectFake(script)
    assert [(e.name, e.kind) for e in outcome(connection, files.list(""))] == [
        ("a", "file"),
        ("b", "dir"),
    ]


def test_an_error_ends_a_listing() -> None:
    """An error reply after some pages ends the listing with that error."""
    last = {"ok": False, "error": "not_found", "message": "gone meanwhile"}
    files, connection = connectFake(pagedListing([[entry("a")]], last))
    with pytest.raises(RemoteError, match="gone meanwhile"):
        outcome(connection, files.list(""))


def test_absurd_listings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing over MAX_LIST_ENTRIES in total is a protocol error and the connection goes."""
    monkeypatch.setattr(clientModule, "MAX_LIST_ENTRIES", 10)
    files, connection = connectFake(pagedListing([[entry(f"{i}") for i in range(4)]] * 5))
    with pytest.raises(MalformedReply, match="more than 10 entries"):
        outcome(connection, files.list(""))
    assert files.disconnected


def test_symlink_flag_is_kept() -> None:
    """An entry's symlink flag reaches the record; its kind is the target's."""
    files, connection = connectFake(pagedListing([[entry("again", "dir", symlink=True)]]))
    [again] = outcome(connection, files.list(""))
    assert again.symlink and again.isDir


def test_download_stops_at_the_announced_size() -> None:
    """A server announcing 1 byte and sending a megabyte gets 1 byte written, then cut off."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.reply(ok=True, size=1, offset=0, mtime=0)
        for _ in range(16):
            server.data(b"x" * 65535)
        server.reply(ok=True, done=True, sha256=hashlib.sha256(b"x").hexdigest())

    files, connection = connectFake(script)
    sink = io.BytesIO()
    with pytest.raises(MalformedReply, match="more than the 1 bytes it announced"):
        outcome(connection, files.get("f", sink))
    assert sink.getvalue() == b"x"
    assert files.disconnected


def test_download_resumed_never_exceeds_the_announcement() -> None:
    """From an offset, only size - offset bytes are accepted."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.reply(ok=True, size=10, offset=8, mtime=0)
        server.data(b"abcdef")

    files, connection = connectFake(script)
    sink = io.BytesIO(b"01234567")
    sink.seek(8)
    with pytest.raises(MalformedReply):
        outcome(connection, files.get("f", sink, offset=8, prefix=sink))
    assert sink.getvalue() == b"01234567ab"


def test_download_short_of_its_size_fails() -> None:
    """A trailer arriving before all the announced bytes is a protocol error."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.reply(ok=True, size=10, offset=0, mtime=0)
        server.data(b"abc")
        server.reply(ok=True, done=True, sha256=hashlib.sha256(b"abc").hexdigest())

    files, connection = connectFake(script)
    with pytest.raises(MalformedReply, match="7 bytes short of 10"):
        outcome(connection, files.get("f", io.BytesIO()))


def test_data_before_the_header_or_outside_a_download_is_refused() -> None:
    """File data that no download asked for ends the connection with a protocol error."""

    def early(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.data(b"sneaky")
        server.download(b"abc")

    files, connection = connectFake(early)
    sink = io.BytesIO()
    with pytest.raises(MalformedReply, match="before the download's header"):
        outcome(connection, files.get("f", sink))
    assert sink.getvalue() == b""

    def stray(server: FakeFileServer, request: dict[str, Any]) -> None:
        server.data(b"sneaky")
        server.reply(**{**entry("a"), "ok": True})

    files, connection = connectFake(stray)
    with pytest.raises(MalformedReply, match="outside a download"):
        outcome(connection, files.stat("a"))


def test_replies_nobody_asked_for_are_bounded() -> None:
    """A server flooding replies while the client is idle is cut off, not buffered."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        for _ in range(1000):
            server.reply(ok=True)

    files, connection = connectFake(script)
    outcome(connection, files.delete("x"))
    assert files.disconnected
    with pytest.raises(MalformedReply, match="nobody asked for"):
        outcome(connection, files.delete("y"))


def test_upload_confirmation_must_match_what_was_sent() -> None:
    """A put whose final reply names another SHA-256 or size is a protocol error."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if "op" in request:
            server.reply(ok=True, offset=0)
        else:
            server.reply(ok=True, done=True, size=3, sha256="0" * 64)

    files, connection = connectFake(script)
    with pytest.raises(MalformedReply, match="another size or SHA-256"):
        outcome(connection, files.put("x", io.BytesIO(b"abc"), 3))


def test_upload_offset_must_be_within_the_file() -> None:
    """A put answered with an offset past the file's size is a protocol error."""
    files, connection = connectFake(lambda server, request: server.reply(ok=True, offset=4))
    with pytest.raises(MalformedReply, match="'offset' out of range"):
        outcome(connection, files.put("x", io.BytesIO(b"abc"), 3))


def test_upload_reports_where_the_server_resumes() -> None:
    """The started callback hears the server's offset; only the rest is sent."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if "op" in request:
            server.reply(ok=True, offset=2)
        else:
            server.finishUpload(request, 5)

    files, connection = connectFake(script)
    offsets: list[int] = []
    result = outcome(connection, files.put("x", io.BytesIO(b"abcde"), 5, started=offsets.append))
    assert offsets == [2] and result.offset == 2
    assert connection.server.uploaded == b"cde"


def test_oversized_frame_from_server_is_refused() -> None:
    """A frame length over 64 KiB is refused before anything is allocated for it."""
    files, connection = connectFake(
        lambda server, request: server.transport.write(wire.PREFIX.pack(2**31 - 1))
    )
    with pytest.raises(MalformedReply, match="frame of 2147483647 bytes"):
        outcome(connection, files.stat("a"))


def test_lost_connection_is_public() -> None:
    """disconnected says when a new connection is needed; operations then fail at once."""
    files, connection = connectFake(lambda server, request: server.transport.loseConnection())
    assert not files.disconnected
    with pytest.raises(clientModule.ConnectionLostError):
        outcome(connection, files.stat("a"))
    assert files.disconnected and files.closed.called
    with pytest.raises(clientModule.ConnectionLostError):
        outcome(connection, files.stat("a"))


def test_a_sink_that_cannot_be_written_ends_the_download() -> None:
    """A full disk on our side fails the get with that OSError and drops the connection."""

    class FullDisk(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    files, connection = connectFake(lambda server, request: server.download(b"abc"))
    with pytest.raises(OSError, match="No space left"):
        outcome(connection, files.get("f", FullDisk()))
    assert files.disconnected


def test_a_refusal_sent_before_hanging_up_is_reported() -> None:
    """A server that refuses at connect time (too many connections) is heard, not just lost."""

    class Refusing(FakeFileServer):
        def connectionMade(self) -> None:
            self.reply(ok=False, error="not_allowed", message="too many connections")
            self.transport.loseConnection()

    files = FileClient()
    connection = connectInMemory(Factory.forProtocol(lambda: Refusing(lambda s, r: None)), files)
    assert files.disconnected
    with pytest.raises(RemoteError, match="too many connections"):
        outcome(connection, files.stat("a"))
