"""The file server's protocol and session, in memory (tests/memory.py) on a shared clock."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from tcplab.auth import LoginFailed
from tcplab.files import FileServerFactory, wire
from tcplab.files.partials import partialName
from tcplab.files.storage import Upload
from tcplab.files.work import IBlockingWork, InlineWork
from tests.memory import MemoryConnection, connectInMemory


class ControlledLogins:
    """An authenticator whose answers the test gives, one Deferred per login."""

    enabled = True

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[str]] = []

    def login(self, username: str, password: str, peer: str) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        self.pending.append(d)
        return d


def serve(root: Path, **kwargs: Any) -> tuple[FileServerFactory, MemoryReactorClock]:
    clock = MemoryReactorClock()
    factory = FileServerFactory(str(root), reactor=clock, work=InlineWork(), **kwargs)
    return factory, clock


def connect(factory: FileServerFactory, clock: MemoryReactorClock) -> MemoryConnection:
    return connectInMemory(factory, clock=clock)


def request(message: dict[str, Any]) -> bytes:
    return wire.frame(json.dumps(message).encode())


def replies(connection: MemoryConnection) -> list[Any]:
    """Every frame the client received so far: dicts for control messages, bytes for data."""
    decoder = wire.FrameDecoder()
    decoder.feed(connection.received())
    frames: list[Any] = []
    while (payload := decoder.nextFrame()) is not None:
        frames.append(payload[1:] if payload[:1] == wire.DATA else json.loads(payload))
    return frames


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    directory.mkdir()
    return directory


def test_request_behind_a_pending_login_waits_for_it(root: Path) -> None:
    """A list pipelined behind a login is answered after the login, as a logged-in user."""
    logins = ControlledLogins()
    factory, clock = serve(root, authenticator=logins, anonymousReads=False)
    connection = connect(factory, clock)
    connection.clientSends(
        request({"op": "login", "user": "alice", "password": "pw"})
        + request({"op": "list", "path": ""})
    )
    assert replies(connection) == []
    logins.pending[0].callback("alice")
    connection.flush()
    assert replies(connection) == [
        {"ok": True, "user": "alice"},
        {"ok": True, "entries": [], "more": False},
    ]


def test_failed_login_answers_before_the_next_request(root: Path) -> None:
    """A failed login's error comes first; the request behind it is then refused as anonymous."""
    logins = ControlledLogins()
    factory, clock = serve(root, authenticator=logins, anonymousReads=False)
    connection = connect(factory, clock)
    connection.clientSends(
        request({"op": "login", "user": "a", "password": "x"}) + request({"op": "list"})
    )
    logins.pending[0].errback(LoginFailed())
    connection.flush()
    assert [r["error"] for r in replies(connection)] == ["auth_failed", "auth_required"]


def test_no_request_read_while_output_is_full(root: Path) -> None:
    """With the transport's buffer full, pipelined requests wait unread; all are answered later."""
    factory, clock = serve(root)
    connection = connect(factory, clock)
    connection.server.pauseProducing()  # what a full write buffer does
    connection.clientSends(b"".join(request({"op": "stat", "path": ""}) for _ in range(100)))
    assert replies(connection) == []
    assert connection.serverTransport.paused, "reading must stop"
    connection.server.resumeProducing()
    connection.flush()
    assert len(replies(connection)) == 100
    assert not connection.serverTransport.paused


def test_one_reply_at_a_time_under_backpressure(root: Path) -> None:
    """Each reply that fills the buffer stops the reading of the next request."""
    factory, clock = serve(root)
    connection = connect(factory, clock)
    server = connection.server
    original = server.sendMessage

    def sendAndFill(message: dict[str, Any]) -> None:
        original(message)
        server.pauseProducing()

    server.sendMessage = sendAndFill
    connection.clientSends(b"".join(request({"op": "stat", "path": ""}) for _ in range(5)))
    assert len(replies(connection)) == 1
    server.resumeProducing()
    connection.flush()
    assert len(replies(connection)) == 2


