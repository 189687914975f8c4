"""Tests for the twistd side: options, listening, and one-line start-up errors."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import cast

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort, IReactorUDP, IStreamServerEndpoint
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.python import usage
from zope.interface import implementer

from tcplab.addresses import DEFAULT_BACKLOG, withBacklog
from tcplab.chat import ChatFactory
from tcplab.chat.chatlog import ChatLogService
from tcplab.echo import EchoDatagramProtocol, EchoFactory
from tcplab.errors import CannotListen
from tcplab.files import FileServerFactory
from tcplab.metricshttp import MetricsHTTPFactory
from tcplab.observe import ConnectionObserver
from tcplab.sending import BULK_READ_SIZE
from tcplab.settings import ServiceSettings
from tcplab.tap import chat as chatTap
from tcplab.tap import echo as echoTap
from tcplab.tap import files as filesTap
from tcplab.tap.common import PluginService
from tcplab.tap.listening import EndpointService, ListeningService
from tests.support import reactor


def parse(*args: str) -> echoTap.Options:
    options = echoTap.Options()
    options.parseOptions(list(args))
    return options


def test_default_listen_address() -> None:
    """Without --listen the service listens on the documented loopback default."""
    assert parse()["listen"] == ["tcp:8007:interface=127.0.0.1"]


def test_listen_is_repeatable() -> None:
    """--listen may be given several times and replaces the default."""
    options = parse("--listen", "tcp:1", "--listen", "unix:/tmp/x.sock")
    assert options["listen"] == ["tcp:1", "unix:/tmp/x.sock"]


def test_hexdump_implies_trace() -> None:
    """--hexdump alone turns tracing on."""
    assert parse("--hexdump")["trace"] is True


def test_bad_mode_and_udp_are_usage_errors() -> None:
    """A wrong --mode or --udp is a usage error, not a crash at start-up."""
    with pytest.raises(usage.UsageError, match="--mode"):
        parse("--mode", "loud")
    with pytest.raises(usage.UsageError, match="--udp"):
        parse("--udp", "notaport")


def test_udp_address_forms() -> None:
    """--udp takes PORT or HOST:PORT, defaulting to loopback."""
    assert parse("--udp", "9000")["udp"] == ("127.0.0.1", 9000)
    assert parse("--udp", "0.0.0.0:9000")["udp"] == ("0.0.0.0", 9000)


def test_bad_endpoint_description() -> None:
    """A malformed --listen is reported as CannotListen naming the description."""
    with pytest.raises(CannotListen, match="bad --listen 'bogus:1'"):
        ListeningService("tcplab-echo", ["bogus:1"], EchoFactory(), reactor())


@pytest_twisted.ensureDeferred
async def test_port_in_use_closes_the_others() -> None:
    """When one address is busy, the ones already opened are closed again (never half-up)."""
    busy = await endpoints.TCP4ServerEndpoint(reactor(), 0, interface="127.0.0.1").listen(
        EchoFactory()
    )
    try:
        number = busy.getHost().port
        service = ListeningService(
            "tcplab-echo",
            ["tcp:0:interface=127.0.0.1", f"tcp:{number}:interface=127.0.0.1"],
            EchoFactory(),
            reactor(),
        )
        with pytest.raises(CannotListen, match="Address already in use"):
            service.privilegedStartService()
        with pytest.raises(CannotListen, match="Address already in use"):
            await service.listening
        assert service.ports == []
        await service.stopService()
    finally:
        await busy.stopListening()


@pytest_twisted.ensureDeferred
async def test_real_port_of_tcp0_is_known() -> None:
    """tcp:0 listens on a real port that the service exposes."""
    service = ListeningService(
        "tcplab-echo", ["tcp:0:interface=127.0.0.1"], EchoFactory(), reactor()
    )
    service.startService()
    ports = await service.listening
    assert ports[0].getHost().port > 0  # type: ignore[attr-defined]
    await service.stopService()
    assert service.ports == []


@pytest_twisted.ensureDeferred
async def test_listen_backlog_defaults_to_1024_and_can_be_set() -> None:
    """A burst of connecting clients fits the backlog; backlog= in the description wins."""
    service = ListeningService(
        "tcplab-echo",
        ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1:backlog=7"],
        EchoFactory(),
        reactor(),
    )
    service.startService()
    ports = await service.listening
    assert [port.backlog for port in ports] == [DEFAULT_BACKLOG, 7]  # type: ignore[attr-defined]
    await service.stopService()


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:8007", "tcp:8007:backlog=1024"),
        ("tcp6:8007:interface=\\:\\:1", "tcp6:8007:interface=\\:\\:1:backlog=1024"),
        ("unix:/tmp/s:backlog=3", "unix:/tmp/s:backlog=3"),
        ("ssl:443:privateKey=k.pem", "ssl:443:privateKey=k.pem:backlog=1024"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_with_backlog(description: str, expected: str) -> None:
    """Only endpoint types that take a backlog get one, and only when unset."""
    assert withBacklog(description) == expected


# The service trees, built from options without running them (as Twisted's
# own test_tap does for twisted.web).


def test_echo_service_tree() -> None:
    """tcplab-echo: one endpoint service per --listen around one observer, metrics, UDP."""
    options = parse(
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        "unix:/tmp/tcplab-tree.sock",
        "--max-per-ip",
        "3",
        "--idle-timeout",
        "7",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
        "--udp",
        "0",
        "--shutdown-timeout",
        "4",
    )
    service = echoTap.makeService(options)
    assert isinstance(service, PluginService)
    assert [e.description for e in service.endpoints] == [
        "tcp:0:interface=127.0.0.1",
        "unix:/tmp/tcplab-tree.sock",
    ]
    observer = service.factory
    assert isinstance(observer, ConnectionObserver)
    assert all(e.factory is observer for e in service.endpoints)
    assert isinstance(observer.wrappedFactory, EchoFactory)
    assert observer.settings == ServiceSettings(
        "tcplab-echo",
        listen=("tcp:0:interface=127.0.0.1", "unix:/tmp/tcplab-tree.sock"),
        maxPerPeer=3,
        idleTimeout=7.0,
        messageTimeout=30.0,
        shutdownTimeout=4.0,
        metrics="tcp:0:interface=127.0.0.1",
        readSize=BULK_READ_SIZE,
        writeDirectly=True,
    )
    assert service.shutdownTimeout == 4.0
    assert service.metricsEndpoint is not None
    web = service.metricsEndpoint.factory
    assert isinstance(web, MetricsHTTPFactory) and web.metrics is observer.metrics
    [udp] = [child for child in service if isinstance(child, echoTap.DatagramEchoService)]
    assert (udp.host, udp.portNumber) == ("127.0.0.1", 0)
    assert service.ports == [] and not service.running, "building binds nothing"


def test_chat_service_tree(tmp_path: Path) -> None:
    """tcplab-chat: its defaults in the settings, its own metrics registry, the chat log."""
    options = chatTap.Options()
    options.parseOptions(["--chat-log", str(tmp_path / "chat.log")])
    service = chatTap.makeService(options)
    assert isinstance(service, PluginService)
    assert [e.description for e in service.endpoints] == ["tcp:8008:interface=127.0.0.1"]
    observer = service.factory
    assert isinstance(observer, ConnectionObserver)
    assert isinstance(observer.wrappedFactory, ChatFactory)
    assert observer.metrics is observer.wrappedFactory.metrics
    assert observer.settings.maxPerPeer == chatTap.DEFAULT_PER_IP
    assert observer.settings.idleTimeout == 3600.0
    assert observer.settings.writeDirectly and observer.settings.readSize is None
    assert service.metricsEndpoint is None
    assert [type(child) for child in service if not isinstance(child, EndpointService)] == [
        ChatLogService
    ]


def test_files_service_tree(tmp_path: Path) -> None:
    """tcplab-files: the file factory behind the observer, with bulk reads."""
    options = filesTap.Options()
    options.parseOptions(["--root", str(tmp_path), "--max-connections", "9"])
    service = filesTap.makeService(options)
    assert isinstance(service, PluginService)
    observer = service.factory
    assert isinstance(observer, ConnectionObserver)
    assert isinstance(observer.wrappedFactory, FileServerFactory)
    assert observer.metrics is observer.wrappedFactory.metrics
    assert observer.settings.maxConnections == 9
    assert observer.settings.readSize == BULK_READ_SIZE
    assert [e.description for e in service.endpoints] == ["tcp:8009:interface=127.0.0.1"]


def test_bad_metrics_endpoint_names_its_option(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --metrics is one line naming --metrics, and exit status 10."""
    with pytest.raises(SystemExit) as exited:
        echoTap.makeService(parse("--metrics", "bogus:1"))
    assert exited.value.code == 10
    assert capsys.readouterr().err == (
        "tcplab-echo: bad --metrics 'bogus:1': Unknown endpoint type: 'bogus'\n"
    )


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    """An endpoint that records when it is asked to listen, and never binds for real."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def listen(self, factory: object) -> defer.Deferred[IListeningPort]:
        self.calls.append("listen")
        return defer.succeed(StubPort())


@implementer(IListeningPort)
class StubPort:
    """A listening port that is not one."""

    def startListening(self) -> None:
        pass

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 80)

    def stopListening(self) -> None:
        pass


def test_binds_in_privileged_start_only_once() -> None:
    """
    The port is opened in privilegedStartService (twistd is still root then)
    and startService does not open it again.
    """
    endpoint = RecordingEndpoint()
    service = ListeningService("t", [], EchoFactory(), MemoryReactor())
    EndpointService("t", "tcp:80", endpoint, EchoFactory()).setServiceParent(service)
    service.privilegedStartService()
    assert endpoint.calls == ["listen"]
    service.startService()
    assert endpoint.calls == ["listen"]
    assert service.listening.called


def test_start_service_alone_binds() -> None:
    """Without privilegedStartService (the twist runner, embedding), startService binds."""
    endpoint = RecordingEndpoint()
    service = ListeningService("t", [], EchoFactory(), MemoryReactor())
    EndpointService("t", "tcp:80", endpoint, EchoFactory()).setServiceParent(service)
    service.startService()
    assert endpoint.calls == ["listen"]


def test_udp_binds_in_privileged_start() -> None:
    """The UDP echo service binds in privilegedStartService too."""
    clock = MemoryReactorClock()
    listened: list[tuple[int, str]] = []

    def listenUDP(port: int, protocol: object, interface: str, maxPacketSize: int) -> StubPort:
        listened.append((port, interface))
        return StubPort()

    clock.listenUDP = listenUDP  # type: ignore[attr-defined]
    reactor = cast(IReactorUDP, clock)  # its listenUDP is the stub above
    udp = echoTap.DatagramEchoService("127.0.0.1", 7, EchoDatagramProtocol(), reactor)
    udp.privilegedStartService()
    assert listened == [(7, "127.0.0.1")]
    udp.startService()
    assert listened == [(7, "127.0.0.1")]


def test_busy_udp_port_releases_the_tcp_ports() -> None:
    """A busy UDP port fails start-up with one line, and the TCP port opened first is closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        number = busy.getsockname()[1]
        service = ListeningService(
            "tcplab-echo", ["tcp:0:interface=127.0.0.1"], EchoFactory(), reactor()
        )
        udp = echoTap.DatagramEchoService("127.0.0.1", number, EchoDatagramProtocol())
        udp.setServiceParent(service)
        with pytest.raises(CannotListen, match=r"^tcplab-echo: cannot listen on UDP: .*in use"):
            service.privilegedStartService()
        assert service.ports == []
        service.listening.addErrback(lambda f: f.trap(CannotListen))


