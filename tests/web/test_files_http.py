"""
The files page's HTTP side against the real twistd (``--web``): confinement,
downloads with ranges, streamed and resumable uploads through the file
service's storage, deletes, and the checks against cross-site requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import recvExactly
from tests.web.webtools import WebServer

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A served root with a file, a subdirectory and a symlink leading out."""
    base = tmp_path_factory.mktemp("web-files")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello, web\n")
    (root / "page.html").write_bytes(b"<script>alert(1)</script>")
    (base / "secret.txt").write_bytes(b"TOP-SECRET\n")
    os.symlink(base / "secret.txt", root / "escape.txt")
    return root


@pytest.fixture(scope="module")
def server(share: Path) -> Iterator[WebServer]:
    """A writable files service with a web listener and a 1 MiB upload limit."""
    web = WebServer("tcplab-files", ["--root", str(share), "--writable", "--max-size", "1M"])
    yield web
    web.stop()


def test_everyResponseCarriesTheSecurityHeaders(server: WebServer) -> None:
    """The page, its assets and the API all carry a strict CSP, nosniff and no-referrer."""
    page = server.client()
    for path in ("/", "/static/files.js", "/api/session", "/nowhere"):
        _, headers, _ = page.request("GET", path)
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_sessionCookieIsHttpOnlyAndStrict(server: WebServer) -> None:
    """The session cookie is HttpOnly and SameSite=Strict (not Secure over plain HTTP)."""
    page = server.client()
    _, headers, _ = page.request("GET", "/api/session")
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


@pytest.mark.parametrize(
    "path",
    [
        "/files/%2e%2e/secret.txt",
        "/files/..%2Fsecret.txt",
        "/files/sub%2F..%2F..%2Fsecret.txt",
        "/files/..%5Csecret.txt",
        "/files/hello.txt%00.png",
        "/files/escape.txt",
        "/api/list/%2e%2e",
    ],
)
def test_traversalIsRefused(server: WebServer, path: str) -> None:
    """Encoded .., encoded slashes, backslashes, NUL and symlinks out are all refused."""
    status, _, body = server.client().request("GET", path)
    assert status == 403, body
    assert b"TOP-SECRET" not in body


def test_downloadHonoursRanges(server: WebServer) -> None:
    """A download resumes from a Range (206), as browsers and curl -C - ask."""
    page = server.client()
    status, headers, body = page.request("GET", "/files/hello.txt")
    assert (status, body) == (200, b"hello, web\n")
    assert headers["content-disposition"].startswith("attachment")
    status, headers, body = page.request("GET", "/files/hello.txt", headers={"Range": "bytes=7-"})
    assert (status, body, headers["content-range"]) == (206, b"web\n", "bytes 7-10/11")


def test_servedFilesAreInertAttachments(server: WebServer) -> None:
    """An uploaded HTML file is sent as an octet-stream attachment in a sandbox."""
    _, headers, _ = server.client().request("GET", "/files/page.html")
    assert headers["content-type"] == "application/octet-stream"
    assert "sandbox" in headers["content-security-policy"]


def test_listingShowsEntries(server: WebServer) -> None:
    """The listing API names the root's entries; a link out shows as other."""
    status, listing = server.client().json("GET", "/api/list/")
    assert status == 200
    kinds = {entry["name"]: entry["type"] for entry in listing["entries"]}
    assert kinds["hello.txt"] == "file" and kinds["sub"] == "dir"
    assert kinds["escape.txt"] == "other"


