"""
``tcplab ls|get|put|rm`` run in-process against fake servers (for what a
real server never does) and the real server, over loopback.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.cred import strcred
from twisted.internet.task import Clock

from tcplab.auth import Authenticator
from tcplab.cli import buildParser, files_get
from tcplab.cli.files_session import Session, plural, retryDelays
from tcplab.cli.running import ICommandReactor
from tcplab.errors import ExitCode, TcplabError
from tcplab.files import FileServerFactory
from tcplab.files.client import ConnectionLostError
from tests.files.fake_server import FakeFileServer, entry, fakeServerFactory
from tests.support import Loopback, reactor


async def tcplab(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one ``tcplab`` subcommand in this reactor; return status, stdout, stderr."""
    _, commands = buildParser()
    args = commands[argv[0]].parse_intermixed_args(list(argv[1:]))
    try:
        status = int(await args.main(reactor(), args))
    except TcplabError as e:
        print(f"tcplab: {e.message}", file=sys.stderr)
        status = int(e.exitCode)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def fake(loopback: Loopback, script: Any) -> tuple[str, Any]:
    """Listen with a scripted fake server; return its address and factory."""
    factory = fakeServerFactory(script)
    return f"127.0.0.1:{await loopback.listen(factory)}", factory


async def real(loopback: Loopback, root: Path, **kwargs: Any) -> str:
    """Listen with the real file server on C{root}; return its address."""
    return f"127.0.0.1:{await loopback.listen(FileServerFactory(str(root), **kwargs))}"


@pytest.fixture(autouse=True)
def quickRetries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait 10 ms here (their schedule is tested on a fake clock)."""
    monkeypatch.setattr(Session, "firstDelay", 0.01)


EVIL = "\x1b]0;OWNED\x07\x1b[2J"


@pytest_twisted.ensureDeferred
async def test_nothing_from_the_server_reaches_the_terminal_raw(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Names in ls and an error's message are printed escaped, never as escape sequences."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat" and request["path"] == "":
            server.reply(ok=True, **entry("", "dir"))
        elif request["op"] == "list":
            server.reply(ok=True, entries=[entry(EVIL), entry("ok\u202etxt.exe", "dir")])
        else:
            server.reply(ok=False, error="not_found", message=EVIL)

    address, _ = await fake(loopback, script)
    status, out, err = await tcplab(capsys, "ls", address)
    assert status == 0 and "\x1b" not in out and "\u202e" not in out
    assert "\\x1b]0;OWNED\\x07\\x1b[2J" in out and "ok\\u202etxt.exe/" in out
    status, out, err = await tcplab(capsys, "get", address, "x", "-o", str(tmp_path / "x"))
    assert status == ExitCode.NOT_FOUND
    assert err == "tcplab: get x: \\x1b]0;OWNED\\x07\\x1b[2J\n"


@pytest_twisted.ensureDeferred
async def test_get_stops_at_the_announced_size(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A server announcing 1 byte and sending 1 MiB: exit 8, nothing beyond 1 byte kept."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("f", size=1))
        else:
            server.reply(ok=True, size=1, offset=0, mtime=0)
            for _ in range(16):
                server.data(b"x" * 65535)

    address, _ = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "get", address, "f", "-o", str(tmp_path / "copy"))
    assert status == ExitCode.PROTOCOL
    assert err == (
        "tcplab: get f: protocol error: the server sent more than the 1 bytes it announced\n"
    )
    assert not (tmp_path / "copy").exists()
    assert (tmp_path / ".copy.tcplab-partial").read_bytes() == b"x"


def loopingTree(symlinkFlag: bool) -> Any:
    """A server whose 'share' holds a file and 'again', a directory that is 'share' again."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("share", "dir"))
        elif request["op"] == "list":
            again = entry("again", "dir", **({"symlink": True} if symlinkFlag else {}))
            server.reply(ok=True, entries=[again, entry("f", size=3)])
        else:
            server.download(b"abc")

    return script