@pytest_twisted.ensureDeferred
async def test_second_factory_joins_all_or_none() -> None:
    """
    A ListeningService for a second factory, nested in a plugin's service,
    binds with it: its busy port fails the whole start-up and releases the
    plugin's own port.
    """
    busy = await endpoints.TCP4ServerEndpoint(reactor(), 0, interface="127.0.0.1").listen(
        EchoFactory()
    )
    try:
        number = busy.getHost().port
        main = ListeningService(
            "tcplab-files", ["tcp:0:interface=127.0.0.1"], EchoFactory(), reactor()
        )
        extra = ListeningService(
            "tcplab-files tutorial", [f"tcp:{number}:interface=127.0.0.1"], EchoFactory()
        )
        extra.setServiceParent(main)
        with pytest.raises(CannotListen, match=r"^tcplab-files tutorial: cannot listen: "):
            main.privilegedStartService()
        assert main.ports == [] and extra.ports == []
        with pytest.raises(CannotListen):
            await main.listening
    finally:
        await busy.stopListening()


def test_listen_help_is_one_clean_sentence() -> None:
    """twistd --help shows the --listen help without a run of spaces inside it."""
    help = " ".join(line.strip() for line in str(echoTap.Options()).splitlines())
    assert (
        "Listen on this server endpoint (repeatable): tcp:8007, tcp6:8007, unix:/tmp/s.sock"
        in help
    )
