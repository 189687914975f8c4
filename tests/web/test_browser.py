"""
The pages in a real browser: Playwright driving Debian's Chromium against
the real twistd.  Skipped, with the reason shown, only where no Chromium
binary is installed (``.ci/run`` installs one).  Each page's screenshot is
saved under the pytest temporary directory and its path printed; with
``TCPLAB_SCREENSHOTS=DIR`` set they are also written there (``docs/img``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import makeCertificates, runTcplab, tlsListen
from tests.web.webtools import WebServer, browserBinary

CHROMIUM = browserBinary()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.subprocess,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium binary: apt-get install chromium (.ci/run does)"
    ),
]
PHONE = {"width": 390, "height": 760}
TIMEOUT = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this run's screenshots go."""
    return tmp_path_factory.mktemp("screenshots")


def screenshot(page: Any, shots: Path, name: str) -> None:
    """Save a screenshot of the page (and into $TCPLAB_SCREENSHOTS when set)."""
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot of the {name} page: {path}")
    extra = os.environ.get("TCPLAB_SCREENSHOTS")
    if extra:
        page.screenshot(path=str(Path(extra) / f"{name}.png"))


@pytest.fixture(scope="module")
def chat() -> Iterator[WebServer]:
    """A chat service with a web listener."""
    web = WebServer("tcplab-chat", ["--history", "0"])
    yield web
    web.stop()


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


class LineClient:
    """A raw-socket chat client, as nc would be."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT / 1000)
        self.buffer = b""

    def send(self, line: str) -> None:
        """Send one line."""
        self.sock.sendall(line.encode() + b"\r\n")

    def waitFor(self, text: str) -> list[str]:
        """Read lines until one holds C{text}; return every line read so far."""
        while text.encode() not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed before {text!r}: {self.buffer!r}"
            self.buffer += chunk
        return self.buffer.decode().split("\r\n")

    def close(self) -> None:
        """Hang up."""
        self.sock.close()


def logLines(page: Any) -> list[str]:
    """The chat lines a page shows, as text."""
    return [str(t) for t in page.locator("#log li").all_text_contents()]


def joinChat(browser: Any, server: WebServer, nick: str) -> Any:
    """A new page that joined the chat as C{nick}."""
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(TIMEOUT)
    page.goto(server.origin + "/")
    page.fill("#nick", nick)
    page.press("#nick", "Enter")  # keyboard only
    page.wait_for_selector("#line")
    page.locator("#log li", has_text="Welcome").wait_for()
    return page


def say(page: Any, text: str) -> None:
    """Type a line and send it with Enter."""
    page.fill("#line", text)
    page.press("#line", "Enter")


def test_twoPagesAndASocketChatInOneRoom(browser: Any, chat: WebServer, shots: Path) -> None:
    """Two browser pages and a raw-socket client each see the others' lines, in order."""
    sock = LineClient(chat.port)
    sock.send("/nick sockuser")
    alice = joinChat(browser, chat, "alice")
    bob = joinChat(browser, chat, "bob")
    sock.waitFor("bob joined")
    alice.locator("#log li", has_text="bob joined").wait_for()
    say(alice, "one from alice")
    bob.locator("#log li", has_text="one from alice").wait_for()
    say(bob, "two from bob")
    alice.locator("#log li", has_text="two from bob").wait_for()
    sock.send("three from the socket")
    for page in (alice, bob):
        page.locator("#log li", has_text="three from the socket").wait_for()
    lines = sock.waitFor("two from bob")
    assert lines.index("<alice> one from alice") < lines.index("<bob> two from bob")
    for page in (alice, bob):
        shown = logLines(page)
        order = [
            next(i for i, line in enumerate(shown) if text in line)
            for text in ("one from alice", "two from bob", "three from the socket")
        ]
        assert order == sorted(order), shown
        assert "<sockuser> three from the socket" in shown
    screenshot(alice, shots, "chat")
    sock.close()
    alice.close()
    bob.close()


def test_htmlInAMessageRendersAsText(browser: Any, chat: WebServer) -> None:
    """A message full of HTML is shown as its characters; no element is made of it."""
    page = joinChat(browser, chat, "carol")
    sock = LineClient(chat.port)
    sock.send("/nick mallory")
    page.locator("#log li", has_text="mallory").first.wait_for()
    evil = '<img src=x onerror="document.title=1"><b id="pwned">bold</b>'
    sock.send(evil)
    page.locator("#log li", has_text="pwned").wait_for()
    assert f"<mallory> {evil}" in logLines(page)
    assert page.locator("#log img, #log b, #pwned").count() == 0
    assert page.title() == "tcplab chat"
    sock.close()
    page.close()


@contextlib.contextmanager
def otherSite() -> Iterator[str]:
    """A plain page served on loopback: another origin, as a hostile site would be."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><p>elsewhere</p>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_chatSocketRefusesAnotherOrigin(browser: Any, chat: WebServer) -> None:
    """A page from another origin cannot open the chat's WebSocket (403 at the handshake)."""
    page = browser.new_page()
    # A page of another origin on this machine, without our CSP (which would
    # stop it in the browser before the server is asked).
    script = """url => new Promise(done => {
        const ws = new WebSocket(url);
        ws.onopen = () => done("open");
        ws.onerror = () => done("refused");
    })"""
    with otherSite() as elsewhere:
        page.goto(elsewhere)
        assert page.evaluate(script, f"ws://127.0.0.1:{chat.webPort}/ws") == "refused"
    page.goto(chat.origin + "/")  # our own page may (connect-src 'self')
    assert page.evaluate(script, f"ws://127.0.0.1:{chat.webPort}/ws") == "open"
    page.close()


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


def test_webMemberHasTheLineProtocolsRules(browser: Any, chat: WebServer) -> None:
    """Over the page's socket, an over-long line is refused and a flood is slowed, as over nc."""
    page = joinChat(browser, chat, "dave")
    page.evaluate("""() => {
        const line = document.getElementById("line");
        const form = document.getElementById("say");
        line.removeAttribute("maxlength");
        line.value = "x".repeat(600);
        form.requestSubmit();
    }""")
    page.locator("#log li", has_text="line too long (600 bytes, at most 512)").wait_for()
    page.evaluate("""() => {
        const line = document.getElementById("line");
        const form = document.getElementById("say");
        for (let i = 0; i < 20; i++) { line.value = "spam " + i; form.requestSubmit(); }
    }""")
    page.locator("#log li", has_text="slow down").wait_for()
    say(page, "/who")
    page.locator("#log li", has_text="dave").last.wait_for()
    page.close()


@pytest.fixture(scope="module")
def accountChat() -> Iterator[WebServer]:
    """A chat service where the nickname alice is an account."""
    web = WebServer("tcplab-chat", ["--auth", "memory:alice:secret"])
    yield web
    web.stop()


def test_registeredNickAsksForThePassword(browser: Any, accountChat: WebServer) -> None:
    """With --auth the page asks for a password, and only the right one gets the nickname."""
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(TIMEOUT)
    page.goto(accountChat.origin + "/")
    page.locator("#password").wait_for()
    page.fill("#nick", "alice")
    page.fill("#password", "wrong")
    page.press("#password", "Enter")
    page.locator("#log li", has_text="wrong password for alice").wait_for()
    page.close()
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(TIMEOUT)
    page.goto(accountChat.origin + "/")
    page.locator("#password").wait_for()
    page.fill("#nick", "alice")
    page.fill("#password", "secret")
    page.press("#password", "Enter")
    page.locator("#log li", has_text="is now known as alice").wait_for()
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
