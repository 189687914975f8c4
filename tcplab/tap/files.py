"""
``twistd -n tcplab-files``: serve a directory over the frame protocol of
docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import ClassVar

from twisted.application.service import IService
from twisted.python import usage

from tcplab.errors import CannotListen
from tcplab.files import FileServerFactory
from tcplab.files.server import DEFAULT_MAX_UPLOADS, DEFAULT_PARTIAL_EXPIRY
from tcplab.files.tutorial import TutorialFactory
from tcplab.metrics import Sample
from tcplab.observe import ConnectionObserver
from tcplab.sending import BULK_READ_SIZE
from tcplab.tap.common import AuthServiceOptions, makeListeningService, superviseWorkers
from tcplab.tap.listening import ListeningService

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
    synopsis = (
        "[--listen ENDPOINT ...] [--root DIR] [--writable] [--max-size BYTES] [--auth ...] "
        "[--tutorial-listen ENDPOINT ...]"
    )
    longdesc = (
        "Serve the files under --root (default: the current directory), read-only "
        "unless --writable: list, stat, get (resumable), put (resumable, crash-safe), "
        "delete, every transfer verified with SHA-256. Default listen address: "
        "tcp:8009:interface=127.0.0.1. --tutorial-listen adds a listener for the socket "
        "tutorials' own downloader and uploader programs."
    )
    optFlags = [
        ["writable", "w", "Allow uploads (put) and deletes."],
        ["no-anonymous", None, "With --auth, refuse even list and get without a login."],
    ]
    optParameters = [
        ["root", "r", ".", "The directory to serve."],
        ["max-size", None, None, "Refuse uploads larger than this (bytes; K/M/G suffixes)."],
        [
            "partial-expiry",
            None,
            DEFAULT_PARTIAL_EXPIRY,
            "Remove an interrupted upload's partial file after this many seconds "
            "untouched (86400 is a day; 0: keep for ever).",
            float,
        ],
        [
            "max-uploads",
            None,
            DEFAULT_MAX_UPLOADS,
            "Uploads held at once, stalled ones included; more are answered busy.",
            int,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["tutorial-listen"] = []
        self["web"] = []

    def opt_web(self, description: str) -> None:
        """Also serve the files web page here (repeatable; off by default): tcp:8081"""
        self["web"].append(description)

    def opt_tutorial_listen(self, description: str) -> None:
        """Also listen here (repeatable) for the tutorials' downloader and uploader."""
        self["tutorial-listen"].append(description)

    def postOptions(self) -> None:
        """Check the root, the size limit, the expiry and the upload limit."""
        super().postOptions()
        if self["partial-expiry"] < 0:
            raise usage.UsageError("--partial-expiry cannot be negative")
        if self["max-uploads"] < 1:
            raise usage.UsageError("--max-uploads must be at least 1")
        if not os.path.isdir(self["root"]):
            raise usage.UsageError(f"--root {self['root']!r} is not a directory")
        if self["max-size"] is not None:
            try:
                self["max-size"] = parseSize(self["max-size"])
            except ValueError:
                raise usage.UsageError(f"--max-size {self['max-size']!r} is not a size") from None


def makeFactory(options: Options) -> FileServerFactory:
    """The file service's factory, as the options describe it."""
    return FileServerFactory(
        options["root"],
        writable=options["writable"],
        maxSize=options["max-size"],
        authenticator=options.authenticator(),
        anonymousReads=not options["no-anonymous"],
        partialExpiry=options["partial-expiry"],
        maxUploads=options["max-uploads"],
    )


def makeService(options: Options) -> IService:
    """The file service for twistd (and its tutorial listener, if asked for)."""
    supervisor = superviseWorkers(options, SERVICE_NAME)
    if supervisor is not None:
        return supervisor
    factory = makeFactory(options)
    settings = options.settings(SERVICE_NAME, readSize=BULK_READ_SIZE, writeDirectly=True)
    service = makeListeningService(settings, factory, metrics=factory.metrics)
    if options["web"]:
        from tcplab.web.tap import addFilesWeb

        addFilesWeb(service, settings, options["web"], factory)
    if not options["tutorial-listen"]:
        return service
    # Its connections are counted apart (a listener label), its transfers
    # with the service's own.
    tutorial = ConnectionObserver(
        TutorialFactory(factory), dataclasses.replace(settings, writeDirectly=False)
    )

    def tutorialConnections() -> list[Sample]:
        samples = tutorial.collectMetrics()
        return [(name, {**labels, "listener": "tutorial"}, v) for name, labels, v in samples]

    factory.metrics.addCollector(tutorialConnections)
    try:
        ListeningService(
            f"{SERVICE_NAME} tutorial",
            options["tutorial-listen"],
            tutorial,
            shutdownTimeout=options["shutdown-timeout"],
            reusePort=settings.workerIndex is not None,
        ).setServiceParent(service)
    except CannotListen as e:
        print(f"{SERVICE_NAME}: {e}", file=sys.stderr)
        raise SystemExit(e.exitCode) from None
    return service
