"""
L{tcplab.chat.joins}: newcomers join the default room after the delay, in
arrival order, under one timer; over a connection the delay still lets a
first ``/nick`` or ``/nohistory`` come first.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher

from tcplab.chat.joins import GRANULARITY, DelayedJoins
from tests.chat.memorychat import Chat


class Newcomer:
    """Records when it was told to join."""

    def __init__(self, name: str, clock: Clock, log: list[tuple[str, float]]) -> None:
        self.name, self.clock, self.log = name, clock, log

    def joinWhenDue(self) -> None:
        """Note the time."""
        self.log.append((self.name, self.clock.seconds()))


class Broken(Newcomer):
    """A newcomer whose join fails."""

    def joinWhenDue(self) -> None:
        """Fail."""
        raise RuntimeError("boom")


def test_each_joins_after_the_delay_in_arrival_order_on_one_timer() -> None:
    """Thousands arriving together wait on one timer; each joins no sooner than the delay
    and at most GRANULARITY later, in arrival order."""
    clock, log = Clock(), list[tuple[str, float]]()
    joins = DelayedJoins(clock, 0.25)
    arrivals = {}
    for n in range(3000):
        clock.advance(0.0001 if n % 100 else 0.003)
        arrivals[f"c{n}"] = clock.seconds()
        joins.add(Newcomer(f"c{n}", clock, log))
    assert len(clock.getDelayedCalls()) == 1
    clock.pump([0.001] * 600)
    assert [name for name, _ in log] == [f"c{n}" for n in range(3000)]
    waits = [at - arrivals[name] for name, at in log]
    assert min(waits) >= 0.25 - 1e-9
    assert max(waits) <= 0.25 + GRANULARITY + 0.001 + 1e-9
    assert not joins.batches and joins.call is None and clock.getDelayedCalls() == []


def test_a_failing_join_does_not_hold_up_the_others() -> None:
    """One newcomer's join raising is logged; the rest of its batch and later ones join."""
    clock, log = Clock(), list[tuple[str, float]]()
    events: list[dict[str, Any]] = []
    record = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(record)
    try:
        joins = DelayedJoins(clock, 0.25)
        joins.add(Newcomer("a", clock, log))
        joins.add(Broken("b", clock, log))
        joins.add(Newcomer("c", clock, log))
        clock.advance(1)
        joins.add(Newcomer("d", clock, log))
        clock.advance(1)
    finally:
        globalLogPublisher.removeObserver(record)
    assert [name for name, _ in log] == ["a", "c", "d"]
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0].check(RuntimeError)


def test_connections_join_after_the_delay_unless_they_chose_first() -> None:
    """A quiet client is in the default room once the delay has passed, not before; one that
    says ``/nohistory`` first is in at once, and neither is joined twice."""
    chat = Chat(joinDelay=0.25)
    quiet, early = chat.connect(), chat.connect()
    early.send("/nohistory")
    assert chat.factory.hub.roomOf(early.protocol) == chat.factory.hub.defaultRoom
    chat.advance(0.2)
    assert chat.factory.hub.roomOf(quiet.protocol) is None
    chat.advance(0.1)
    assert chat.factory.hub.roomOf(quiet.protocol) == chat.factory.hub.defaultRoom
    quietLines, earlyLines = quiet.lines(), early.lines()
    assert sum("end of history" in line for line in quietLines) == 1
    assert not any("end of history" in line for line in earlyLines)
    quiet.send("hello")
    assert early.lines()[-1].endswith("hello")
