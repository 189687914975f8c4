"""Tests for L{tcplab.auth}: cred checkers, and slowing down guessers."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.cred import strcred
from twisted.internet import defer
from twisted.internet.task import Clock

from tcplab.auth import MAX_DELAY, Authenticator, LoginFailed
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


def test_success_resets_backoff() -> None:
    """A successful login forgets the address's earlier failures."""
    clock = Clock()
    auth = Authenticator([strcred.makeChecker("memory:alice:secret")], clock)
    defer.ensureDeferred(auth.login("alice", "nope", "p")).addErrback(lambda f: None)
    clock.advance(1)
    assert auth.delayFor("p") == 1.0
    defer.ensureDeferred(auth.login("alice", "secret", "p"))
    assert auth.delayFor("p") == 0.5


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
