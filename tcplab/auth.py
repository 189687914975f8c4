"""
Logins for the tcplab services, on C{twisted.cred}.

Plugins take C{--auth} the way Twisted's own plugins do (L{strcred}
checkers: ``memory:alice:secret``, ``file:/etc/tcplab.passwd``, ``unix``,
...).  L{Authenticator} checks a user name and password against those
checkers for every service (chat and files alike) and makes guessing slow
however the guesses are spread over connections:

  - failures are counted per peer host (L{tcplab.addresses.peerHost}: the
    IP address, IPv4-mapped IPv6 folded into IPv4; every UNIX-socket peer
    shares one count), not per connection;
  - one login per host is checked at a time, the others wait their turn;
  - a failure is answered only after a delay that doubles with each failure
    from that host (L{FIRST_DELAY} up to L{MAX_DELAY}), and the next login
    from that host is checked only after it: from one address, 20 wrong
    guesses take at least 0.5 + 1 + 2 + 4 + 16 x 8 = 135.5 seconds;
  - a host's count is forgotten after L{FORGET_AFTER} seconds without a
    failure -- not after a success, which would let someone with one
    account reset the count between guesses at another -- and the table
    keeps at most L{MAX_HOSTS} hosts, forgetting the longest quiet first.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.cred import error as credError
from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tcplab.addresses import peerHost
from tcplab.reactors import defaultReactor

FIRST_DELAY = 0.5
"""Seconds before answering the first failed login from a host."""

MAX_DELAY = 8.0
"""The longest delay before answering a failed login."""

FORGET_AFTER = 900.0
"""Seconds without a failure after which a host's failures are forgotten."""

MAX_HOSTS = 10_000
"""Hosts whose failures are remembered at once (the longest quiet go first)."""

LOCAL_PEERS = "unix"
"""The key every UNIX-socket peer shares (they have no address)."""


class LoginFailed(Exception):
    """Wrong user name or password (deliberately not saying which)."""


class _Failures:
    """How often a host failed, and when it last did."""

    __slots__ = ("count", "last")

    def __init__(self, count: int, last: float) -> None:
        self.count = count
        self.last = last


class Authenticator:
    """
    Check user names and passwords against cred checkers, one at a time
    per host and slowly on failure.

    @ivar checkers: C{ICredentialsChecker}s for C{IUsernamePassword},
        tried in order; a user accepted by any of them is logged in.
    @ivar failures: recent failures by host, the longest quiet first.
    """

    log = Logger()

    def __init__(
        self,
        checkers: list[ICredentialsChecker],
        reactor: IReactorTime | None = None,
        maxHosts: int = MAX_HOSTS,
        forgetAfter: float = FORGET_AFTER,
    ) -> None:
        self.checkers = checkers
        self.reactor = defaultReactor(reactor)
        self.maxHosts = maxHosts
        self.forgetAfter = forgetAfter
        self.failures: OrderedDict[str, _Failures] = OrderedDict()
        self._turns: dict[str, defer.DeferredLock] = {}

    @property
    def enabled(self) -> bool:
        """Whether any checker is configured (C{--auth} was given)."""
        return bool(self.checkers)

    @staticmethod
    def hostOf(peer: object) -> str:
        """The key failures are counted by: the peer's host (see L{peerHost})."""
        return peerHost(peer) or LOCAL_PEERS

    def failureCount(self, peer: object) -> int:
        """Recent failures from C{peer}'s host (forgetting expired ones)."""
        self._expire()
        record = self.failures.get(self.hostOf(peer))
        return record.count if record is not None else 0

    def delayFor(self, peer: object) -> float:
        """How long the next failed login from C{peer}'s host will wait."""
        return float(min(FIRST_DELAY * 2 ** self.failureCount(peer), MAX_DELAY))

    def pending(self, peer: object) -> bool:
        """Whether a login from C{peer}'s host is being checked or waiting."""
        return self.hostOf(peer) in self._turns

    async def login(self, username: str, password: str, peer: object) -> str:
        """
        Return the avatar ID for these credentials, once the logins from the
        same host before this one are done.

        @param peer: the peer's address, or as L{describeAddress} renders it.
        @raise LoginFailed: after the delay, if no checker accepts them.
        """
        host = self.hostOf(peer)
        turn = self._turns.setdefault(host, defer.DeferredLock())
        await turn.acquire()
        try:
            avatarId = await self._check(username, password)
            if avatarId is not None:
                self.log.info("login of {user!r} from {peer}", user=username, peer=peer)
                return avatarId
            delay = self.delayFor(host)
            count = self._recordFailure(host)
            self.log.warn(
                "failed login for {user!r} from {peer} "
                "(failure {count} from {host}, answered after {delay:g}s)",
                user=username,
                peer=peer,
                host=host,
                count=count,
                delay=delay,
            )
            # Still holding the turn: the next guess from this host waits too.
            await deferLater(self.reactor, delay, lambda: None)
            raise LoginFailed("wrong user name or password")
        finally:
            turn.release()
            if not turn.locked and not turn.waiting:
                del self._turns[host]

    async def _check(self, username: str, password: str) -> str | None:
        """The avatar ID if a checker accepts the credentials, else L{None}."""
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
                return avatarId.decode() if isinstance(avatarId, bytes) else str(avatarId)
        return None

    def _recordFailure(self, host: str) -> int:
        now = self.reactor.seconds()
        self._expire()
        record = self.failures.pop(host, None) or _Failures(0, now)
        record.count += 1
        record.last = now
        self.failures[host] = record  # now the most recent
        while len(self.failures) > self.maxHosts:
            self.failures.popitem(last=False)
        return record.count

    def _expire(self) -> None:
        cutoff = self.reactor.seconds() - self.forgetAfter
        while self.failures:
            oldest = next(iter(self.failures.values()))
            if oldest.last > cutoff:
                break
            self.failures.popitem(last=False)

    def isKnownUser(self, username: str) -> bool:
        """
        Whether C{username} is an account of a C{memory:} or C{file:} checker
        (so that chat can reserve registered nicknames).  Checkers that cannot
        list their users (C{unix}) answer no.
        """
        return username in self.accountNames()

    def accountNames(self) -> list[str]:
        """
        The accounts of the C{memory:} and C{file:} checkers (chat reserves
        every nickname that is a form of one); C{unix} cannot list its users.
        An unreadable password file lists none (its logins fail anyway).
        """
        accounts: list[str] = []
        for checker in self.checkers:
            if isinstance(checker, InMemoryUsernamePasswordDatabaseDontUse):
                names = list(checker.users)
            elif isinstance(checker, FilePasswordDB):
                try:
                    # Twisted offers no public way to list a password file.
                    names = [name for name, _ in checker._loadCredentials()]
                except OSError:
                    continue
            else:
                continue
            accounts += [
                n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names
            ]
        return accounts