def test_listing_is_paged_within_limits(root: Path) -> None:
    """A large directory comes in pages of at most 256 entries and 16 KiB, in name order."""
    names = [f"{n:05d}-" + "n" * 80 for n in range(1000)]
    for name in names:
        (root / name).touch()
    factory, clock = serve(root)
    connection = connect(factory, clock)
    connection.clientSends(request({"op": "list", "path": ""}))
    pages = replies(connection)
    assert len(pages) > 4
    assert [page["more"] for page in pages] == [True] * (len(pages) - 1) + [False]
    for page in pages:
        assert len(page["entries"]) <= wire.PAGE_ENTRIES
        assert len(wire.encode(page)) <= wire.MAX_CONTROL
    assert [e["name"] for page in pages for e in page["entries"]] == names


def test_listing_pauses_while_the_client_does_not_read(root: Path) -> None:
    """No next page is sent while the write buffer is full; the rest follows when it drains."""
    for n in range(600):
        (root / f"f{n:04d}").touch()
    factory, clock = serve(root)
    connection = connect(factory, clock)
    server = connection.server
    original = server.sendMessage

    def sendAndFill(message: dict[str, Any]) -> None:
        original(message)
        server.pauseProducing()

    server.sendMessage = sendAndFill
    connection.clientSends(request({"op": "list", "path": ""}) + request({"op": "stat"}))
    clock.advance(1)
    connection.flush()
    assert len(replies(connection)) == 1
    server.sendMessage = original
    server.resumeProducing()
    for _ in range(5):
        connection.advance(0)
    pages = replies(connection)
    assert [p.get("more") for p in pages] == [True, True, False, None]
    assert sum(len(p.get("entries", [])) for p in pages) == 600
    assert pages[-1]["type"] == "dir", "the stat behind the listing is answered after it"


def test_lone_surrogate_is_bad_request_and_connection_kept(root: Path) -> None:
    """A path with a lone surrogate is bad_request, and the next request is served."""
    factory, clock = serve(root)
    connection = connect(factory, clock)
    connection.clientSends(
        wire.frame(b'{"op": "stat", "path": "\\ud800"}') + request({"op": "list"})
    )
    first, second = replies(connection)
    assert first["error"] == "bad_request"
    assert second == {"ok": True, "entries": [], "more": False}
    assert not connection.client.closed.called


def test_refused_gets_are_counted(root: Path) -> None:
    """A get refused before a byte moved counts as refused, as a refused put does."""
    factory, clock = serve(root)
    connection = connect(factory, clock)
    connection.clientSends(
        request({"op": "get", "path": "missing"})
        + request({"op": "get", "path": "../x"})
        + request({"op": "put", "path": "x", "size": 1})
    )
    assert [r["error"] for r in replies(connection)] == ["not_found", "not_allowed", "not_allowed"]
    metrics = factory.metrics
    assert metrics.value("tcplab_file_transfers_total", op="get", outcome="refused") == 2
    assert metrics.value("tcplab_file_transfers_total", op="put", outcome="refused") == 1


def test_outcome_labels_have_no_spaces(root: Path) -> None:
    """An interrupted upload is counted as 'interrupted'; every label is a single word."""
    factory, clock = serve(root, writable=True)
    connection = connect(factory, clock)
    connection.clientSends(request({"op": "put", "path": "x", "size": 10}))
    connection.clientSends(wire.dataFrame(b"abc"))
    connection.clientTransport.loseConnection()
    connection.flush()
    assert factory.metrics.value("tcplab_file_transfers_total", op="put", outcome="interrupted")
    labels = {dict(s[1]).get("outcome") for s in factory.metrics.samples()}
    assert all(" " not in label for label in labels if label)
    assert factory.uploadsInProgress == 0


def test_second_upload_of_the_same_name_is_busy(root: Path) -> None:
    """While one connection uploads a name, another's put of it gets busy and stays connected."""
    factory, clock = serve(root, writable=True)
    first = connect(factory, clock)
    first.clientSends(request({"op": "put", "path": "x", "size": 4, "overwrite": True}))
    assert replies(first) == [{"ok": True, "offset": 0}]
    second = connect(factory, clock)
    second.clientSends(
        request({"op": "put", "path": "x", "size": 4, "overwrite": True}) + request({"op": "list"})
    )
    busy, listing = replies(second)
    assert busy["error"] == "busy" and listing["more"] is False
    first.clientSends(
        wire.dataFrame(b"abcd") + request({"sha256": hashlib.sha256(b"abcd").hexdigest()})
    )
    assert replies(first)[-1]["done"] is True
    assert (root / "x").read_bytes() == b"abcd"


