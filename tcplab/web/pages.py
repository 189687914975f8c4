"""
The static side of the pages: the HTML, CSS and JavaScript shipped in
C{tcplab/web/static/}, small JSON answers, and the root that puts a page's
resources together.

The assets are a fixed set read from the package once: nothing else on disk
is reachable through them, and there is no directory listing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources

from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
}


def asset(name: str) -> bytes:
    """The contents of one file of C{tcplab/web/static/}."""
    return resources.files("tcplab.web").joinpath("static").joinpath(name).read_bytes()


def jsonResponse(request: Request, document: object, status: int = http.OK) -> bytes:
    """Answer with a JSON document (never cached)."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8")


def jsonError(request: Request, status: int, message: str, **extra: object) -> bytes:
    """Answer with a JSON error: C{{"ok": false, "error": message}}."""
    return jsonResponse(request, {"ok": False, "error": message, **extra}, status)


class Asset(Resource):
    """One static file, served from memory."""

    isLeaf = True

    def __init__(self, name: str) -> None:
        super().__init__()
        self.body = asset(name)
        suffix = name[name.rfind(".") :]
        self.contentType = CONTENT_TYPES.get(suffix, b"application/octet-stream")

    def render_GET(self, request: Request) -> bytes:
        """The file, revalidated on each visit."""
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        return self.body

    def render_HEAD(self, request: Request) -> bytes:
        """As GET, without the body (twisted.web drops it)."""
        return self.render_GET(request)


class InfoResource(Resource):
    """A fixed JSON document about the service (what the page should offer)."""

    isLeaf = True

    def __init__(self, info: Mapping[str, object]) -> None:
        super().__init__()
        self.info = info

    def render_GET(self, request: Request) -> bytes:
        """The document."""
        return jsonResponse(request, self.info)


class PageRoot(Resource):
    """
    A page's root: C{/} is its HTML, C{/static/NAME} its assets, and the
    children of C{api} (its own resources) everything else.
    """

    def __init__(self, page: str, assets: list[str], api: Resource) -> None:
        super().__init__()
        self.page = Asset(page)
        static = Resource()
        for name in assets:
            static.putChild(name.encode("ascii"), Asset(name))
        self.putChild(b"static", static)
        for name, child in api.children.items():
            self.putChild(name, child)

    def getChild(self, path: bytes, request: Request) -> IResource:
        """C{/} (and C{/index.html}) is the page; anything unknown is 404."""
        if path in (b"", b"index.html"):
            return self.page
        return notFound()
