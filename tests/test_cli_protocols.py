"""
The client protocols of ``tcplab echo`` and ``tcplab chat`` in memory
(``tests/memory.py`` and a shared clock): reply counting, the bounded read
after our EOF, the quiet timeout, the login verdict; and Ctrl-C handling of
a running command on a memory reactor.
"""

from __future__ import annotations

from typing import cast

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from tcplab.cli.chat import ChatClientProtocol, LoginRefused
from tcplab.cli.echoclient import ConnectionClosed, EchoClientProtocol
from tcplab.cli.running import INTERRUPT_GRACE, CommandRun, ICommandReactor
from tcplab.echo import EchoProtocol
from tests.memory import MemoryConnection, connectInMemory


class FloodAfterEOF(EchoProtocol):
    """An echo server that answers our EOF with 10,000 bytes and stays open (001's bug)."""

    def readConnectionLost(self) -> None:
        self.transport.write(b"z" * 10_000)


class SilentAfterEOF(EchoProtocol):
    """An echo server that ignores our EOF and never closes."""

    def readConnectionLost(self) -> None:
        pass


def connectClient(server: type[EchoProtocol]) -> tuple[MemoryConnection, list[bytes]]:
    """An L{EchoClientProtocol} connected in memory to C{server}; what it prints."""
    printed: list[bytes] = []
    clock = MemoryReactorClock()
    client = EchoClientProtocol(printed.append, clock)
    connection = connectInMemory(Factory.forProtocol(server), client=client, clock=clock)
    return connection, printed


def test_drain_after_eof_is_bounded() -> None:
    """After our EOF the client reads what is owed plus the limit, then hangs up."""
    connection, printed = connectClient(FloodAfterEOF)
    client: EchoClientProtocol = connection.client
    connection.clientSends(b"hello")
    client.finishSending(sent=5, limit=100, idleTimeout=None)
    connection.flush()
    assert b"".join(printed) == b"hello" + b"z" * 100
    assert client.cutOff and client.closed.called


def test_drain_counts_what_is_still_owed() -> None:
    """Bytes sent and not yet echoed at our EOF are allowed on top of the limit."""
    connection, printed = connectClient(FloodAfterEOF)
    client: EchoClientProtocol = connection.client
    client.transport.write(b"x" * 50)  # not delivered yet: all 50 still owed
    client.finishSending(sent=50, limit=10, idleTimeout=None)
    connection.flush()
    assert b"".join(printed) == b"x" * 50 + b"z" * 10


def test_quiet_server_left_after_idle_timeout() -> None:
    """With an idle timeout, a server that neither sends nor closes is left after it."""
    connection, _ = connectClient(SilentAfterEOF)
    client: EchoClientProtocol = connection.client
    connection.clientSends(b"hi\n")
    client.finishSending(sent=3, limit=100, idleTimeout=2.0)
    connection.advance(1.9)
    assert not client.closed.called
    connection.advance(0.2)
    assert client.closed.called and not client.cutOff


def test_line_reply_waits_for_line_end() -> None:
    """In line mode a reply is complete at its line end, not at its first bytes."""
    client = EchoClientProtocol(lambda data: None, clock=Clock())
    client.makeConnection(StringTransport())
    reply = client.waitForReply(raw=False)
    client.dataReceived(b"par")
    assert not reply.called
    client.dataReceived(b"tial\nnext")
    assert reply.called


def test_raw_reply_is_one_read() -> None:
    """In raw mode the next read is the reply, whatever it holds."""
    client = EchoClientProtocol(lambda data: None, clock=Clock())
    client.makeConnection(StringTransport())
    reply = client.waitForReply(raw=True)
    client.dataReceived(b"x")
    assert reply.called


def test_greeting_already_received_counts() -> None:
    """A greeting that arrived before the wait began still answers a first=True wait."""
    client = EchoClientProtocol(lambda data: None, clock=Clock())
    client.makeConnection(StringTransport())
    client.dataReceived(b"welcome")
    assert client.waitForReply(raw=True, first=True).called


@pytest.mark.parametrize(("data", "answered"), [(b"started", True), (b"", False)])
def test_close_answers_a_started_reply_only(data: bytes, answered: bool) -> None:
    """A close after part of a reply answers it; a close after nothing fails the wait."""
    client = EchoClientProtocol(lambda data: None, clock=Clock())
    client.makeConnection(StringTransport())
    reply = client.waitForReply(raw=False)
    if data:
        client.dataReceived(data)
    client.connectionLost(Failure(ConnectionClosed()))
    results: list[object] = []
    reply.addBoth(results.append)
    assert (results[0] is None) == answered
    if not answered:
        assert isinstance(results[0], Failure) and results[0].check(ConnectionClosed)


def chatClient() -> tuple[ChatClientProtocol, list[bytes]]:
    """A connected L{ChatClientProtocol} and the lines it prints."""
    printed: list[bytes] = []
    client = ChatClientProtocol(printed.append)
    client.makeConnection(StringTransport())
    return client, printed


def test_login_confirmed_by_rename_notice() -> None:
    """The login succeeds when the server announces the new nickname."""
    client, _ = chatClient()
    verdict = client.expectLogin("alice")
    client.dataReceived(b"*** Welcome, guest1.\r\n*** guest1 is now known as alice\r\n")
    assert verdict.called and verdict.result is None


def test_login_refused_by_error_notice() -> None:
    """An error notice while the login is pending refuses it with the server's reason."""
    client, printed = chatClient()
    verdict = client.expectLogin("alice")
    client.dataReceived(b"*** error: wrong password for alice\r\n")
    failures: list[Failure] = []
    verdict.addErrback(failures.append)
    assert failures[0].check(LoginRefused)
    assert str(failures[0].value) == "login as alice failed: wrong password for alice"
    assert printed == [b"*** error: wrong password for alice\n"]


def test_login_refused_by_close() -> None:
    """A server that hangs up on the login refuses it."""
    client, _ = chatClient()
    verdict = client.expectLogin("alice")
    client.connectionLost(None)
    failures: list[Failure] = []
    verdict.addErrback(failures.append)
    assert failures[0].check(LoginRefused)


def runningClock() -> MemoryReactorClock:
    """A memory reactor that counts as running, so stop() works as in the real one."""
    clock = MemoryReactorClock()
    clock.running = True
    return clock


def test_interrupt_cancels_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C cancels what the command awaits; it ends quietly and the reactor stops."""
    clock = runningClock()
    waiting: Deferred[None] = Deferred()
    cleanedUp: list[bool] = []

    async def command(reactor: object) -> int:
        try:
            await waiting
        finally:
            cleanedUp.append(True)
        return 0

    run = CommandRun(cast(ICommandReactor, clock), command)  # it drives core and time
    run.start()
    run.interrupt()
    assert cleanedUp == [True] and run.interrupted and clock.hasStopped
    assert capsys.readouterr().err == ""  # the one line is printed once the reactor is done


def test_command_ignoring_cancellation_stopped_after_grace() -> None:
    """A command that goes on after Ctrl-C is stopped after the grace period anyway."""
    clock = runningClock()

    async def stubborn(reactor: object) -> int:
        try:
            await Deferred()
        except CancelledError:
            await Deferred()  # carries on regardless
        return 0

    run = CommandRun(cast(ICommandReactor, clock), stubborn)
    run.start()
    run.interrupt()
    assert not clock.hasStopped
    clock.advance(INTERRUPT_GRACE)
    assert clock.hasStopped and run.interrupted
