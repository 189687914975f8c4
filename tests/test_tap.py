"""Tests for the twistd side: options, listening, and one-line start-up errors."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import endpoints
from twisted.python import usage

from tcplab.addresses import DEFAULT_BACKLOG, withBacklog
from tcplab.echo import EchoFactory
from tcplab.errors import CannotListen
from tcplab.tap import echo as echoTap
from tcplab.tap.listening import ListeningService
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
