"""
The chat page in a real browser (Playwright driving Debian's Chromium)
against the real twistd: web users chatting with a socket user, text never
becoming HTML, the Origin check, the line protocol's rules, and accounts.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browsing import BROWSER_MARKS, PHONE, TIMEOUT, screenshot
from tests.web.webtools import WebServer

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def chat() -> Iterator[WebServer]:
    """A chat service with a web listener."""
    web = WebServer("tcplab-chat", ["--history", "0"])
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
