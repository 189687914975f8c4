"""
Blocking work off the reactor thread, bounded.

Hashing the kept part of a resumed transfer (gigabytes, seconds of work),
reading a directory of 100,000 names, sweeping the tree for abandoned
partials: each would freeze every connection if run on the reactor thread.
L{ThreadedWork} runs such jobs in the reactor's thread pool (C{hashlib} and
file reads release the GIL, so they really run beside the reactor), at most
C{maxThreads} at a time, and refuses with L{Busy} once C{maxPending} jobs
are queued, so no number of clients can queue unbounded work.
L{InlineWork} runs them on the spot, for in-memory tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from tcplab.files.errors import Busy

T = TypeVar("T")


class IBlockingWork(Interface):
    """Something that runs blocking jobs and reports through Deferreds."""

    def run(job: Callable[[], T]) -> defer.Deferred[T]:  # noqa: N805 (zope Interface)
        """
        Run C{job} (no arguments); the Deferred fires with its result or
        fails with its exception.

        @raise Busy: too many jobs are waiting already.
        """


@implementer(IBlockingWork)
class ThreadedWork:
    """
    Run jobs in C{reactor}'s thread pool, C{maxThreads} at a time.

    @ivar pending: jobs accepted and not finished (running or queued).
    """

    def __init__(
        self, reactor: IReactorThreads, maxThreads: int = 2, maxPending: int = 64
    ) -> None:
        self.reactor = reactor
        self.maxPending = maxPending
        self.pending = 0
        self._slots = defer.DeferredSemaphore(maxThreads)

    def run(self, job: Callable[[], T]) -> defer.Deferred[T]:
        """Queue C{job}; see L{IBlockingWork.run}."""
        if self.pending >= self.maxPending:
            raise Busy("the server is busy with other clients' work; try again later")
        self.pending += 1

        def inThread() -> defer.Deferred[T]:
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), job)

        def done(result: T | Failure) -> T | Failure:
            self.pending -= 1
            return result

        return self._slots.run(inThread).addBoth(done)


@implementer(IBlockingWork)
class InlineWork:
    """Run each job at once, on the calling thread (tests, tiny deployments)."""

    def run(self, job: Callable[[], T]) -> defer.Deferred[T]:
        """Run C{job} now; see L{IBlockingWork.run}."""
        return defer.maybeDeferred(job)
