"""
``twistd -n tcplab-chat``: the multi-user chat.

See L{tcplab.chat} for the hub and the protocol, docs/chat.md for the wire.
"""

from __future__ import annotations

import sys
from typing import ClassVar

from twisted.application.service import IService
from twisted.python import usage

from tcplab.chat import ChatFactory, ChatHub
from tcplab.chat.chatlog import ChatLogService, checkWritable
from tcplab.chat.hub import (
    DEFAULT_ANNOUNCE_LIMIT,
    DEFAULT_HISTORY,
    DEFAULT_MAX_ROOMS,
    DEFAULT_ROOM_EXPIRY,
)
from tcplab.chat.protocol import FLOOD_BURST, FLOOD_RATE, MAX_LINE, MAX_PENDING
from tcplab.errors import CannotListen
from tcplab.tap.common import (
    AuthServiceOptions,
    exitCannotListen,
    makeListeningService,
    superviseWorkers,
)

SERVICE_NAME = "tcplab-chat"
DEFAULT_PER_IP = 5


class Options(AuthServiceOptions):
    """Command-line options of ``twistd tcplab-chat``."""

    defaultListen: ClassVar[str] = "tcp:8008:interface=127.0.0.1"
    defaultIdleTimeout: ClassVar[float] = 3600.0
    synopsis = "[--listen ENDPOINT ...] [--history N] [--chat-log FILE] [--auth ...]"
    longdesc = (
        "A multi-user line chat for nc, telnet and 'tcplab chat', safe against "
        "hostile clients. Default listen address: tcp:8008:interface=127.0.0.1; "
        f"at most {DEFAULT_PER_IP} connections per address unless --max-per-ip says otherwise."
    )
    optParameters = [
        ["history", None, DEFAULT_HISTORY, "Messages a newcomer to a room sees (0: none).", int],
        [
            "announce-limit",
            None,
            DEFAULT_ANNOUNCE_LIMIT,
            "Rooms with more members hear no join/leave notices (0: always announce).",
            int,
        ],
        [
            "max-rooms",
            None,
            DEFAULT_MAX_ROOMS,
            "Rooms that may exist at once; a new one past it is refused (0: no limit).",
            int,
        ],
        [
            "room-expiry",
            None,
            DEFAULT_ROOM_EXPIRY,
            "Seconds an empty room keeps its history before it is freed (0: at once).",
            float,
        ],
        ["chat-log", None, None, "Append every message (time, room, nick) to this file."],
        ["max-line", None, MAX_LINE, "Longest line in bytes; longer ones are refused.", int],
        ["flood-rate", None, FLOOD_RATE, "Lines per second per client (0: no limit).", float],
        ["flood-burst", None, FLOOD_BURST, "Lines a client may send at once.", float],
        [
            "max-pending",
            None,
            MAX_PENDING,
            "Bytes queued for a client that stopped reading before it is disconnected.",
            int,
        ],
        [
            "cluster",
            None,
            None,
            "Share rooms, nicknames and history with other nodes through Redis: "
            "redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss:// (TLS).",
        ],
        [
            "cluster-ttl",
            None,
            5.0,
            "Seconds after which the users of a node that stopped answering (killed, "
            "cut off from Redis) are shown as gone everywhere.",
            float,
        ],
        [
            "cluster-timeout",
            None,
            5.0,
            "Seconds to reach Redis at start-up before giving up (exit status 10).",
            float,
        ],
    ]
    optFlags = [
        [
            "cluster-local-start",
            None,
            "With --cluster: if Redis does not answer at start-up, serve local users "
            "and keep trying instead of exiting.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["web"] = []

    def opt_web(self, description: str) -> None:
        """Also serve the chat's web page here (repeatable; off by default): tcp:8080"""
        self["web"].append(description)

    def opt_max_clients(self, value: str) -> None:
        """Refuse clients beyond this many at once (same as --max-connections)."""
        self["max-connections"] = int(value)

    def postOptions(self) -> None:
        """Apply the chat's per-address default and check the numbers."""
        super().postOptions()
        if self["max-per-ip"] is None:
            self["max-per-ip"] = DEFAULT_PER_IP
        for name in (
            "history",
            "announce-limit",
            "max-rooms",
            "room-expiry",
            "max-line",
            "flood-rate",
            "flood-burst",
            "max-pending",
        ):
            if self[name] < 0:
                raise usage.UsageError(f"--{name} must be 0 or more")
        if self["max-line"] < 16:
            raise usage.UsageError("--max-line must be at least 16")
        if not self["cluster-ttl"] >= 1 or not self["cluster-timeout"] > 0:
            raise usage.UsageError("--cluster-ttl must be 1 or more, --cluster-timeout above 0")
        if self["cluster"] is not None:
            from tcplab.chat.redislink import parseRedisURL  # only with --cluster

            try:
                self["cluster"] = parseRedisURL(self["cluster"])
            except ValueError as e:
                raise usage.UsageError(f"--cluster: {e}") from None
        elif self["workers"] > 1:
            raise usage.UsageError(
                "--workers needs --cluster redis://HOST:PORT (rooms would split between workers)"
            )


EXIT_BAD_CHAT_LOG = 2
"""The exit status when the --chat-log file cannot be opened (as for bad arguments)."""


def makeService(options: Options) -> IService:
    """
    The chat service (and its chat log) for twistd.  A --chat-log that
    cannot be opened ends start-up with one line and exit status 2.
    """
    supervisor = superviseWorkers(options, SERVICE_NAME)
    if supervisor is not None:
        return supervisor
    if options["chat-log"]:
        try:
            checkWritable(options["chat-log"])
        except OSError as e:
            print(
                f"{SERVICE_NAME}: cannot open --chat-log {options['chat-log']}: {e.strerror or e}",
                file=sys.__stderr__ or sys.stderr,
            )
            raise SystemExit(EXIT_BAD_CHAT_LOG) from None
    hubClass: type[ChatHub] = ChatHub
    if options["cluster"] is not None:
        from tcplab.chat.cluster import ClusterHub  # only with --cluster

        hubClass = ClusterHub
    hub = hubClass(
        historySize=options["history"],
        announceLimit=options["announce-limit"],
        maxRooms=options["max-rooms"],
        roomExpiry=options["room-expiry"],
    )
    factory = ChatFactory(
        hub,
        maxLine=options["max-line"],
        floodRate=options["flood-rate"],
        floodBurst=options["flood-burst"],
        maxPending=options["max-pending"],
        authenticator=options.authenticator(),
    )
    settings = options.settings(SERVICE_NAME, writeDirectly=True)
    service = makeListeningService(settings, factory, metrics=factory.metrics)
    if options["web"]:
        from tcplab.web.tap import addChatWeb

        addChatWeb(service, settings, options["web"], factory)
    if options["cluster"] is not None:
        from tcplab.chat.cluster import ClusterHub
        from tcplab.chat.clusterlink import ClusterLink

        assert isinstance(hub, ClusterHub)
        reactor = service.reactor

        def fatal(message: str) -> None:
            exitCannotListen(CannotListen(f"{SERVICE_NAME}: {message}"), reactor)

        ClusterLink(
            hub,
            options["cluster"],
            factory.metrics,
            fatal,
            reactor=reactor,
            startTimeout=options["cluster-timeout"],
            localStart=bool(options["cluster-local-start"]),
            ttl=options["cluster-ttl"],
        ).setServiceParent(service)
    # With --workers, worker 0 alone keeps the log: through the cluster it
    # sees every line, and N workers appending the same lines would repeat them.
    if options["chat-log"] and options["worker-index"] in (None, 0):
        ChatLogService(hub, options["chat-log"], factory.metrics).setServiceParent(service)
    return service
