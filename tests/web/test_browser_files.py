"""
The files page in a real browser (Playwright driving Debian's Chromium)
against the real twistd: uploads (20 MB, dropped, resumed), downloads,
traversal through the URL, deletes with confirmation, and login over TLS.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import makeCertificates, runTcplab, tlsListen
from tests.web.browsing import BROWSER_MARKS, PHONE, TIMEOUT, screenshot
from tests.web.webtools import WebServer

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served root, beside a file that must stay out of reach."""
    base = tmp_path_factory.mktemp("browser-files")
    (base / "root" / "photos").mkdir(parents=True)
    (base / "secret.txt").write_bytes(b"TOP-SECRET")
    return base / "root"


@pytest.fixture(scope="module")
def files(share: Path) -> Iterator[WebServer]:
    """A writable files service with a web listener."""
    web = WebServer("tcplab-files", ["--root", str(share), "--writable", "--max-size", "64M"])
    yield web
    web.stop()


def openFiles(browser: Any, server: WebServer, hash_: str = "") -> Any:
    """The files page, listing loaded."""
    page = browser.new_page(viewport=PHONE, accept_downloads=True)
    page.set_default_timeout(TIMEOUT)
    page.goto(server.origin + "/" + hash_)
    page.wait_for_selector("#entries tr, #status:has-text('')", state="attached")
    return page


def test_uploadTwentyMegabytesThenGetItWithTcplab(
    browser: Any, files: WebServer, share: Path, tmp_path: Path
) -> None:
    """A 20 MB file uploaded from the page is fetched back intact with `tcplab get`."""
    source = tmp_path / "big.bin"
    data = os.urandom(20 * 1024 * 1024)
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    page = openFiles(browser, files, "#/photos")
    page.set_input_files("#picker", str(source))
    done = page.locator("#uploads li.done")
    done.wait_for(timeout=60_000)
    assert done.get_attribute("data-sha256") == digest
    assert digest in done.inner_text()
    page.locator("#entries a", has_text="big.bin").wait_for()
    copy = tmp_path / "copy.bin"
    result = runTcplab("get", f"127.0.0.1:{files.port}", "photos/big.bin", "-o", str(copy))
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    page.close()


def test_downloadFromThePage(browser: Any, files: WebServer, share: Path, shots: Path) -> None:
    """Clicking a file's link downloads exactly its bytes."""
    (share / "report.txt").write_bytes(b"quarterly numbers\n" * 1000)
    page = openFiles(browser, files)
    link = page.locator("#entries a", has_text="report.txt")
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    saved = info.value.path()
    assert Path(saved).read_bytes() == (share / "report.txt").read_bytes()
    page.close()


def test_interruptedUploadIsResumedByThePage(
    browser: Any, files: WebServer, share: Path, tmp_path: Path, shots: Path
) -> None:
    """After a connection cut mid-upload, the page asks the offset and sends only the rest."""
    data = os.urandom(3 * 1024 * 1024)
    source = tmp_path / "resume.bin"
    source.write_bytes(data)
    client = files.client()
    client.start()
    kept = 1024 * 1024
    with socket.create_connection(("127.0.0.1", files.webPort), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT /api/upload/resume.bin?size={len(data)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{files.webPort}\r\nCookie: {client.cookie}\r\n"
                f"X-Tcplab-Token: {client.token}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:kept]
        )
        for _ in range(500):
            _, probe = client.json("GET", f"/api/upload/resume.bin?size={len(data)}")
            if probe["offset"] == kept:
                break
    assert probe["offset"] == kept
    page = openFiles(browser, files)
    page.set_input_files("#picker", str(source))
    done = page.locator("#uploads li.done")
    done.wait_for()
    assert "resuming at 1.0 MiB" in done.inner_text()
    assert done.get_attribute("data-sha256") == hashlib.sha256(data).hexdigest()
    assert (share / "resume.bin").read_bytes() == data
    page.locator("#entries a", has_text="resume.bin").wait_for()
    screenshot(page, shots, "files")
    page.close()


def test_traversalThroughTheUrlIsRefused(browser: Any, files: WebServer) -> None:
    """Typing an escaping path into the address bar gets 403 and nothing from outside."""
    page = browser.new_page()
    for path in (
        "/files/..%2fsecret.txt",
        "/files/photos%2F..%2F..%2Fsecret.txt",
        "/files/..%5csecret.txt",
        "/api/list/..%2F",
    ):
        response = page.goto(files.origin + path)
        assert response is not None and response.status == 403, path
        assert "TOP-SECRET" not in page.content()
    # The browser itself resolves a plain or %2e-encoded ".." before asking.
    response = page.goto(files.origin + "/files/%2e%2e/secret.txt")
    assert response is not None and response.status == 404
    assert "TOP-SECRET" not in page.content()
    page.close()


def test_deleteAsksForConfirmation(browser: Any, files: WebServer, share: Path) -> None:
    """Delete removes a file only once the confirmation is accepted."""
    (share / "old.log").write_bytes(b"old")
    page = openFiles(browser, files)
    button = page.get_by_role("button", name="Delete old.log")
    page.once("dialog", lambda dialog: dialog.dismiss())
    button.click()
    # Whatever the page would have sent, it sent before this answer comes back.
    page.evaluate("() => fetch('/api/list/').then(r => r.json())")
    assert (share / "old.log").exists()
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    page.locator("#status", has_text="deleted old.log").wait_for()
    assert not (share / "old.log").exists()
    page.close()


def test_filesDroppedOnThePageAreUploaded(browser: Any, files: WebServer, share: Path) -> None:
    """Two files dropped on the page are uploaded, each with its own progress and SHA-256."""
    page = openFiles(browser, files, "#/photos")
    page.locator("#drop").wait_for()
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["first dropped file"], "one.txt"));
        transfer.items.add(new File(["second dropped file"], "two.txt"));
        const drop = document.getElementById("drop");
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    }""")
    done = page.locator("#uploads li.done")
    done.nth(1).wait_for()
    assert done.count() == 2
    assert (share / "photos" / "one.txt").read_bytes() == b"first dropped file"
    digest = hashlib.sha256(b"second dropped file").hexdigest()
    assert done.nth(1).get_attribute("data-sha256") == digest
    page.close()


@pytest.fixture(scope="module")
def accountFiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A files service with accounts only, its page over TLS."""
    base = tmp_path_factory.mktemp("browser-tls")
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


def test_loginFormOverTls(browser: Any, accountFiles: WebServer) -> None:
    """Over TLS, the login form is all an anonymous visitor sees until alice logs in."""
    context = browser.new_context(ignore_https_errors=True, viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(accountFiles.origin + "/")
    page.locator("#login").wait_for()
    assert page.locator("#entries tr").count() == 0
    page.fill("#user", "alice")
    page.fill("#password", "secret")
    page.press("#password", "Enter")
    page.locator("#entries a", has_text="members.txt").wait_for()
    assert page.locator("#who").inner_text() == "logged in as alice"
    assert page.locator("#login").is_hidden()
    context.close()
