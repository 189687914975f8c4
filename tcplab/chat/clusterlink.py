"""
The Redis side of C{tcplab-chat --cluster}: the bus, the claims, the heartbeat.

L{ClusterLink} is the service that connects a L{ClusterHub} to Redis with
two connections (L{RedisLink}): a writer, which appends this node's records
to one Redis Stream through the atomic scripts of
L{tcplab.chat.clusterscripts} and beats the node's heartbeat, and a reader,
which reads the stream from the last id it has seen (C{XREAD BLOCK}) on
every connection it gets.

Delivery: records leave in the order they were made, through one
connection; one that was sent but not acknowledged when the connection
dropped is sent again, and the scripts apply it at most once, so every
line reaches every node exactly once, in order.  While Redis is away the
node keeps serving its own users, tells them once, and keeps at most
C{maxOutbox} lines to send (membership records are always kept); lines past
that reach this node's users only and are counted.  A node that was away
for longer than C{ttl} is seen by the others as gone: on its return it
announces its members again, and a nickname taken meanwhile elsewhere is
renamed here with a notice.  A reader that was away longer than it takes
the stream to grow by C{streamLength} records misses the records trimmed
meanwhile.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.chat import clusterscripts
from tcplab.chat.cluster import LINK_BACK, LINK_LOST, ClusterHub, IClusterBus
from tcplab.chat.hub import ChatError, ChatParticipant
from tcplab.chat.redislink import RedisLink, RedisReply, RedisTarget
from tcplab.metrics import Metrics, Sample
from tcplab.reactors import defaultReactor

__all__ = ["ClusterLink"]

PREFIX = "tcplab:chat:"
TTL = 5.0
"""
Seconds without a heartbeat after which a node's users are shown as gone
(the heartbeat beats five times in that time).
"""
MAX_OUTBOX = 10_000
"""Lines kept to send while Redis is away."""
READ_BATCH = 1000
BLOCK_MS = 250
"""Milliseconds an XREAD waits for news (well under the reply timeout)."""


@dataclass(slots=True)
class _Entry:
    """One script run waiting to be acknowledged, in sending order."""

    script: str
    keys: list[str]
    args: list[str | int]
    answer: Callable[[bool], None] | None
    droppable: bool


@implementer(IClusterBus)
class ClusterLink(Service):
    """
    Connect a L{ClusterHub} to the other nodes through Redis.

    @ivar ready: fires once Redis was reached and the cluster's state read;
        fails if that did not happen within C{startTimeout} (unless starting
        local-only is allowed).
    """

    log = Logger()

    def __init__(
        self,
        hub: ClusterHub,
        target: RedisTarget,
        metrics: Metrics,
        onFatal: Callable[[str], None],
        # Any: the reactor as timer and, through RedisLink, for connecting.
        reactor: Any = None,
        startTimeout: float = 5.0,
        localStart: bool = False,
        ttl: float = TTL,
        maxOutbox: int = MAX_OUTBOX,
        prefix: str = PREFIX,
    ) -> None:
        self.hub = hub
        self.target = target
        self.metrics = metrics
        self.onFatal = onFatal
        self.reactor = defaultReactor(reactor)
        self.startTimeout = startTimeout
        self.localStart = localStart
        self.heartbeatInterval = ttl / 5
        self.ttl = ttl
        self.maxOutbox = maxOutbox
        self.prefix = prefix
        self.node = hub.node
        self.calls = clusterscripts.Calls(prefix, self.node)
        # A reply slower than half the ttl means Redis is not answering.
        replyTimeout = max(ttl / 2, 0.5)
        self.writer = RedisLink(
            target, self._writerUp, self._writerDown, self.reactor, replyTimeout
        )
        self.reader = RedisLink(target, self._readerUp, lambda: None, self.reactor, replyTimeout)
        self.outbox: deque[_Entry] = deque()
        self.sent = 0
        self.generation = 0
        self.seqs = count(1)
        self.lastId = "0-0"
        self.synced = False
        self.upSince = 0.0
        self.everUp = False
        self.lost = False
        self.reading = False
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.beat = LoopingCall(self._heartbeat)
        self.beat.clock = self.reactor
        self._startCall: IDelayedCall | None = None
        metrics.describe("tcplab_chat_cluster_link_up", "gauge", "1 while Redis is reachable.")
        metrics.describe(
            "tcplab_chat_cluster_link_lost_total", "counter", "Times the link to Redis was lost."
        )
        metrics.describe(
            "tcplab_chat_cluster_outbox", "gauge", "Records waiting to be sent to Redis."
        )
        metrics.describe(
            "tcplab_chat_cluster_dropped_total",
            "counter",
            "Lines not sent to other nodes because the outbox was full.",
        )
        metrics.addCollector(self._samples)

    def key(self, name: str) -> str:
        """A key under the cluster's prefix."""
        return self.prefix + name

    @property
    def up(self) -> bool:
        """Whether records reach Redis now."""
        return self.writer.up

    def _samples(self) -> list[Sample]:
        return [
            ("tcplab_chat_cluster_link_up", {}, 1.0 if self.writer.up else 0.0),
            ("tcplab_chat_cluster_outbox", {}, float(len(self.outbox))),
        ]

    # Service

    def startService(self) -> None:
        """Connect, and give up (unless starting local-only is allowed) after C{startTimeout}."""
        super().startService()
        self.hub.bus = self
        self.writer.start()
        self.reader.start()
        self._startCall = self.reactor.callLater(self.startTimeout, self._startTimedOut)

    def _startTimedOut(self) -> None:
        self._startCall = None
        if self.synced:
            return
        why = self.writer.refused or self.reader.refused or "no answer"
        message = f"cannot reach Redis at {self.target.describe()}: {why}"
        if self.localStart:
            self.log.warn("{message}; serving local users until it answers", message=message)
            return
        self.ready.errback(ConnectionError(message))
        self.ready.addErrback(lambda _: None)
        self.onFatal(message)

    async def _stop(self) -> None:
        if self._startCall is not None and self._startCall.active():
            self._startCall.cancel()
        if self.beat.running:
            self.beat.stop()
        # The drain before us made every local user leave: let those records go.
        deadline = self.reactor.seconds() + 2.0
        while self.outbox and self.writer.up and self.reactor.seconds() < deadline:
            d: defer.Deferred[None] = defer.Deferred()
            self.reactor.callLater(0.05, d.callback, None)
            await d
        if self.writer.up:
            with contextlib.suppress(Exception):
                await self.writer.execute("DEL", self.key(f"alive:{self.node}"))
        self.reading = False
        await defer.gatherResults([self.writer.stop(), self.reader.stop()], consumeErrors=True)

    def stopService(self) -> defer.Deferred[None]:
        """Send what is left (briefly), mark this node gone, disconnect."""
        super().stopService()
        return defer.ensureDeferred(self._stop())

    # Writing

    def publish(
        self,
        record: Mapping[str, object],
        member: tuple[str, str, str] | None = None,
        history: tuple[str, str] | None = None,
    ) -> None:
        """Queue a record (see L{IClusterBus.publish})."""
        call = self.calls.publish(next(self.seqs), record, member, history, self.hub.historySize)
        self._enqueue(_Entry(*call, None, member is None))

    def claim(
        self,
        record: Mapping[str, object],
        memberId: str,
        memberValue: str,
        newKey: str,
        oldKey: str,
        answer: Callable[[bool], None],
    ) -> None:
        """Queue a nickname claim (see L{IClusterBus.claim})."""
        seq = next(self.seqs)
        call = self.calls.claim(seq, record, memberId, memberValue, newKey, oldKey, self.ttl)
        self._enqueue(_Entry(*call, answer, False))

    def quit(self, record: Mapping[str, object], memberId: str, key: str) -> None:
        """Queue a departure (see L{IClusterBus.quit})."""
        call = self.calls.quit(next(self.seqs), record, memberId, key)
        self._enqueue(_Entry(*call, None, False))

    def _enqueue(self, entry: _Entry) -> None:
        if entry.droppable and len(self.outbox) >= self.maxOutbox:
            self.metrics.increment("tcplab_chat_cluster_dropped_total")
            return
        self.outbox.append(entry)
        self._pump()

    def _pump(self) -> None:
        if not self.writer.up:
            return
        generation = self.generation
        while self.sent < len(self.outbox):
            entry = self.outbox[self.sent]
            self.sent += 1
            d = self.writer.execute(
                "EVAL", entry.script, len(entry.keys), *entry.keys, *entry.args
            )
            d.addCallbacks(
                self._acked, self._failed, callbackArgs=(generation,), errbackArgs=(generation,)
            )

    def _acked(self, result: object, generation: int) -> None:
        if generation != self.generation:
            return
        entry = self.outbox.popleft()
        self.sent -= 1
        if entry.answer is not None:
            entry.answer(str(result) == "1")

    def _failed(self, failure: Failure, generation: int) -> None:
        if generation != self.generation:
            return
        if not self.writer.up:
            return
        # Redis answered with an error: that record will not do better.
        entry = self.outbox.popleft()
        self.sent -= 1
        self.log.error("Redis refused a cluster record: {why}", why=failure.getErrorMessage())
        if entry.answer is not None:
            entry.answer(True)

    def _writerUp(self) -> None:
        self.upSince = self.reactor.seconds()
        self.generation += 1
        self.sent = 0
        if self.lost:
            self.lost = False
            self.log.info("link to Redis at {target} restored", target=self.target.describe())
            self.hub.tellLocal(LINK_BACK)
            self.hub.reannounce()
        self.everUp = True
        if not self.beat.running:
            self.beat.start(self.heartbeatInterval, now=True)
        self._pump()

    def _writerDown(self) -> None:
        self.generation += 1
        self.sent = 0
        if self.beat.running:
            self.beat.stop()
        if self.running and self.everUp and not self.lost:
            self.lost = True
            self.metrics.increment("tcplab_chat_cluster_link_lost_total")
            self.log.warn("link to Redis at {target} lost", target=self.target.describe())
            self.hub.tellLocal(LINK_LOST)

    # The heartbeat

    def _heartbeat(self) -> None:
        claims = self.hub.localClaims()
        remote = sorted(self.hub.remoteNodes())
        args = [self.prefix, self.node, int(self.ttl * 1000), len(claims), *claims, *remote]
        d = self.writer.execute("EVAL", clusterscripts.HEARTBEAT, 0, *args)
        d.addCallbacks(lambda reply: self._beaten(reply, claims), lambda _: None)

    def _beaten(self, reply: RedisReply, claims: dict[str, ChatParticipant]) -> None:
        lost, dead = reply
        for key in lost or ():
            participant = claims.get(str(key))
            if participant is not None:
                self.hub.renameLocal(str(key), participant)
        if self.reactor.seconds() - self.upSince < self.ttl:
            # Just back from an outage: the others may not have beaten since
            # (a Redis restarted empty), so nobody is declared gone yet.
            return
        for node in dead or ():
            self.log.info("cluster node {node} stopped beating: its users are gone", node=node)
            self.hub.nodeGone(str(node))

    # Reading

    def _readerUp(self) -> None:
        if not self.reading and self.reader.up and self.running:
            self.reading = True
            defer.ensureDeferred(self._read()).addErrback(
                lambda f: self.log.failure("cluster reader failed", f)
            )

    async def _read(self) -> None:
        try:
            if not self.synced:
                await self._snapshot()
            while self.reader.up and self.running:
                reply = await self.reader.execute(
                    "XREAD",
                    "COUNT",
                    READ_BATCH,
                    "BLOCK",
                    BLOCK_MS,
                    "STREAMS",
                    self.key("events"),
                    self.lastId,
                )
                for _stream, entries in reply or ():
                    for entryId, fields in entries:
                        self.lastId = str(entryId)
                        self._received(fields)
        except Exception as e:
            self.log.debug("cluster reader stopped: {why}", why=e)
        finally:
            self.reading = False
        # A lost connection restarts the reader when it is back (_readerUp);
        # any other failure gets another try a little later, never at once.
        if self.reader.up and self.running:
            self.reactor.callLater(0.5, self._readerUp)

    def _received(self, fields: list[RedisReply]) -> None:
        values = dict(zip(fields[::2], fields[1::2]))
        try:
            record = json.loads(values["d"])
            if not isinstance(record, dict):
                raise TypeError("a cluster record must be a JSON object")
            self.hub.apply(str(values["n"]), int(values["s"]), record)
        except (KeyError, ValueError, TypeError) as e:
            self.log.warn("bad cluster record skipped: {why}", why=e)

    async def _snapshot(self) -> None:
        """Read where the stream ends, who is on the other nodes, and the rooms' history."""
        last = await self.reader.execute("XREVRANGE", self.key("events"), "+", "-", "COUNT", 1)
        if last:
            self.lastId = str(last[0][0])
        for node in await self.reader.execute("SMEMBERS", self.key("nodes")) or ():
            node = str(node)
            if node == self.node:
                continue
            if not int(await self.reader.execute("EXISTS", self.key(f"alive:{node}"))):
                continue
            flat = await self.reader.execute("HGETALL", self.key(f"members:{node}")) or []
            for memberId, value in zip(flat[::2], flat[1::2]):
                member = json.loads(value)
                self.hub.addRemote(node, str(memberId), str(member["nick"]), member.get("room"))
        if self.hub.historySize:
            for room in await self.reader.execute("SMEMBERS", self.key("rooms")) or ():
                entries = await self.reader.execute(
                    "LRANGE", self.key(f"history:{room}"), -self.hub.historySize, -1
                )
                try:
                    self.hub.seedHistory(str(room), [str(e) for e in entries or ()])
                except ChatError:
                    break
        self.synced = True
        self.log.info(
            "cluster node {node} joined through {target}",
            node=self.node,
            target=self.target.describe(),
        )
        if not self.ready.called:
            self.ready.callback(None)
