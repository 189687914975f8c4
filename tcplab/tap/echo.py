"""
``twistd -n tcplab-echo``: the echo service and the tutorial variants.

See L{tcplab.echo} for the protocols.  The default is RFC 862 echo on
``tcp:8007:interface=127.0.0.1``.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorUDP
from twisted.python import usage

from tcplab.echo import (
    DATAGRAM_RATE,
    DEFAULT_ACK,
    DEFAULT_BANNER,
    MODES,
    DatagramPolicy,
    EchoDatagramProtocol,
    EchoFactory,
)
from tcplab.sending import BULK_READ_SIZE
from tcplab.tap.common import ServiceOptions, makeListeningService, superviseWorkers
from tcplab.tap.listening import DatagramService

SERVICE_NAME = "tcplab-echo"


def parseUDPAddress(value: str) -> tuple[str, int]:
    """Parse C{PORT} or C{HOST:PORT} (host defaults to 127.0.0.1)."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    number = int(port)
    if not 0 <= number < 65536:
        raise ValueError(f"UDP port out of range: {number}")
    return host, number


class Options(ServiceOptions):
    """Command-line options of ``twistd tcplab-echo``."""

    synopsis = (
        "[--listen ENDPOINT ...] [--mode echo|upper|ack|count] [--per-read] [--udp [HOST:]PORT]"
    )
    longdesc = (
        "RFC 862 echo server and the socket tutorials' variants: "
        "--mode upper (upper-cased echo), --mode ack (one acknowledgement per "
        "read), --mode count (banner, numbered replies per line, or per read "
        "with --per-read; 'exit' closes), and UDP echo with --udp. Default "
        f"listen address: {ServiceOptions.defaultListen}."
    )
    optFlags = [
        [
            "per-read",
            None,
            "Count mode answers every read (as the tutorial server's one recv does), "
            "not every line: for clients that send without a newline.",
        ],
    ]
    optParameters = [
        ["mode", "m", "echo", f"Reply mode: {', '.join(MODES)}."],
        ["ack-text", None, DEFAULT_ACK.decode(), "The acknowledgement sent in ack mode."],
        ["banner", None, DEFAULT_BANNER.decode(), "The welcome line sent in count mode."],
        [
            "udp",
            None,
            None,
            "Also echo UDP datagrams on [HOST:]PORT (host defaults to 127.0.0.1). "
            "Ack and count replies are larger than what they answer (see the README).",
        ],
        [
            "udp-rate",
            None,
            DATAGRAM_RATE,
            "UDP replies per second to one source address (bursts of twice that; 0: no limit).",
            float,
        ],
    ]

    def postOptions(self) -> None:
        """Check the mode and the UDP address."""
        super().postOptions()
        if self["mode"] not in MODES:
            raise usage.UsageError(f"--mode must be one of {', '.join(MODES)}")
        if self["per-read"] and self["mode"] != "count":
            raise usage.UsageError("--per-read goes with --mode count")
        if self["udp-rate"] < 0:
            raise usage.UsageError("--udp-rate must be 0 or more")
        if self["udp"] is not None:
            try:
                self["udp"] = parseUDPAddress(self["udp"])
            except ValueError as e:
                raise usage.UsageError(f"--udp {self['udp']!r}: {e}") from None


class DatagramEchoService(DatagramService):
    """
    Echo UDP datagrams on one address; binds in C{privilegedStartService}
    (so a port below 1024 works with C{--uid}), and a busy port stops
    start-up like a busy TCP port.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol: EchoDatagramProtocol,
        reactor: IReactorUDP | None = None,
    ) -> None:
        super().__init__(
            SERVICE_NAME, host, port, protocol, reactor, maxPacketSize=protocol.maxPacketSize
        )


def makeService(options: Options) -> IService:
    """The echo service (and its UDP twin, if asked for) for twistd."""
    supervisor = superviseWorkers(options, SERVICE_NAME)
    if supervisor is not None:
        return supervisor
    ack = options["ack-text"].encode()
    factory = EchoFactory(
        options["mode"],
        ack=ack,
        banner=options["banner"].encode(),
        perRead=bool(options["per-read"]),
    )
    settings = options.settings(SERVICE_NAME, readSize=BULK_READ_SIZE, writeDirectly=True)
    service = makeListeningService(settings, factory)
    # With --workers, worker 0 alone serves UDP (a datagram needs no sharing).
    if options["udp"] is not None and options["worker-index"] in (None, 0):
        host, port = options["udp"]
        rate = options["udp-rate"]
        policy = DatagramPolicy(rate=rate, burst=2 * rate)
        udp = DatagramEchoService(host, port, EchoDatagramProtocol(options["mode"], ack, policy))
        udp.setServiceParent(service)
    return service
