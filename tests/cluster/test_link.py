"""The cluster's Redis side in process: URLs, and delivery over a real Redis that drops us."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import capturedLogs

from tcplab.chat import names
from tcplab.chat.cluster import LINK_LOST, ClusterHub
from tcplab.chat.clusterlink import ClusterLink
from tcplab.chat.events import ChatEvent, Delivery, Notice
from tcplab.chat.redislink import RedisTarget, parseRedisURL
from tcplab.metrics import Metrics
from tests.cluster.redis import RedisServer
from tests.support import makeCertificates, waitUntil


def test_record_that_is_not_an_object_is_skipped() -> None:
    """A stream record whose JSON is not an object is skipped with a warning, the next applied."""
    hub = ClusterHub(node="aaaa")
    link = ClusterLink(hub, RedisTarget("127.0.0.1", 1), Metrics("t"), pytest.fail)
    with capturedLogs() as events:
        link._received(["n", "bbbb", "s", "1", "d", "[1, 2]"])
        link._received(
            ["n", "bbbb", "s", "2", "d", '{"k": "announce", "room": "#r", "text": "hi"}']
        )
    assert [e["log_format"] for e in events] == ["bad cluster record skipped: {why}"]
    assert hub._seen == {"bbbb": 2}


def test_redis_urls() -> None:
    """redis:// and rediss:// URLs give host, port, database, user and password."""
    assert parseRedisURL("redis://db.example:6380/2") == RedisTarget("db.example", 6380, 2)
    target = parseRedisURL("rediss://bot:p%40ss@[::1]")
    assert target == RedisTarget("::1", 6379, None, "bot", "p@ss", True)
    assert target.describe() == "rediss://[::1]:6379"
    assert parseRedisURL("redis://:secret@h").password == "secret"
    assert parseRedisURL("rediss://h?cafile=/ca.pem").cafile == "/ca.pem"
    for bad in (
        "http://h",
        "redis://h/x",
        "redis://:6379",
        "redis://h:99999",
        "redis://h?cafile=/ca.pem",
        "rediss://h?x=1",
    ):
        with pytest.raises(ValueError):
            parseRedisURL(bad)


class Listener:
    """A participant that keeps every line it hears."""

    def __init__(self) -> None:
        self.heard: list[Delivery] = []

    def receive(self, delivery: Delivery) -> None:
        """Keep it."""
        self.heard.append(delivery)

    def said(self) -> list[str]:
        """The texts of the messages heard."""
        return [d.text for d in self.heard if isinstance(d, ChatEvent) and d.kind == "message"]


def startNode(redis: RedisServer) -> tuple[ClusterHub, ClusterLink]:
    """An in-process cluster node on the real Redis."""
    hub = ClusterHub()
    link = ClusterLink(hub, parseRedisURL(redis.url), Metrics("t"), pytest.fail, ttl=2)
    link.startService()
    return hub, link


@pytest_twisted.ensureDeferred
async def test_lines_arrive_once_in_order_across_a_dropped_connection(redis: RedisServer) -> None:
    """Lines in flight when the writer's connection drops are sent again and arrive once."""
    (hubA, linkA), (hubB, linkB) = startNode(redis), startNode(redis)
    try:
        await linkA.ready
        await linkB.ready
        alice, bob = Listener(), Listener()
        hubA.connect(alice)
        hubA.join(alice, "#lobby")
        hubB.connect(bob)
        hubB.join(bob, "#lobby")
        await waitUntil(lambda: len(hubB.usersIn("#lobby")) == 2)
        for i in range(40):
            hubA.say(alice, f"line {i}")
            if i == 20:
                # Sent but (mostly) not yet acknowledged: the connection dies.
                assert linkA.writer.connection is not None
                linkA.writer.connection.transport.abortConnection()
        await waitUntil(lambda: len(bob.said()) >= 40)
        hubA.say(alice, "end")
        await waitUntil(lambda: bob.said()[-1:] == ["end"])
        assert bob.said() == [f"line {i}" for i in range(40)] + ["end"]
        assert linkA.metrics.value("tcplab_chat_cluster_link_lost_total") == 1
    finally:
        await linkA.stopService()
        await linkB.stopService()


