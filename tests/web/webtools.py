"""
Helpers for the web tests: a real twistd with C{--web}, and a plain HTTP
client (C{http.client}) that keeps a cookie and the page's token as a
browser's page would.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
from collections.abc import Sequence
from typing import Any

from tests.support import ServerProcess

WEB_LISTENING = re.compile(r"web listening on 127\.0\.0\.1:(\d+)")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browserBinary() -> str | None:
    """The path of an installed Chromium, if any."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class WebServer:
    """A real twistd service with one C{--web} listener on loopback."""

    def __init__(
        self,
        plugin: str,
        args: Sequence[str] = (),
        web: str = "tcp:0:interface=127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = ServerProcess(plugin, ["--web", web, *args])
        self.port = self.server.port
        self.webPort = int(self.server.waitForLine(WEB_LISTENING).group(1))
        self.tls = tls
        scheme = "https" if tls is not None else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.webPort}"

    def stop(self) -> int:
        """Stop the server; return its exit status."""
        return self.server.stop()

    def client(self) -> Page:
        """A new client with its own session."""
        return Page(self.webPort, self.tls)


class Page:
    """What a page's JavaScript does over HTTP: one session cookie, one token."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls
        self.cookie: str | None = None
        self.token = ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; return the status, the headers (lower-case) and the body."""
        self.lastCookie = ""
        connection: http.client.HTTPConnection
        if self.tls is not None:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=30, context=self.tls
            )
            sent = {"Origin": f"https://127.0.0.1:{self.port}"}
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            sent = {"Origin": f"http://127.0.0.1:{self.port}"}
        if self.cookie:
            sent["Cookie"] = self.cookie
        if token and self.token:
            sent["X-Tcplab-Token"] = self.token
        sent.update(headers or {})
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            found = {k.lower(): v for k, v in response.getheaders()}
            cookie = response.getheader("set-cookie")
            if cookie:
                self.lastCookie = cookie
                self.cookie = cookie.split(";", 1)[0]
            return response.status, found, data
        finally:
            connection.close()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """A request whose answer is JSON."""
        data = None if body is None else json.dumps(body).encode()
        status, _, answer = self.request(method, path, data, **kw)
        return status, json.loads(answer)

    def start(self) -> dict[str, Any]:
        """Load the session as the page does (cookie and token)."""
        status, session = self.json("GET", "/api/session")
        assert status == 200, session
        self.token = session["token"]
        return dict(session)