def test_uploadNeedsTheSessionToken(server: WebServer, share: Path) -> None:
    """A PUT without the page's token, or from another origin, is refused and stores nothing."""
    page = server.client()
    page.start()
    status, _, _ = page.request("PUT", "/api/upload/x.bin?size=3", b"abc", token=False)
    assert status == 403
    status, _, _ = page.request(
        "PUT", "/api/upload/x.bin?size=3", b"abc", headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    assert not (share / "x.bin").exists()


def test_uploadStoresAndReturnsTheSha256(server: WebServer, share: Path) -> None:
    """An upload is stored under its name and answered with the SHA-256 of what was stored."""
    page = server.client()
    page.start()
    data = os.urandom(300_000)
    status, _, body = page.request("PUT", "/api/upload/sub/new.bin?size=300000", data)
    answer = json.loads(body)
    assert status == 200, answer
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert (share / "sub" / "new.bin").read_bytes() == data
    status, _, body = page.request("PUT", "/api/upload/sub/new.bin?size=3", b"abc")
    assert status == 409  # the overwrite guard
    assert (share / "sub" / "new.bin").read_bytes() == data


def test_oversizedUploadIsRefusedBeforeItsBody(server: WebServer, share: Path) -> None:
    """A Content-Length over --max-size is answered 413 without a byte of body being sent."""
    page = server.client()
    page.start()
    with socket.create_connection(("127.0.0.1", server.webPort), timeout=10) as sock:
        size = 5 * 1024 * 1024
        sock.sendall(
            (
                f"PUT /api/upload/big.bin?size={size} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.webPort}\r\n"
                f"Cookie: {page.cookie}\r\nX-Tcplab-Token: {page.token}\r\n"
                f"Content-Length: {size}\r\n\r\n"
            ).encode()
        )
        head = recvExactly(sock, 12)
        assert head == b"HTTP/1.1 413"
    assert not (share / "big.bin").exists()


def test_interruptedUploadResumes(server: WebServer, share: Path) -> None:
    """A body cut midway keeps its partial; the offset query and the rest complete it."""
    page = server.client()
    page.start()
    data = os.urandom(200_000)
    with socket.create_connection(("127.0.0.1", server.webPort), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT /api/upload/resumed.bin?size={len(data)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.webPort}\r\nCookie: {page.cookie}\r\n"
                f"X-Tcplab-Token: {page.token}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:120_000]
        )
        # The offset query answers once the server has written what it got.
        for _ in range(200):
            status, probe = page.json("GET", f"/api/upload/resumed.bin?size={len(data)}")
            if probe["offset"] == 120_000:
                break
    assert probe["offset"] == 120_000 and not probe["exists"]
    status, _, body = page.request("PUT", "/api/upload/resumed.bin?size=200000&offset=1", b"x")
    assert status == 409 and json.loads(body)["offset"] == 120_000
    status, _, body = page.request(
        "PUT",
        "/api/upload/resumed.bin",
        data[120_000:],
        headers={"Content-Range": f"bytes 120000-{len(data) - 1}/{len(data)}"},
    )
    assert status == 200, body
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    assert (share / "resumed.bin").read_bytes() == data
    assert not [p for p in os.listdir(share) if p.endswith(".tcplab-partial")]


def test_deleteNeedsTheTokenAndRemoves(server: WebServer, share: Path) -> None:
    """DELETE without the token is refused; with it, the file is gone."""
    (share / "doomed.txt").write_bytes(b"bye")
    page = server.client()
    page.start()
    status, _, _ = page.request("DELETE", "/files/doomed.txt", token=False)
    assert status == 403 and (share / "doomed.txt").exists()
    status, _, _ = page.request("DELETE", "/files/doomed.txt")
    assert status == 200 and not (share / "doomed.txt").exists()


def test_readOnlyServerRefusesUploads(tmp_path: Path) -> None:
    """Without --writable the upload and delete APIs answer 403 and the page hides them."""
    (tmp_path / "keep.txt").write_bytes(b"keep")
    web = WebServer("tcplab-files", ["--root", str(tmp_path)])
    try:
        page = web.client()
        assert page.start()["writable"] is False
        status, _, _ = page.request("PUT", "/api/upload/a.txt?size=1", b"a")
        assert status == 403
        status, _, _ = page.request("DELETE", "/files/keep.txt")
        assert status == 403 and (tmp_path / "keep.txt").exists()
    finally:
        web.stop()


def test_bodiesOutsideUploadsAreBounded(server: WebServer) -> None:
    """A login body over 64 KiB, announced or chunked, is refused with 413 instead of kept."""
    page = server.client()
    page.start()
    status, _, _ = page.request("POST", "/api/login", b"x" * (65 * 1024))
    assert status == 413
    with socket.create_connection(("127.0.0.1", server.webPort), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{server.webPort}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"%x\r\n%s\r\n" % (32 * 1024, b"x" * 32 * 1024)
        with contextlib.suppress(OSError):
            for _ in range(4):
                sock.sendall(chunk)
        assert sock.recv(12) == b"HTTP/1.1 413"