@pytest_twisted.ensureDeferred
async def test_a_record_sent_twice_is_applied_once(redis: RedisServer) -> None:
    """A record whose reply was lost and that is sent again lands in the stream once."""
    _, link = startNode(redis)
    try:
        await link.ready
        sent: list[Any] = []
        link._enqueue = sent.append  # type: ignore[method-assign,assignment]
        link.publish({"k": "announce", "room": "#lobby", "text": "once"})
        entry = sent[0]
        for _ in range(2):
            await link.writer.execute(
                "EVAL", entry.script, len(entry.keys), *entry.keys, *entry.args
            )
        assert int(await link.writer.execute("XLEN", link.key("events"))) == 1
    finally:
        await link.stopService()


def test_hub_applies_each_record_of_a_node_once() -> None:
    """A record seen again (same node, same sequence number) is not delivered twice."""
    hub, bob = ClusterHub(), Listener()
    hub.connect(bob)
    hub.join(bob, "#lobby")
    record = {"k": "message", "id": "n1.1", "nick": "alice", "room": "#lobby", "text": "hi"}
    for seq in (1, 1, 2):
        hub.apply("n1", seq, record)
    assert bob.said() == ["hi", "hi"]


@pytest_twisted.ensureDeferred
async def test_tls_and_password(tmp_path: Path) -> None:
    """rediss:// with a password reaches a TLS Redis that checks it; a wrong one is refused."""
    server = RedisServer(tmp_path, password="s3cret", tls=makeCertificates(tmp_path))
    try:
        _, link = startNode(server)
        try:
            await link.ready
            assert link.up and await link.writer.execute("PING") == "PONG"
        finally:
            await link.stopService()
        wrong = parseRedisURL(server.url.replace("s3cret", "wrong"))
        refusals: list[str] = []
        bad = ClusterLink(ClusterHub(), wrong, Metrics("t"), refusals.append, startTimeout=0.5)
        bad.startService()
        try:
            await waitUntil(lambda: bool(refusals))
            assert "could not auth" in refusals[0] and not bad.synced
        finally:
            await bad.stopService()
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_outage_keeps_a_bounded_number_of_lines(redis: RedisServer) -> None:
    """Redis gone: local users still hear each other; lines past the bound are only counted."""
    hub = ClusterHub()
    target = parseRedisURL(redis.url)
    link = ClusterLink(hub, target, Metrics("t"), pytest.fail, ttl=2, maxOutbox=5)
    link.startService()
    try:
        await link.ready
        alice, carol = Listener(), Listener()
        for who in (alice, carol):
            hub.connect(who)
            hub.join(who, "#lobby")
        await waitUntil(lambda: not link.outbox)
        redis.stop()
        await waitUntil(lambda: not link.up)
        assert [d.text for d in carol.heard if isinstance(d, Notice)] == [LINK_LOST]
        for i in range(8):
            hub.say(alice, f"line {i}")
        assert carol.said() == [f"line {i}" for i in range(8)]
        assert len(link.outbox) == 5
        assert link.metrics.value("tcplab_chat_cluster_dropped_total") == 3
    finally:
        await link.stopService()


@pytest_twisted.ensureDeferred
async def test_nickname_held_elsewhere_after_an_outage_is_renamed(redis: RedisServer) -> None:
    """A claim found held by another node (taken while we were away) renames our user, told so."""
    hub, link = startNode(redis)
    try:
        await link.ready
        alice = Listener()
        hub.connect(alice)
        hub.rename(alice, "alice")
        await waitUntil(lambda: not link.outbox)
        # What another node does when our claim expired during an outage.
        key = link.key(f"nick:{names.skeleton('alice')}")
        await link.writer.execute("SET", key, "othernode")
        await waitUntil(lambda: hub.nickOf(alice) != "alice")
        notices = [d.text for d in alice.heard if isinstance(d, Notice)]
        assert notices[-1].startswith("nickname alice was taken on another server")
        assert notices[-1].endswith(f"you are {hub.nickOf(alice)}")
    finally:
        await link.stopService()