@pytest_twisted.ensureDeferred
async def test_get_r_does_not_follow_symlinked_directories(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """get -r skips a directory symlink (and says so), so 'again -> .' ends at once."""
    address, factory = await fake(loopback, loopingTree(symlinkFlag=True))
    status, _, err = await tcplab(capsys, "get", address, "share", "-r", "-o", str(tmp_path))
    assert status == 0, err
    assert (tmp_path / "share" / "f").read_bytes() == b"abc"
    assert err == "tcplab: skipping 'share/again': a symbolic link to a directory (not followed)\n"
    lists = [r["path"] for s in factory.servers for r in s.requests if r["op"] == "list"]
    assert lists == ["share"]


@pytest_twisted.ensureDeferred
async def test_get_r_ends_when_an_unmarked_loop_repeats_a_listing(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two unmarked 'again -> .' links (an older server) end after one level, not 2^n copies."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("share", "dir"))
        elif request["op"] == "list":
            server.reply(ok=True, entries=[entry("a1", "dir"), entry("a2", "dir"), entry("f")])
        else:
            server.download(b"")

    address, factory = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "get", address, "share", "-r", "-o", str(tmp_path))
    assert status == 0, err
    loop = "lists exactly what a directory above it does (a symbolic link loop)"
    assert err.splitlines() == [
        f"tcplab: skipping 'share/a1': it {loop}",
        f"tcplab: skipping 'share/a2': it {loop}",
    ]
    lists = [r["path"] for s in factory.servers for r in s.requests if r["op"] == "list"]
    assert lists == ["share", "share/a1", "share/a2"]
    assert sorted(os.listdir(tmp_path / "share")) == ["f"]


@pytest_twisted.ensureDeferred
async def test_get_r_ends_at_the_depth_limit(
    loopback: Loopback,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server inventing ever deeper, ever different directories meets the depth limit: exit 8."""
    monkeypatch.setattr(files_get, "MAX_DEPTH", 5)

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("share", "dir"))
        elif request["op"] == "list":
            level = request["path"].count("/")
            server.reply(ok=True, entries=[entry("d", "dir"), entry(f"at{level}")])
        else:
            server.download(b"")

    address, _ = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "get", address, "share", "-r", "-o", str(tmp_path))
    assert status == ExitCode.PROTOCOL
    deepest = "share" + "/d" * 5
    assert err.splitlines()[-1] == (
        f"tcplab: get {deepest}: more than 5 nested directories; not descending further"
    )


@pytest_twisted.ensureDeferred
async def test_put_r_skips_fifos_sockets_and_directory_links(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """
    put -r uploads the regular files and warns once for each FIFO, socket and
    dir link; a FIFO named on the command line is refused in one line (exit 11).
    """
    root = tmp_path / "root"
    root.mkdir()
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("alpha")
    os.mkfifo(tree / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tree / "sock"))
    (tree / "loop").symlink_to(tree)
    try:
        address = await real(loopback, root, writable=True)
        status, _, err = await tcplab(capsys, "put", address, str(tree), "-r")
        named, _, namedErr = await tcplab(capsys, "put", address, str(tree / "pipe"))
    finally:
        listener.close()
    assert named == ExitCode.LOCAL_FILE
    assert namedErr == (
        f"tcplab: put {tree / 'pipe'}: {tree / 'pipe'} is a FIFO, not a regular file "
        "(to upload what it gives, use: put ADDRESS - --as NAME < it)\n"
    )
    assert status == 0, err
    assert (root / "tree" / "sub" / "a.txt").read_text() == "alpha"
    assert sorted(os.listdir(root / "tree")) == ["sub"]
    assert err.splitlines() == [
        f"tcplab: skipping '{tree / 'loop'}': a symbolic link to a directory (not followed)",
        f"tcplab: skipping '{tree / 'pipe'}': a FIFO",
        f"tcplab: skipping '{tree / 'sock'}': a socket",
    ]


@pytest_twisted.ensureDeferred
async def test_trailing_slash_means_a_directory(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """put --as newdir/ lands in newdir; get -o missing/ creates missing/ and lands inside."""
    root = tmp_path / "root"
    root.mkdir()
    local = tmp_path / "f.txt"
    local.write_text("hello")
    address = await real(loopback, root, writable=True)
    status, _, err = await tcplab(capsys, "put", address, str(local), "--as", "newdir/")
    assert status == 0, err
    assert (root / "newdir" / "f.txt").read_text() == "hello"
    missing = tmp_path / "missing"
    status, _, err = await tcplab(capsys, "get", address, "newdir/f.txt", "-o", f"{missing}/")
    assert status == 0, err
    assert (missing / "f.txt").read_text() == "hello"


@pytest_twisted.ensureDeferred
async def test_messages_say_what_to_do(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ls without a login says 'log in to list'; put and get both say 'use --overwrite'."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("x")
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], reactor())
    closed = await real(loopback, root, authenticator=auth, anonymousReads=False)
    status, _, err = await tcplab(capsys, "ls", closed)
    assert status == ExitCode.AUTH
    assert err == "tcplab: ls /: the server wants a login to list (use --user NAME)\n"
    address = await real(loopback, root, writable=True)
    status, _, err = await tcplab(capsys, "put", address, str(root / "f"))
    assert status == ExitCode.EXISTS
    assert err == f"tcplab: put {root / 'f'}: f exists on the server (use --overwrite)\n"
    status, _, err = await tcplab(capsys, "get", address, "f", "-o", str(root / "f"))
    assert status == ExitCode.EXISTS
    assert err == f"tcplab: get f: {root / 'f'} exists (use --overwrite)\n"


@pytest_twisted.ensureDeferred
async def test_unsafe_remote_name_is_saved_as_download_and_said(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A remote name with control characters lands as 'download', with a note saying so."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "a\x1bb").write_text("data")
    out = tmp_path / "out"
    out.mkdir()
    address = await real(loopback, root)
    status, _, err = await tcplab(capsys, "get", address, "a\x1bb", "-o", str(out))
    assert status == 0, err
    assert (out / "download").read_text() == "data"
    assert err == (
        "tcplab: a\\x1bb: the remote name is not safe as a local file name; "
        "saving it as 'download' (choose a name with -o)\n"
    )


def busyOnce() -> Any:
    """A server answering the first put with busy, then accepting the upload."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        puts = sum(1 for s in server.factory.servers for r in s.requests if r.get("op") == "put")
        if request.get("op") == "put" and puts == 1:
            server.reply(ok=False, error="busy", message="being uploaded by another connection")
        elif request.get("op") == "put":
            server.reply(ok=True, offset=0)
        else:
            server.finishUpload(request, 5)

    return script


@pytest_twisted.ensureDeferred
async def test_busy_is_exit_12_or_retried(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A busy target exits 12; with --retries the put waits, asks again and succeeds."""
    local = tmp_path / "f"
    local.write_bytes(b"hello")
    address, _ = await fake(loopback, busyOnce())
    status, _, err = await tcplab(capsys, "put", address, str(local))
    assert status == ExitCode.BUSY == 12
    assert err == f"tcplab: put {local}: being uploaded by another connection\n"
    address, factory = await fake(loopback, busyOnce())
    status, _, err = await tcplab(capsys, "put", address, str(local), "--retries", "2")
    assert status == 0, err
    assert err == (
        "tcplab: f: being uploaded by another connection; trying again in 0.01 s (1 retry left)\n"
    )
    assert bytes(factory.servers[-1].uploaded) == b"hello"


@pytest_twisted.ensureDeferred
async def test_retry_reconnects_and_resumes(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A download cut mid-way reconnects after a pause and says where it resumes."""
    content = os.urandom(200_000)

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("f", size=len(content)))
        elif request["offset"] == 0:
            server.reply(ok=True, size=len(content), offset=0, mtime=0)
            server.data(content[:60_000])
            server.data(content[60_000:70_000])
            server.transport.loseConnection()
        else:
            server.download(content, offset=request["offset"])

    address, _ = await fake(loopback, script)
    copy = tmp_path / "copy"
    status, _, err = await tcplab(capsys, "get", address, "f", "-o", str(copy), "--retries", "3")
    assert status == 0, err
    assert copy.read_bytes() == content
    assert err.splitlines() == [
        "tcplab: f: the server closed the connection mid-operation; "
        "reconnecting in 0.01 s (2 retries left)",
        "tcplab: f: resuming at 70000 bytes",
    ]


@pytest_twisted.ensureDeferred
async def test_summary_after_each_transfer_on_a_terminal(
    loopback: Loopback,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal a finished get and put each print one summary line; -q prints none."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"x" * 3000)
    address = await real(loopback, root, writable=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    status, _, err = await tcplab(capsys, "get", address, "f", "-o", str(tmp_path / "g"))
    assert status == 0
    [line] = [line for line in err.replace("\r", "\n").splitlines() if "verified" in line]
    assert line.startswith(f"tcplab: f -> {tmp_path / 'g'}: 2.9 KiB in ")
    assert line.endswith("SHA-256 verified")
    status, _, err = await tcplab(capsys, "put", address, str(tmp_path / "g"), "--as", "h")
    assert status == 0
    assert "tcplab: g -> h: 2.9 KiB in " in err
    status, _, err = await tcplab(capsys, "get", address, "h", "-o", str(tmp_path / "i"), "-q")
    assert status == 0 and err == ""


def test_retry_delays_grow_and_are_capped() -> None:
    """Waits between retries: 0.5 s doubling up to 10 s."""
    delays = retryDelays()
    assert [next(delays) for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert [plural(n, "retry") for n in (0, 1, 2)] == ["0 retries", "1 retry", "2 retries"]


def test_retrying_waits_on_the_clock(capsys: pytest.CaptureFixture[str]) -> None:
    """Each retry waits its delay on the session's clock before reconnecting."""
    _, commands = buildParser()
    args = commands["get"].parse_intermixed_args(["127.0.0.1:1", "f", "--retries", "3"])
    clock = Clock()
    session = Session(cast(ICommandReactor, clock), args)  # only its clock is used
    session.firstDelay = 0.5
    attempts: list[float] = []

    async def connected() -> Any:
        return object()

    async def attempt(client: Any) -> str:
        attempts.append(clock.seconds())
        if len(attempts) < 3:
            raise ConnectionLostError("cut")
        return "done"

    session.connected = connected  # type: ignore[method-assign]
    from twisted.internet import defer

    result = defer.ensureDeferred(session.retrying("f", attempt))
    assert attempts == [0]
    clock.advance(0.49)
    assert attempts == [0]
    clock.advance(0.01)
    assert attempts == [0, 0.5]
    clock.advance(0.99)
    assert attempts == [0, 0.5]
    clock.advance(0.01)
    assert attempts == [0, 0.5, 1.5]
    assert result.result == "done"
    assert capsys.readouterr().err.splitlines() == [
        "tcplab: f: cut; reconnecting in 0.5 s (2 retries left)",
        "tcplab: f: cut; reconnecting in 1 s (1 retry left)",
    ]


@pytest_twisted.ensureDeferred
async def test_get_of_a_name_at_the_length_limit(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A 255-byte name downloads: its partial file is named by a digest, not name + suffix."""
    root = tmp_path / "root"
    root.mkdir()
    name = "n" * 255
    (root / name).write_text("long")
    out = tmp_path / "out"
    out.mkdir()
    address = await real(loopback, root)
    status, _, err = await tcplab(capsys, "get", address, name, "-o", str(out))
    assert status == 0, err
    assert os.listdir(out) == [name] and (out / name).read_text() == "long"


@pytest.mark.parametrize(
    "listing",
    [
        [entry("a", mtime="yesterday")],
        [entry("a", mtime=10**30)],
        [{**entry("a"), "size": "big"}],
        [entry("a", size=2**64)],
        [entry("a", type="\x1b[2J")],
        [[[[["deep"]]]]],
    ],
    ids=["mtime-string", "mtime-huge", "size-string", "size-huge", "type-escape", "nested"],
)
@pytest_twisted.ensureDeferred
async def test_bad_values_from_the_server_are_one_line_exit_8(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], listing: list[Any]
) -> None:
    """ls against a server sending values of the wrong type or range: one line, exit 8."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("", "dir"))
        else:
            server.reply(ok=True, entries=listing)

    address, _ = await fake(loopback, script)
    status, out, err = await tcplab(capsys, "ls", address)
    assert status == ExitCode.PROTOCOL and out == ""
    assert err.startswith("tcplab: ls /: protocol error: ") and err.count("\n") == 1
    assert "\x1b" not in err


@pytest_twisted.ensureDeferred
async def test_a_bad_trailer_digest_is_exit_8(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A trailer whose sha256 is an escape sequence is a protocol error, never printed raw."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request["op"] == "stat":
            server.reply(ok=True, **entry("f", size=3))
        else:
            server.reply(ok=True, size=3, offset=0, mtime=0)
            server.data(b"abc")
            server.reply(ok=True, done=True, sha256="\x1b]0;OWNED\x07")

    address, _ = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "get", address, "f", "-o", str(tmp_path / "f"))
    assert status == ExitCode.PROTOCOL
    assert err == "tcplab: get f: protocol error: 'sha256' must be 64 lower-case hex digits\n"
    assert not (tmp_path / "f").exists()


@pytest_twisted.ensureDeferred
async def test_put_says_where_it_resumes(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A put the server resumes from an offset says so and sends only the rest."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        if request.get("op") == "put":
            server.reply(ok=True, offset=2)
        else:
            server.finishUpload(request, 5)

    local = tmp_path / "f"
    local.write_bytes(b"hello")
    address, factory = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "put", address, str(local))
    assert status == 0, err
    assert err == "tcplab: f: resuming at 2 bytes\n"
    assert bytes(factory.servers[0].uploaded) == b"llo"


@pytest_twisted.ensureDeferred
async def test_follow_links_descends_links_but_not_loops(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """get -r -L follows a link to another directory and recognises 'again -> .' as a loop."""

    def script(server: FakeFileServer, request: dict[str, Any]) -> None:
        path = request["path"]
        if request["op"] == "stat":
            server.reply(ok=True, **entry("share", "dir"))
        elif request["op"] == "list" and path.endswith("other"):
            server.reply(ok=True, entries=[entry("g", size=1)])
        elif request["op"] == "list":
            links = [entry("again", "dir", symlink=True), entry("other", "dir", symlink=True)]
            server.reply(ok=True, entries=[*links, entry("f", size=1)])
        else:
            server.download(path.encode()[-1:])

    address, _ = await fake(loopback, script)
    status, _, err = await tcplab(capsys, "get", address, "share", "-r", "-L", "-o", str(tmp_path))
    assert status == 0, err
    assert err == (
        "tcplab: skipping 'share/again': it lists exactly what a directory above it does "
        "(a symbolic link loop)\n"
    )
    assert (tmp_path / "share" / "f").read_bytes() == b"f"
    assert (tmp_path / "share" / "other" / "g").read_bytes() == b"g"
    assert not (tmp_path / "share" / "again").exists()


def test_stdin_spooler_tells_eof_from_interruption(tmp_path: Path) -> None:
    """A hang-up after the last byte is EOF; the reactor stopping mid-input is 'interrupted'."""
    from twisted.internet.error import ConnectionLost
    from twisted.internet.testing import MemoryReactor
    from twisted.python.failure import Failure

    from tcplab.cli.files_put import StdinSpooler

    for closeWriter, expected in [(True, None), (False, ExitCode.INTERRUPTED)]:
        readEnd, writeEnd = os.pipe()
        os.set_blocking(readEnd, False)
        os.write(writeEnd, b"some input")
        if closeWriter:
            os.close(writeEnd)
        with open(tmp_path / "spool", "w+b") as spool:
            spooler = StdinSpooler(MemoryReactor(), readEnd, spool)
            spooler.connectionLost(Failure(ConnectionLost()))
            outcomes: list[Any] = []
            spooler.done.addBoth(outcomes.append)
            spool.seek(0)
            assert spool.read() == b"some input"
        if expected is None:
            assert outcomes == [None]
        else:
            assert outcomes[0].value.exitCode == expected
            os.close(writeEnd)
        os.close(readEnd)


@pytest_twisted.ensureDeferred
async def test_put_file_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    """A FIFO that takes a file's place after the walk looked is refused at open, not waited on."""
    from tcplab.cli.files_put import putFile

    os.mkfifo(tmp_path / "f")
    _, commands = buildParser()
    args = commands["put"].parse_intermixed_args(["127.0.0.1:1", str(tmp_path / "f")])
    with pytest.raises(TcplabError) as caught:
        await putFile(Session(reactor(), args), tmp_path / "f", "f")
    assert caught.value.exitCode == ExitCode.LOCAL_FILE
    assert caught.value.message == f"{tmp_path / 'f'} is a FIFO, not a regular file"


# The agreed protocol features end to end: the real client against the real server.


@pytest_twisted.ensureDeferred
async def test_ls_of_a_large_directory_reads_every_page(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """tcplab ls of 1,000 entries (several pages from the real server) lists them all."""
    root = tmp_path / "root"
    (root / "many").mkdir(parents=True)
    for number in range(1000):
        (root / "many" / f"entry-{number:04d}").touch()
    status, out, err = await tcplab(capsys, "ls", await real(loopback, root), "many")
    assert status == 0, err
    assert [line.split()[-1] for line in out.splitlines()] == [
        f"entry-{number:04d}" for number in range(1000)
    ]


@pytest_twisted.ensureDeferred
async def test_get_r_from_a_real_server_skips_its_symlinked_directories(
    loopback: Loopback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A shared tree holding 'again -> .' twice downloads once, the links skipped and said."""
    root = tmp_path / "root"
    (root / "tree").mkdir(parents=True)
    (root / "tree" / "file").write_bytes(b"data")
    (root / "tree" / "again").symlink_to(".")
    (root / "tree" / "also").symlink_to(".")
    out = tmp_path / "out"
    status, _, err = await tcplab(
        capsys, "get", await real(loopback, root), "tree", "-r", "-o", str(out), "--quiet"
    )
    assert status == 0, err
    assert sorted(p.name for p in (out).rglob("*")) == ["file"]
    assert "again" in err and "also" in err


@pytest_twisted.ensureDeferred
async def test_put_of_a_name_being_uploaded_is_busy_then_retried(
    loopback: Loopback,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While a raw client holds an upload of a name, tcplab put of it exits 12; with
    --retries it waits and lands once the holder goes away."""
    from tcplab.files import wire

    root = tmp_path / "root"
    root.mkdir()
    address = await real(loopback, root, writable=True, reactor=reactor())
    port = int(address.rsplit(":", 1)[1])
    local = tmp_path / "report.bin"
    local.write_bytes(os.urandom(50_000))
    holder = await loopback.connect(port)
    request = wire.encode({"op": "put", "path": "report.bin", "size": 10, "overwrite": True})
    holder.transport.write(len(request).to_bytes(4, "big") + request)
    await holder.waitForText(b'"offset":0')
    status, _, err = await tcplab(capsys, "put", address, str(local), "--overwrite")
    assert status == ExitCode.BUSY, err
    assert "busy" in err or "being uploaded" in err
    # Retrying: the holder goes away when the client says it will try again.
    import tcplab.cli.files_session as files_session

    said = files_session.say

    def sayAndRelease(text: str) -> None:
        said(text)
        if "trying again" in text:
            holder.transport.abortConnection()

    monkeypatch.setattr(files_session, "say", sayAndRelease)
    status, _, err = await tcplab(
        capsys, "put", address, str(local), "--overwrite", "--retries", "50"
    )
    assert status == 0, err
    assert "trying again" in err
    assert (root / "report.bin").read_bytes() == local.read_bytes()