def test_upload_limit_answers_busy(root: Path) -> None:
    """Beyond maxUploads held at once (stalled ones included), a put gets busy."""
    factory, clock = serve(root, writable=True, maxUploads=2)
    holders = [connect(factory, clock) for _ in range(2)]
    for n, holder in enumerate(holders):
        holder.clientSends(request({"op": "put", "path": f"f{n}", "size": 10}))
    extra = connect(factory, clock)
    extra.clientSends(request({"op": "put", "path": "g", "size": 10}))
    assert replies(extra)[0]["error"] == "busy"
    holders[0].clientTransport.loseConnection()
    holders[0].flush()
    extra.clientSends(request({"op": "put", "path": "g", "size": 10}))
    assert replies(extra)[1] == {"ok": True, "offset": 0}


def test_finish_with_vanished_partial_is_an_error_reply(root: Path) -> None:
    """An upload whose partial was removed meanwhile gets server_error, not a dropped link."""
    factory, clock = serve(root, writable=True)
    connection = connect(factory, clock)
    connection.clientSends(request({"op": "put", "path": "x", "size": 2}))
    os.unlink(root / partialName("x", 2))
    connection.clientSends(
        wire.dataFrame(b"ok") + request({"sha256": hashlib.sha256(b"ok").hexdigest()})
    )
    assert replies(connection)[-1]["error"] == "server_error"
    assert not (root / "x").exists()


def test_rm_of_a_directory_holding_only_abandoned_partials(root: Path) -> None:
    """rm of a directory that looks empty but holds interrupted partials succeeds."""
    (root / "d").mkdir()
    Upload.__init__  # noqa: B018 (the storage does the work; here over the wire)
    factory, clock = serve(root, writable=True)
    uploader = connect(factory, clock)
    uploader.clientSends(request({"op": "put", "path": "d/f", "size": 10}) + wire.dataFrame(b"1"))
    uploader.clientTransport.loseConnection()
    uploader.flush()
    assert os.listdir(root / "d") == [partialName("f", 10)]
    connection = connect(factory, clock)
    connection.clientSends(
        request({"op": "list", "path": "d"}) + request({"op": "delete", "path": "d"})
    )
    listing, deleted = replies(connection)
    assert listing["entries"] == [] and deleted == {"ok": True}
    assert not (root / "d").exists()


def test_abandoned_partials_expire_on_the_injected_clock(root: Path) -> None:
    """The sweep runs at start and then periodically on the factory's reactor."""
    factory, clock = serve(root, writable=True, partialExpiry=100)
    old = root / partialName("a", 5)
    old.write_bytes(b"12")
    longAgo = time.time() - 1000
    os.utime(old, (longAgo, longAgo))
    factory.doStart()
    assert not old.exists()
    later = root / partialName("b", 5)
    later.write_bytes(b"12")
    os.utime(later, (longAgo, longAgo))
    clock.advance(24)
    assert later.exists()
    clock.advance(1)
    assert not later.exists()
    factory.doStop()


def test_message_in_progress_only_while_the_peer_owes_bytes(root: Path) -> None:
    """Half a frame is a message in progress; a whole request waiting behind a login is not."""
    logins = ControlledLogins()
    factory, clock = serve(root, authenticator=logins)
    connection = connect(factory, clock)
    assert connection.server.messageInProgress() is None
    connection.clientSends(request({"op": "stat"})[:5])
    assert connection.server.messageInProgress() is not None
    connection.clientSends(request({"op": "stat"})[5:])
    assert connection.server.messageInProgress() is None
    connection.clientSends(request({"op": "login", "user": "a", "password": "b"}) + request({}))
    assert connection.server.messageInProgress() is None


