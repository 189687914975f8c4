"""The client distrusts the server: every reply is validated into typed records, in memory."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tcplab.errors import ExitCode
from tcplab.files import replies
from tcplab.files.client import MalformedReply, RemoteError
from tests.files.fake_server import FakeFileServer, connectFake, entry, outcome


def answersStat(reply: Any) -> Any:
    """A script answering every request with C{reply} (a dict, or raw payload bytes)."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if isinstance(reply, bytes):
            server.raw(reply)
        else:
            server.reply(**reply)

    return script


GOOD = {"ok": True, "name": "a", "type": "file", "size": 1, "mtime": 1763880000}

BAD_STAT_REPLIES = [
    {**GOOD, "mtime": "yesterday"},
    {**GOOD, "mtime": 10**30},
    {**GOOD, "mtime": 1.5},
    {**GOOD, "mtime": True},
    {**GOOD, "size": "big"},
    {**GOOD, "size": -1},
    {**GOOD, "size": 2**63},
    {**GOOD, "size": None},
    {**GOOD, "name": "a/b"},
    {**GOOD, "name": "a\x00b"},
    {**GOOD, "name": ["a"]},
    {**GOOD, "name": "x" * 5000},
    {**GOOD, "type": "fifo"},
    {**GOOD, "type": ["file"]},
    {**GOOD, "symlink": "yes"},
    {**GOOD, "ok": "true"},
    {"ok": False, "error": 5, "message": "x"},
    {"ok": False, "error": "not_found"},
]


@pytest.mark.parametrize("reply", BAD_STAT_REPLIES, ids=lambda r: repr(r)[:60])
def test_bad_values_are_malformed_replies(reply: dict[str, Any]) -> None:
    """Wrong types, out-of-range numbers and bad names are one MalformedReply (exit 8)."""
    client, connection = connectFake(answersStat(reply))
    with pytest.raises(MalformedReply) as caught:
        outcome(connection, client.stat("a"))
    assert caught.value.exitCode == ExitCode.PROTOCOL
    assert caught.value.message.startswith("protocol error: ")
    assert client.disconnected, "a broken server's connection is dropped"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ok": true, "entries": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"ok": true, "entries": [' + b'{"a": ' * 500 + b"1" + b"}" * 500 + b"]}",
        b'{"ok": true, "entries": [], "more": NaN}',
        b'{"ok": true, "ok": false, "entries": []}',
        b"[1, 2]",
        b"\xff{",
    ],
    ids=["nested-1000", "nested-objects", "nan", "duplicate-keys", "not-object", "not-utf8"],
)
def test_malformed_json_is_a_malformed_reply(payload: bytes) -> None:
    """Deep nesting, NaN, duplicate keys, non-objects and bad UTF-8 never raise a traceback."""
    client, connection = connectFake(answersStat(payload))
    with pytest.raises(MalformedReply):
        outcome(connection, client.list(""))


def test_good_stat_is_a_typed_record() -> None:
    """A valid stat reply becomes an Entry with exact fields (symlink defaults to false)."""
    client, connection = connectFake(answersStat({**GOOD, "future": [1, {"x": 2}]}))
    info = outcome(connection, client.stat("a"))
    assert info == replies.Entry("a", "file", 1, 1763880000, False)
    assert info.isFile and not info.isDir


def test_error_reply_is_escaped_and_keeps_code() -> None:
    """An error's message is made printable; the code and the raw text stay available."""
    evil = "\x1b]0;OWNED\x07\x1b[2J\u202egnp.exe\ud800"
    client, connection = connectFake(
        answersStat({"ok": False, "error": "not_found", "message": evil})
    )
    with pytest.raises(RemoteError) as caught:
        outcome(connection, client.stat("a"))
    assert caught.value.code == "not_found" and caught.value.exitCode == ExitCode.NOT_FOUND
    assert caught.value.serverMessage == evil
    assert caught.value.message == "\\x1b]0;OWNED\\x07\\x1b[2J\\u202egnp.exe\\ud800"
    assert not client.disconnected, "an error reply leaves the connection usable"


def test_busy_maps_to_exit_12() -> None:
    """The agreed error 'busy' is a RemoteError with exit status 12."""
    client, connection = connectFake(
        answersStat({"ok": False, "error": "busy", "message": "being uploaded"})
    )
    with pytest.raises(RemoteError) as caught:
        outcome(connection, client.stat("a"))
    assert caught.value.code == "busy" and caught.value.exitCode == ExitCode.BUSY == 12


def test_unknown_error_code_is_a_plain_failure() -> None:
    """An error code this client does not know exits 1, with its message escaped."""
    client, connection = connectFake(
        answersStat({"ok": False, "error": "\x1b[31m", "message": "hmm"})
    )
    with pytest.raises(RemoteError) as caught:
        outcome(connection, client.stat("a"))
    assert caught.value.exitCode == ExitCode.FAILURE


def test_printable_escapes_everything_that_acts_on_a_terminal() -> None:
    """C0, C1, DEL, bidi overrides, line separators and lone surrogates become escapes."""
    shown = replies.printable("a\x1b[2J\x9b\x7f\u2028\u2029\u202e\u2066\u200f\ud800é李")
    assert shown == "a\\x1b[2J\\x9b\\x7f\\u2028\\u2029\\u202e\\u2066\\u200f\\ud800é李"
    shown.encode("utf-8")  # nothing left that cannot be printed


def test_listing_entries_must_be_single_components() -> None:
    """A listed name of '', '.' or '..' is malformed; a stat of the root may have any name."""
    for name in ["", ".", ".."]:
        with pytest.raises(MalformedReply):
            replies.parseEntry(entry(name))
    assert replies.parseEntry(entry(""), listed=False).name == ""


def test_mtime_range_is_years_1_to_9999() -> None:
    """mtimes from year 1 to year 9999 are accepted, one second beyond is not."""
    for mtime in (replies.MIN_MTIME, 0, -1, replies.MAX_MTIME):
        assert replies.parseEntry({**entry("a"), "mtime": mtime}).mtime == mtime
    for mtime in (replies.MIN_MTIME - 1, replies.MAX_MTIME + 1):
        with pytest.raises(MalformedReply):
            replies.parseEntry({**entry("a"), "mtime": mtime})


def test_download_header_must_match_the_request() -> None:
    """A get header for another offset, or a size below the offset, is malformed."""
    good = {"ok": True, "size": 10, "offset": 4, "mtime": 0}
    assert replies.parseDownloadHeader(good, 4) == replies.DownloadHeader(10, 4, 0)
    with pytest.raises(MalformedReply):
        replies.parseDownloadHeader(good, 0)
    with pytest.raises(MalformedReply):
        replies.parseDownloadHeader({**good, "size": 3}, 4)


def test_trailer_digest_must_be_hex() -> None:
    """A trailer whose sha256 is not 64 lower-case hex digits (or lacks done) is malformed."""
    digest = "a" * 64
    assert replies.parseDone({"ok": True, "done": True, "sha256": digest}) == digest
    bads: list[dict[str, Any]] = [
        {"done": True, "sha256": "A" * 64},
        {"done": True, "sha256": "\x1b" * 64},
        {"done": True, "sha256": "a" * 63},
        {"sha256": digest},
    ]
    for bad in bads:
        with pytest.raises(MalformedReply):
            replies.parseDone(bad)


def test_unknown_fields_are_ignored() -> None:
    """Fields this client does not know are ignored, for servers newer than it."""
    page = replies.parseListPage(json.loads('{"ok": true, "entries": [], "cursor": {"x": 1}}'))
    assert page == replies.ListPage((), False)
