"""
The chat page in a real Firefox (Debian's firefox-esr over Marionette)
against the real twistd: a web user and a raw-socket user in one room, and
HTML in a message shown as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browsing import SAVED
from tests.web.firefox import ENTER, FIREFOX_MARKS
from tests.web.test_browser_chat import LineClient
from tests.web.webtools import WebServer

pytestmark = FIREFOX_MARKS


@pytest.fixture(scope="module")
def chat() -> Iterator[WebServer]:
    """A chat service with a web listener."""
    web = WebServer("tcplab-chat", ["--history", "0"])
    yield web
    web.stop()


def joinChat(firefox: Any, server: WebServer, nick: str) -> None:
    """Load the chat page and join as C{nick}, with the keyboard only."""
    firefox.open(server.origin + "/")
    firefox.waitForText("#status", "ready")
    firefox.find("#nick").send_keys(nick + ENTER)
    firefox.waitForText("#log li", f"is now known as {nick}")


def say(firefox: Any, text: str) -> None:
    """Type a line in the message box and send it with Enter."""
    firefox.find("#line").send_keys(text + ENTER)


def test_firefoxPageAndSocketChatInOneRoom(firefox: Any, chat: WebServer, shots: Path) -> None:
    """In Firefox, the page and a raw-socket client in one room each see the other's line.

    Firefox logs no page error and no CSP refusal on the way.
    """
    sock = LineClient(chat.port)
    try:
        sock.send("/nick sockuser")
        sock.waitFor("Welcome")
        joinChat(firefox, chat, "fox")
        sock.waitFor("fox joined")
        say(firefox, "hello from firefox")
        assert "<fox> hello from firefox" in sock.waitFor("hello from firefox")
        sock.send("hello from the socket")
        firefox.waitForText("#log li", "hello from the socket")
        shown = firefox.texts("#log li")
        assert "<fox> hello from firefox" in shown
        assert "<sockuser> hello from the socket" in shown
        assert shown.index("<fox> hello from firefox") < shown.index(
            "<sockuser> hello from the socket"
        )
        path = shots / "firefox-chat.png"
        firefox.screenshot(path)
        print(f"screenshot of the chat page in Firefox: {path}")
        SAVED.append(path)
        assert firefox.consoleProblems(chat.origin) == []
    finally:
        sock.close()


def test_firefoxShowsHtmlInAMessageAsText(firefox: Any, chat: WebServer) -> None:
    """In Firefox, a message full of HTML is shown as its characters; no element is made of it."""
    joinChat(firefox, chat, "carol")
    sock = LineClient(chat.port)
    try:
        sock.send("/nick mallory")
        firefox.waitForText("#log li", "mallory joined")
        evil = '<img src=x onerror="document.title=1"><b id="pwned">bold</b>'
        sock.send(evil)
        assert firefox.waitForText("#log li", "pwned") == f"<mallory> {evil}"
        made = firefox.run("return document.querySelectorAll('#log img, #log b, #pwned').length")
        assert made == 0
        assert firefox.run("return document.title") == "tcplab chat"
        assert firefox.consoleProblems(chat.origin) == []
    finally:
        sock.close()