def test_get_sends_the_snapshot_size(root: Path) -> None:
    """A file that grows after the header is sent at its announced size, hashed exactly."""
    data = os.urandom(300_000)
    (root / "f").write_bytes(data)
    factory, clock = serve(root)
    connection = connect(factory, clock)
    original = connection.server.sendMessage

    def growAfterHeader(message: dict[str, Any]) -> None:
        original(message)
        if "size" in message and "done" not in message:
            with open(root / "f", "ab") as f:
                f.write(b"more" * 50_000)

    connection.server.sendMessage = growAfterHeader
    connection.clientSends(request({"op": "get", "path": "f"}))
    header, *chunks, trailer = replies(connection)
    assert header["size"] == len(data)
    assert b"".join(chunks) == data
    assert trailer["sha256"] == hashlib.sha256(data).hexdigest()


def test_get_of_a_shrinking_file_fails_cleanly(root: Path) -> None:
    """A file truncated after the header ends the download with server_error, not success."""
    (root / "f").write_bytes(os.urandom(300_000))
    factory, clock = serve(root)
    connection = connect(factory, clock)
    original = connection.server.sendMessage

    def shrinkAfterHeader(message: dict[str, Any]) -> None:
        original(message)
        if "size" in message:
            os.truncate(root / "f", 1000)

    connection.server.sendMessage = shrinkAfterHeader
    connection.clientSends(request({"op": "get", "path": "f"}))
    assert replies(connection)[-1]["error"] == "server_error"
    assert connection.client.closed.called


@implementer(IBlockingWork)
class HeldWork:
    """Blocking work that runs only when the test says so."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, defer.Deferred[Any]]] = []

    def run(self, job: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.jobs.append((job, d))
        return d

    def finishAll(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job, d in jobs:
            try:
                d.callback(job())
            except Exception:
                d.errback()


def test_connection_lost_while_a_resume_is_hashed(root: Path) -> None:
    """A client gone during the resume hash: the partial is kept, closed only after the job."""
    kept = Upload(FileServerFactory(str(root)).root.resolve("f"), 10, overwrite=False, resume=True)
    kept.write(b"12345")
    kept.abort(keep=True)
    work = HeldWork()
    clock = MemoryReactorClock()
    factory = FileServerFactory(
        str(root), reactor=clock, work=work, writable=True, partialExpiry=0
    )
    connection = connect(factory, clock)
    connection.clientSends(request({"op": "put", "path": "f", "size": 10}))
    assert len(work.jobs) == 1
    assert replies(connection) == [] and factory.uploadsInProgress == 1
    connection.clientTransport.loseConnection()
    connection.flush()
    assert factory.uploadsInProgress == 1, "the partial stays open while a thread reads it"
    work.finishAll()
    assert factory.uploadsInProgress == 0
    assert (root / partialName("f", 10)).read_bytes() == b"12345"
    assert factory.metrics.value("tcplab_file_transfers_total", op="put", outcome="interrupted")


def test_longest_name_goes_up_and_comes_back(root: Path) -> None:
    """A 255-byte name uploads and downloads over the wire."""
    name = "ü" * 127 + "z"
    factory, clock = serve(root, writable=True)
    connection = connect(factory, clock)
    digest = hashlib.sha256(b"data").hexdigest()
    connection.clientSends(
        request({"op": "put", "path": f"dir/{name}", "size": 4})
        + wire.dataFrame(b"data")
        + request({"sha256": digest})
        + request({"op": "get", "path": f"dir/{name}"})
    )
    started, done, header, chunk, trailer = replies(connection)
    assert started == {"ok": True, "offset": 0}
    assert done["sha256"] == digest and header["size"] == 4
    assert chunk == b"data" and trailer["sha256"] == digest


def test_completed_put_clears_that_names_stale_partials(root: Path) -> None:
    """A put that lands removes the name's abandoned partials of other sizes, not others'."""
    (root / partialName("x", 100)).write_bytes(b"old")
    (root / partialName("x.pdf", 100)).write_bytes(b"other name")
    factory, clock = serve(root, writable=True)
    connection = connect(factory, clock)
    connection.clientSends(
        request({"op": "put", "path": "x", "size": 2})
        + wire.dataFrame(b"ok")
        + request({"sha256": hashlib.sha256(b"ok").hexdigest()})
    )
    assert replies(connection)[-1]["done"] is True
    assert sorted(os.listdir(root)) == sorted(["x", partialName("x.pdf", 100)])
