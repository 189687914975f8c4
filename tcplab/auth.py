"""
Logins for the tcplab services, on C{twisted.cred}.

Plugins take C{--auth} the way Twisted's own plugins do (L{strcred}
checkers: ``memory:alice:secret``, ``file:/etc/tcplab.passwd``, ``unix``,
...).  L{Authenticator} checks a user name and password against those
checkers and makes guessing expensive: every failure is logged with the peer
address, and answered only after a delay that doubles with each failure from
the same address (up to L{MAX_DELAY}), forgotten after a success.
"""

from __future__ import annotations

from typing import Any

from twisted.cred import error as credError
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tcplab.reactors import defaultReactor

FIRST_DELAY = 0.5
"""Seconds before answering the first failed login from an address."""

MAX_DELAY = 8.0
"""The longest delay before answering a failed login."""


class LoginFailed(Exception):
    """Wrong user name or password (deliberately not saying which)."""


class Authenticator:
    """
    Check user names and passwords against cred checkers, slowly on failure.

    @ivar checkers: C{ICredentialsChecker}s for C{IUsernamePassword},
        tried in order; a user accepted by any of them is logged in.
    """

    log = Logger()

    def __init__(self, checkers: list[ICredentialsChecker], reactor: Any = None) -> None:
        reactor = defaultReactor(reactor)
        self.checkers = checkers
        self.reactor = reactor
        self.failures: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        """Whether any checker is configured (C{--auth} was given)."""
        return bool(self.checkers)

    def delayFor(self, peer: str) -> float:
        """How long the next failed login from C{peer} will wait."""
        failures = self.failures.get(peer, 0)
        return float(min(FIRST_DELAY * 2**failures, MAX_DELAY))

    async def login(self, username: str, password: str, peer: str) -> str:
        """
        Return the avatar ID for these credentials.

        @raise LoginFailed: after the delay, if no checker accepts them.
        """
        # Twisted's file checker compares bytes, its memory checker str.
        attempts = [
            UsernamePassword(username.encode(), password.encode()),
            UsernamePassword(username, password),  # type: ignore[arg-type]
        ]
        for checker in self.checkers:
            for credentials in attempts:
                try:
                    avatarId = await defer.maybeDeferred(checker.requestAvatarId, credentials)
                except (credError.UnauthorizedLogin, credError.UnhandledCredentials):
                    continue
                self.failures.pop(peer, None)
                self.log.info("login of {user!r} from {peer}", user=username, peer=peer)
                return avatarId.decode() if isinstance(avatarId, bytes) else str(avatarId)
        delay = self.delayFor(peer)
        self.failures[peer] = self.failures.get(peer, 0) + 1
        self.log.warn(
            "failed login for {user!r} from {peer} (failure {count}, answered after {delay:g}s)",
            user=username,
            peer=peer,
            count=self.failures[peer],
            delay=delay,
        )
        await deferLater(self.reactor, delay, lambda: None)
        raise LoginFailed("wrong user name or password")

    def isKnownUser(self, username: str) -> bool:
        """
        Whether C{username} is an account of a C{memory:} or C{file:} checker
        (so that chat can reserve registered nicknames).  Checkers that cannot
        list their users (C{unix}) answer no.
        """
        for checker in self.checkers:
            users = getattr(checker, "users", None)
            if isinstance(users, dict) and username in users:
                return True
            loadCredentials = getattr(checker, "_loadCredentials", None)
            if loadCredentials is not None:
                try:
                    if any(name == username.encode() for name, _ in loadCredentials()):
                        return True
                except OSError:
                    continue
        return False

    def accountNames(self) -> list[str]:
        """
        The accounts of the C{memory:} and C{file:} checkers (chat reserves
        every nickname that is a form of one); C{unix} cannot list its users.
        """
        accounts: list[str] = []
        for checker in self.checkers:
            users = getattr(checker, "users", None)
            if isinstance(users, dict):
                accounts += [u.decode() if isinstance(u, bytes) else str(u) for u in users]
            loadCredentials = getattr(checker, "_loadCredentials", None)
            if loadCredentials is not None:
                try:
                    accounts += [name.decode("utf-8", "replace") for name, _ in loadCredentials()]
                except OSError:
                    continue
        return accounts
