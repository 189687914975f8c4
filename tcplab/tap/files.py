"""
``twistd -n tcplab-files``: serve a directory over the frame protocol of
docs/protocol.md.
"""

from __future__ import annotations

import os
from typing import ClassVar

from twisted.application.service import IService
from twisted.python import usage

from tcplab.files import FileServerFactory
from tcplab.sending import BULK_READ_SIZE
from tcplab.tap.common import AuthServiceOptions, makeListeningService

SERVICE_NAME = "tcplab-files"


def parseSize(value: str) -> int:
    """A byte count, optionally with a K, M, G or T suffix (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(text[-1:], 1)
    number = int(text[:-1] if factor != 1 else text)
    if number < 0:
        raise ValueError("a size cannot be negative")
    return number * factor


class Options(AuthServiceOptions):
    """Command-line options of ``twistd tcplab-files``."""

    defaultListen: ClassVar[str] = "tcp:8009:interface=127.0.0.1"
    synopsis = "[--listen ENDPOINT ...] [--root DIR] [--writable] [--max-size BYTES] [--auth ...]"
    longdesc = (
        "Serve the files under --root (default: the current directory), read-only "
        "unless --writable: list, stat, get (resumable), put (resumable, crash-safe), "
        "delete, every transfer verified with SHA-256. Default listen address: "
        "tcp:8009:interface=127.0.0.1."
    )
    optFlags = [
        ["writable", "w", "Allow uploads (put) and deletes."],
        ["no-anonymous", None, "With --auth, refuse even list and get without a login."],
    ]
    optParameters = [
        ["root", "r", ".", "The directory to serve."],
        ["max-size", None, None, "Refuse uploads larger than this (bytes; K/M/G suffixes)."],
    ]

    def postOptions(self) -> None:
        """Check the root and the size limit."""
        super().postOptions()
        if not os.path.isdir(self["root"]):
            raise usage.UsageError(f"--root {self['root']!r} is not a directory")
        if self["max-size"] is not None:
            try:
                self["max-size"] = parseSize(self["max-size"])
            except ValueError:
                raise usage.UsageError(f"--max-size {self['max-size']!r} is not a size") from None


def makeService(options: Options) -> IService:
    """The file service for twistd."""
    factory = FileServerFactory(
        options["root"],
        writable=options["writable"],
        maxSize=options["max-size"],
        authenticator=options.authenticator(),
        anonymousReads=not options["no-anonymous"],
    )
    settings = options.settings(SERVICE_NAME, readSize=BULK_READ_SIZE, writeDirectly=True)
    return makeListeningService(settings, factory, metrics=factory.metrics)
