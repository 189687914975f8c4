"""
The files page in a real Firefox (Debian's firefox-esr over Marionette)
against the real twistd: a directory listed, a file uploaded with the page's
file input and its SHA-256 shown, a file downloaded by its link, and the
login form over TLS.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import makeCertificates, tlsListen
from tests.web.browsing import SAVED
from tests.web.firefox import ENTER, FIREFOX_MARKS, waitUntil
from tests.web.webtools import WebServer

pytestmark = FIREFOX_MARKS


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served root, with a directory of files in it."""
    root = tmp_path_factory.mktemp("firefox-files") / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.txt").write_bytes(b"notes\n")
    (root / "docs" / "deeper").mkdir()
    (root / "report.txt").write_bytes(b"quarterly numbers\n" * 1000)
    return root


@pytest.fixture(scope="module")
def files(share: Path) -> Iterator[WebServer]:
    """A writable files service with a web listener."""
    web = WebServer("tcplab-files", ["--root", str(share), "--writable", "--max-size", "1M"])
    yield web
    web.stop()


def listed(firefox: Any) -> list[str]:
    """The names the page lists, as shown."""
    return list(firefox.texts("#entries td:first-child"))


def test_firefoxListsADirectory(firefox: Any, files: WebServer) -> None:
    """In Firefox, the page lists the root and then a directory it links to, without errors."""
    firefox.open(files.origin + "/")
    firefox.waitForText("#entries a", "report.txt")
    assert sorted(listed(firefox)) == ["docs/", "report.txt"]
    firefox.find("#entries a[href='#/docs']").click()
    firefox.waitForText("#entries a", "notes.txt")
    assert sorted(listed(firefox)) == ["deeper/", "notes.txt"]
    assert firefox.texts("#crumbs a") == ["/", "docs/"]
    assert firefox.consoleProblems(files.origin) == []


def test_firefoxUploadsWithTheFileInput(
    firefox: Any, files: WebServer, share: Path, tmp_path: Path, shots: Path
) -> None:
    """In Firefox, a file chosen in the page's file input lands on disk, its SHA-256 shown."""
    data = b"sent from Firefox\n" * 500
    source = tmp_path / "from-firefox.txt"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    firefox.open(files.origin + "/#/docs")
    firefox.waitForText("#entries a", "notes.txt")
    firefox.find("#picker").send_keys(str(source))
    shown = firefox.waitForText("#uploads li.done", digest)
    assert f"done, SHA-256 {digest}" in shown
    assert firefox.run("return document.querySelector('#uploads li.done').dataset.sha256") == (
        digest
    )
    assert (share / "docs" / "from-firefox.txt").read_bytes() == data
    firefox.waitForText("#entries a", "from-firefox.txt")
    path = shots / "firefox-files.png"
    firefox.screenshot(path)
    print(f"screenshot of the files page in Firefox: {path}")
    SAVED.append(path)
    assert firefox.consoleProblems(files.origin) == []


def test_firefoxDownloadsByTheLink(firefox: Any, files: WebServer, share: Path) -> None:
    """In Firefox, clicking a file's link saves exactly its bytes in the downloads directory."""
    firefox.open(files.origin + "/")
    firefox.find("#entries a[download='report.txt']").click()
    saved = firefox.downloads / "report.txt"
    expected = (share / "report.txt").read_bytes()
    # Firefox writes the file under its name while it downloads: wait for all of it.
    waitUntil(
        lambda: saved.exists() and saved.stat().st_size == len(expected),
        f"{saved} with {len(expected)} bytes",
    )
    assert saved.read_bytes() == expected
    assert firefox.consoleProblems(files.origin) == []


@pytest.fixture(scope="module")
def accountFiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A files service with accounts only, its page over TLS (a throw-away CA)."""
    base = tmp_path_factory.mktemp("firefox-tls")
    paths = makeCertificates(base)
    (base / "root").mkdir()
    (base / "root" / "members.txt").write_bytes(b"members only")
    web = WebServer(
        "tcplab-files",
        ["--root", str(base / "root"), "--auth", "memory:alice:secret", "--no-anonymous"],
        web=tlsListen(paths),
        tls=ssl.create_default_context(cafile=str(paths["ca"])),
    )
    yield web
    web.stop()


def test_firefoxLogsInOverTls(firefox: Any, accountFiles: WebServer) -> None:
    """In Firefox over TLS, the login form is all a visitor sees until alice logs in.

    The session cookie stays out of the page's reach (HttpOnly).
    """
    firefox.open(accountFiles.origin + "/")
    firefox.waitForText("#status", "log in to see the files")
    assert firefox.run("return document.getElementById('login').hidden") is False
    assert firefox.texts("#entries tr") == []
    firefox.find("#user").send_keys("alice")
    firefox.find("#password").send_keys("secret" + ENTER)
    firefox.waitForText("#entries a", "members.txt")
    assert firefox.texts("#who") == ["logged in as alice"]
    assert firefox.run("return document.getElementById('login').hidden") is True
    assert firefox.run("return document.cookie") == ""
    assert firefox.consoleProblems(accountFiles.origin) == []
