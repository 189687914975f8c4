"""
The one place tcplab reaches for Twisted's global reactor.

Every class that needs a reactor takes one as a parameter (tests pass a
L{twisted.internet.task.Clock} or a memory reactor); when none is given, it
calls L{defaultReactor}.  Importing the global reactor late, inside the call,
lets programs and test runners install the reactor of their choice first.
"""

from __future__ import annotations

from typing import Any


def defaultReactor(reactor: Any = None) -> Any:
    """
    C{reactor} if one was given, else Twisted's global reactor.

    The reactor is typed C{Any} on purpose: it provides many interfaces at
    once (time, TCP, UDP, threads, core), which no single type here names.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as globalReactor

    return globalReactor
