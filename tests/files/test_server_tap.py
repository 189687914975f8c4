"""The file service's twistd options and service tree, and its bounded thread work."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import pytest_twisted
from twisted.python import usage

from tcplab.files.errors import Busy
from tcplab.files.server import DEFAULT_MAX_UPLOADS, DEFAULT_PARTIAL_EXPIRY
from tcplab.files.tutorial import TutorialFactory
from tcplab.files.work import ThreadedWork
from tcplab.tap import files as filesTap
from tcplab.tap.listening import ListeningService
from tests.support import reactor


def parse(*args: str) -> filesTap.Options:
    options = filesTap.Options()
    options.parseOptions(list(args))
    return options


def test_defaults(tmp_path: Path) -> None:
    """Partials expire after a day, 256 uploads are held, no tutorial listener by default."""
    options = parse("--root", str(tmp_path))
    assert options["partial-expiry"] == DEFAULT_PARTIAL_EXPIRY == 86400
    assert options["max-uploads"] == DEFAULT_MAX_UPLOADS == 256
    assert options["tutorial-listen"] == []
    factory = filesTap.makeFactory(options)
    assert (factory.partialExpiry, factory.maxUploads) == (86400, 256)
    assert isinstance(filesTap.makeService(options), ListeningService)


def test_options_reach_the_factory(tmp_path: Path) -> None:
    """--partial-expiry and --max-uploads configure the factory; bad values are usage errors."""
    options = parse("--root", str(tmp_path), "--partial-expiry", "60", "--max-uploads", "3")
    factory = filesTap.makeFactory(options)
    assert (factory.partialExpiry, factory.maxUploads) == (60, 3)
    for bad in (["--partial-expiry", "-1"], ["--max-uploads", "0"], ["--max-uploads", "x"]):
        with pytest.raises(usage.UsageError):
            parse("--root", str(tmp_path), *bad)


def test_tutorial_listen_adds_a_listening_service(tmp_path: Path) -> None:
    """Each --tutorial-listen is one more address of a tutorial listener beside the main one."""
    options = parse(
        "--root",
        str(tmp_path),
        "--tutorial-listen",
        "tcp:0:interface=127.0.0.1",
        "--tutorial-listen",
        "tcp:0:interface=127.0.0.2",
    )
    main = filesTap.makeService(options)
    assert isinstance(main, ListeningService)
    [tutorial] = [c for c in main if isinstance(c, ListeningService)]
    assert [e.description for e in tutorial.endpoints] == options["tutorial-listen"]
    assert isinstance(tutorial.factory.wrappedFactory, TutorialFactory)  # type: ignore[attr-defined]
    assert tutorial.factory.wrappedFactory.files is main.factory.wrappedFactory  # type: ignore[attr-defined]


def test_bad_tutorial_endpoint_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed --tutorial-listen stops start-up with the cannot-listen status."""
    options = parse("--root", str(tmp_path), "--tutorial-listen", "nonsense:1")
    with pytest.raises(SystemExit) as exited:
        filesTap.makeService(options)
    assert exited.value.code == 10
    assert "nonsense:1" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_thread_work_is_bounded() -> None:
    """Jobs run in threads; beyond maxPending queued ones a new job is refused as busy."""
    work = ThreadedWork(reactor(), maxThreads=1, maxPending=2)
    release = threading.Event()
    first = work.run(lambda: release.wait(10) and threading.get_ident())
    second = work.run(lambda: 2)
    with pytest.raises(Busy):
        work.run(lambda: 3)
    release.set()
    assert await first != threading.get_ident()
    assert await second == 2
    assert work.pending == 0
    assert await work.run(lambda: 4) == 4
