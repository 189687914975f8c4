"""
From a URL's path to a name under the served root, refusing what the
protocol refuses.

Twisted splits a request's path at its slashes and then percent-decodes
each segment, so C{%2F} would smuggle a slash into one segment: that is
refused here, and everything else -- C{..} (plain or as C{%2e%2e}),
backslashes, NUL, absolute paths, symlinks leading out -- is refused by the
file service's own L{SafeRoot.resolve} the name is then given to.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from tcplab.files.errors import BadRequest, NotAllowed


def nameFromSegments(segments: Sequence[bytes]) -> str:
    """
    The relative name (``a/b.txt``) the decoded URL C{segments} spell.

    @raise NotAllowed: a segment holds an (encoded) slash.
    @raise BadRequest: a segment is not UTF-8.
    """
    parts: list[str] = []
    for segment in segments:
        if b"/" in segment:
            raise NotAllowed("not allowed: an encoded slash in the path")
        try:
            parts.append(segment.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest("not a valid path (not UTF-8)") from None
    return "/".join(parts)


def nameFromRawPath(rawPath: bytes, prefix: bytes) -> str:
    """
    The name in a raw request path (C{/api/upload/a%20b.txt?size=1}) after
    C{prefix}, decoded segment by segment as Twisted does.

    @raise NotAllowed: see L{nameFromSegments}.
    """
    path = rawPath.split(b"?", 1)[0]
    if not path.startswith(prefix):
        raise BadRequest("not a path this server knows")
    return nameFromSegments([unquote_to_bytes(s) for s in path[len(prefix) :].split(b"/")])
