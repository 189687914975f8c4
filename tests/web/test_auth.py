"""
Accounts on the files page, over TLS against the real twistd: the login
form's API, the session cookie's flags, and what an anonymous visitor may
not do with ``--no-anonymous``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import makeCertificates, tlsListen
from tests.web.webtools import WebServer

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A writable files service, accounts only, with its page served over TLS."""
    base = tmp_path_factory.mktemp("web-auth")
    paths = makeCertificates(base)
    root = base / "root"
    root.mkdir()
    (root / "private.txt").write_bytes(b"for alice")
    context = ssl.create_default_context(cafile=str(paths["ca"]))
    context.check_hostname = False
    web = WebServer(
        "tcplab-files",
        ["--root", str(root), "--writable", "--auth", "memory:alice:secret", "--no-anonymous"],
        web=tlsListen(paths),
        tls=context,
    )
    web.root = root  # type: ignore[attr-defined]
    yield web
    web.stop()


def test_sessionCookieIsSecureUnderTls(server: WebServer) -> None:
    """Over TLS the session cookie is Secure, HttpOnly and SameSite=Strict."""
    page = server.client()
    page.start()
    flags = page.lastCookie.lower()
    assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags


def test_anonymousVisitorMustLogIn(server: WebServer) -> None:
    """With --no-anonymous, listing and downloading need a login (401)."""
    page = server.client()
    session = page.start()
    assert session["auth"] is True and session["user"] is None
    assert page.json("GET", "/api/list/")[0] == 401
    status, _, body = page.request("GET", "/files/private.txt")
    assert status == 401 and b"for alice" not in body


def test_loginNeedsTheTokenAndTheRightPassword(server: WebServer) -> None:
    """A login without the page's token is forbidden, a wrong password is 401."""
    page = server.client()
    page.start()
    credentials = {"user": "alice", "password": "secret"}
    assert page.json("POST", "/api/login", credentials, token=False)[0] == 403
    assert page.json("POST", "/api/login", {"user": "alice", "password": "nope"})[0] == 401


def test_loginStartsANewSessionThatMayUpload(server: WebServer) -> None:
    """A login replaces the session (new cookie and token); then the user lists and uploads."""
    page = server.client()
    page.start()
    before = page.cookie
    status, answer = page.json("POST", "/api/login", {"user": "alice", "password": "secret"})
    assert status == 200 and answer["user"] == "alice"
    assert page.cookie != before
    page.token = answer["token"]
    status, listing = page.json("GET", "/api/list/")
    assert status == 200 and [e["name"] for e in listing["entries"]] == ["private.txt"]
    status, _, _ = page.request("PUT", "/api/upload/mine.txt?size=4", b"mine")
    assert status == 200
    root: Path = server.root  # type: ignore[attr-defined]
    assert (root / "mine.txt").read_bytes() == b"mine"
    status, answer = page.json("POST", "/api/logout")
    assert status == 200 and answer["user"] is None
    page.token = answer["token"]
    assert page.json("GET", "/api/list/")[0] == 401
