"""Tests for L{tcplab.auth}: cred checkers, and slowing down guessers per host."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.cred import strcred
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from zope.interface import implementer

from tcplab.auth import FORGET_AFTER, MAX_DELAY, Authenticator, LoginFailed
from tcplab.tap.common import AuthServiceOptions


def test_memory_and_file_checkers(tmp_path: Path) -> None:
    """Users of memory: and file: checkers log in with the right password."""
    passwords = tmp_path / "passwd"
    passwords.write_text("bob:hunter2\n")
    clock = Clock()
    auth = Authenticator(
        [strcred.makeChecker("memory:alice:secret"), strcred.makeChecker(f"file:{passwords}")],
        clock,
    )
    assert auth.enabled
    results: list[object] = []
    defer.ensureDeferred(auth.login("alice", "secret", "127.0.0.1")).addBoth(results.append)
    defer.ensureDeferred(auth.login("bob", "hunter2", "127.0.0.1")).addBoth(results.append)
    assert results == ["alice", "bob"]
    assert auth.isKnownUser("alice") and auth.isKnownUser("bob")
    assert not auth.isKnownUser("mallory")


def test_failures_answered_later_and_later() -> None:
    """Each failed login from one address waits longer, up to a cap, and is logged."""
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    delays = []
    for _ in range(6):
        outcome: list[object] = []
        defer.ensureDeferred(auth.login("alice", "guess", "10.9.9.9")).addBoth(outcome.append)
        waited = 0.0
        while not outcome:
            clock.advance(0.25)
            waited += 0.25
        assert outcome[0].check(LoginFailed)  # type: ignore[attr-defined]
        delays.append(waited)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, MAX_DELAY]
    assert auth.delayFor("10.9.9.10") == 0.5, "other addresses are not slowed"


def test_success_does_not_reset_but_quiet_time_does() -> None:
    """
    A success does not forget a host's failures (one account must not
    reset the count for guesses at another); FORGET_AFTER quiet seconds do.
    """
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    defer.ensureDeferred(auth.login("alice", "nope", "10.0.0.1:1")).addErrback(lambda f: None)
    clock.advance(1)
    assert auth.delayFor("10.0.0.1:2") == 1.0
    defer.ensureDeferred(auth.login("alice", "secret", "10.0.0.1:3"))
    assert auth.delayFor("10.0.0.1:2") == 1.0
    clock.advance(FORGET_AFTER)
    assert auth.delayFor("10.0.0.1:2") == 0.5
    assert auth.failures == {}


def failingChecker(calls: list[float], clock: Clock) -> ICredentialsChecker:
    """A checker that refuses everyone and records when it was asked."""

    @implementer(ICredentialsChecker)
    class Refuser:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials: object) -> defer.Deferred[bytes | tuple[()]]:
            calls.append(clock.seconds())
            return defer.fail(UnauthorizedLogin())

    return Refuser()


def test_twenty_guesses_over_five_connections_take_over_a_minute() -> None:
    """
    The README's promise: 20 wrong guesses from one address, sent at once
    over 5 connections, are answered over more than a minute.
    """
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    outcomes: list[object] = []
    for guess in range(20):
        peer = f"10.1.1.1:{40000 + guess % 5}"
        d = defer.ensureDeferred(auth.login("alice", f"guess{guess}", peer))
        d.addBoth(outcomes.append)
    while len(outcomes) < 20:
        clock.advance(0.25)
    assert clock.seconds() >= 60
    assert clock.seconds() == 0.5 + 1 + 2 + 4 + 16 * MAX_DELAY
    assert all(o.check(LoginFailed) for o in outcomes)  # type: ignore[attr-defined]
    assert not auth.pending("10.1.1.1:40000"), "the turn table empties once nobody waits"


def test_one_check_at_a_time_per_host() -> None:
    """A host's second login is checked only after its first was answered; others go on."""
    clock = Clock()
    calls: list[float] = []
    auth = Authenticator([failingChecker(calls, clock)], clock)
    for peer in ("10.2.2.2:1", "10.2.2.2:2", "10.3.3.3:1"):
        defer.ensureDeferred(auth.login("bob", "x", peer)).addErrback(lambda f: None)
    # Each check tries bytes and str credentials: two calls per login.
    assert calls == [0, 0, 0, 0], "the first of 10.2.2.2 and the one of 10.3.3.3"
    clock.advance(0.25)
    assert len(calls) == 4
    clock.advance(0.25)
    assert calls[4:] == [0.5, 0.5], "the second of 10.2.2.2, once the first was answered"


def test_mapped_ipv6_and_ports_share_one_count() -> None:
    """::ffff:a.b.c.d counts as a.b.c.d, whatever the port or the address form."""
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    d = defer.ensureDeferred(auth.login("alice", "no", "[::ffff:10.4.4.4]:5000"))
    d.addErrback(lambda f: None)
    clock.advance(1)
    assert auth.failureCount("10.4.4.4:6000") == 1
    assert auth.failureCount(IPv4Address("TCP", "10.4.4.4", 1)) == 1
    assert auth.failureCount(IPv6Address("TCP", "::ffff:10.4.4.4", 1)) == 1
    assert auth.failureCount("10.4.4.5:6000") == 0


def test_failure_table_is_bounded() -> None:
    """Beyond maxHosts hosts, the one quiet longest is forgotten first."""
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock, maxHosts=3)
    for number in range(5):
        d = defer.ensureDeferred(auth.login("alice", "no", f"10.5.5.{number}:1"))
        d.addErrback(lambda f: None)
        clock.advance(1)
    assert list(auth.failures) == ["10.5.5.2", "10.5.5.3", "10.5.5.4"]


def test_no_checkers_means_disabled() -> None:
    """Without --auth the authenticator is disabled."""
    assert not Authenticator([], Clock()).enabled


def test_auth_option_parses_checkers() -> None:
    """--auth on a service with accounts builds the cred checkers."""
    options = AuthServiceOptions()
    options.parseOptions(["--auth", "memory:alice:secret"])
    assert options.authenticator().isKnownUser("alice")


def test_auth_option_rejects_unknown_type() -> None:
    """An unknown --auth type is a usage error."""
    with pytest.raises(Exception, match="nosuch"):
        AuthServiceOptions().parseOptions(["--auth", "nosuch:x"])
