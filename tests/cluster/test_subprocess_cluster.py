"""Real ``twistd -n tcplab-chat --cluster`` nodes over a real Redis, driven by sockets."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chat.test_subprocess import LineClient
from tests.cluster.redis import RedisServer, freePort
from tests.support import ServerProcess, runTwistd

pytestmark = pytest.mark.subprocess

TTL = "2"
"""--cluster-ttl of the test nodes: a killed node's users are gone within it."""


@contextmanager
def node(redis: RedisServer, *args: str) -> Iterator[ServerProcess]:
    """One chat node of the cluster, stopped after use."""
    server = ServerProcess("tcplab-chat", ["--cluster", redis.url, "--cluster-ttl", TTL, *args])
    try:
        server.waitForLine(re.compile("cluster node .* joined"))
        yield server
    finally:
        server.stop()


def login(port: int, nick: str) -> LineClient:
    """A client on C{port} that took C{nick} and is in the lobby."""
    client = LineClient(port)
    client.send(f"/nick {nick}")
    client.readUntil("end of history")
    return client


def whoIn(reply: str) -> list[str]:
    """The nicknames of a C{/who} reply line, sorted."""
    return sorted(reply.split(": ", 1)[1].split(", "))


def test_two_nodes_are_one_chat(redis: RedisServer) -> None:
    """Users on two nodes share rooms, /who, joins, /msg and the room's history."""
    with node(redis) as a, node(redis) as b:
        alice = login(a.port, "alice")
        bob = login(b.port, "bob")
        alice.readUntil("bob joined #lobby")
        alice.send("hi bob")
        assert bob.readUntil("<alice>")[-1] == "<alice> hi bob"
        bob.send("/me waves")
        assert alice.readUntil("waves")[-1] == "* bob waves"
        bob.send("/who")
        assert whoIn(bob.readUntil("in #lobby")[-1]) == ["alice", "bob"]
        bob.send("/msg ALICE psst")
        assert alice.readUntil("psst")[-1] == "[private] <bob> psst"
        # A newcomer on bob's node is shown alice's line from the shared history.
        replay = LineClient(b.port).readUntil("end of history")
        assert any(line.endswith("<alice> hi bob") for line in replay)
        assert any(line.endswith("* bob waves") for line in replay)
        alice.send("/join #side")
        assert bob.readUntil("alice left")[-1] == "*** alice left #lobby (joined #side)"
        bob.send("/join #side")
        bob.send("/who")
        assert bob.readUntil("in #side")[-1] == "*** in #side: alice, bob"


def test_history_survives_on_a_node_that_starts_later(redis: RedisServer) -> None:
    """A node started after the talk replays the room's last lines, read from Redis."""
    with node(redis) as a:
        alice = login(a.port, "alice")
        for i in range(3):
            alice.send(f"line {i}")
        alice.send("/who")
        alice.readUntil("in #lobby")
        with node(redis, "--history", "2") as b:
            replay = LineClient(b.port).readUntil("end of history")
            lines = [line for line in replay if "<alice>" in line]
            assert [line.split("] ", 1)[1] for line in lines] == [
                "<alice> line 1",
                "<alice> line 2",
            ]
            bob = login(b.port, "bob")
            bob.send("/who")
            assert whoIn(bob.readUntil("in #lobby")[-1]) == ["alice", "bob"]


def readEither(clients: list[LineClient], text: str) -> list[list[str]]:
    """Read both clients' lines as they come until one of them says C{text}."""
    heard: list[list[str]] = [[] for _ in clients]
    with selectors.DefaultSelector() as selector:
        for i, client in enumerate(clients):
            selector.register(client.sock, selectors.EVENT_READ, i)
        while not any(text in line for lines in heard for line in lines):
            events = selector.select(10)
            assert events, f"nobody said {text!r}: {heard}"
            for key, _ in events:
                client = clients[key.data]
                chunk = client.sock.recv(4096)
                assert chunk, heard
                client.buffer += chunk
                *complete, client.buffer = client.buffer.split(b"\r\n")
                heard[key.data] += [line.decode() for line in complete]
    return heard


def test_nick_race_ends_with_one_owner(redis: RedisServer) -> None:
    """Two nodes' users asking for one nickname (in other cases) at once: exactly one keeps it."""
    with node(redis) as a, node(redis) as b:
        clients = [LineClient(a.port), LineClient(b.port)]
        for client in clients:
            client.readUntil("end of history")
        clients[0].send("/nick Dana")
        clients[1].send("/nick dANA")
        heard = readEither(clients, "is taken")
        loser = 0 if any("is taken" in line for line in heard[0]) else 1
        notice = next(line for line in heard[loser] if "is taken" in line)
        if "another server" in notice:
            # Renamed at once, then back to its guest name when the claim failed.
            guest = next(line for line in heard[loser] if "known as" in line).split()[1]
            assert notice.endswith(f"is taken on another server; you are {guest}"), heard
        winner = clients[1 - loser]
        winner.send("/who")
        owners = [w for w in whoIn(winner.readUntil("in #lobby")[-1]) if w.lower() == "dana"]
        assert owners == [["Dana", "dANA"][1 - loser]], heard


def test_redis_paused_then_resumed_loses_nothing(redis: RedisServer) -> None:
    """Redis stopped (SIGSTOP): users told once; after SIGCONT each line arrives once, in order."""
    with node(redis) as a, node(redis) as b:
        alice = login(a.port, "alice")
        bob = login(b.port, "bob")
        alice.readUntil("bob joined")
        redis.signal(signal.SIGSTOP)
        try:
            assert "link to other servers lost" in bob.readUntil("link to other")[-1]
            alice.readUntil("link to other servers lost")
            for i in range(5):
                alice.send(f"during {i}")
        finally:
            redis.signal(signal.SIGCONT)
        lines = bob.readUntil("during 4")
        alice.send("after")
        lines += bob.readUntil("<alice> after")
        said = [line for line in lines if line.startswith("<alice>")]
        assert said == [f"<alice> during {i}" for i in range(5)] + ["<alice> after"]
        assert sum("link to other servers lost" in line for line in lines) == 0


def test_redis_restarted_mid_chat(redis: RedisServer) -> None:
    """Redis killed and restarted empty: lines sent meanwhile arrive, and /who is whole again."""
    with node(redis) as a, node(redis) as b:
        alice = login(a.port, "alice")
        bob = login(b.port, "bob")
        alice.readUntil("bob joined")
        alice.send("ready")
        bob.readUntil("<alice> ready")
        redis.stop()
        bob.readUntil("link to other servers lost")
        alice.readUntil("link to other servers lost")
        alice.send("while away")
        redis.start()
        assert bob.readUntil("while away")[-1] == "<alice> while away"
        bob.send("/who")
        assert whoIn(bob.readUntil("in #lobby")[-1]) == ["alice", "bob"]


def test_killed_node_users_are_gone(redis: RedisServer) -> None:
    """A node killed with SIGKILL: its users are shown as gone elsewhere within the ttl."""
    with node(redis) as a, node(redis) as b:
        bob = login(b.port, "bob")
        alice = login(a.port, "alice")
        bob.readUntil("alice joined")
        a.stop(signal.SIGKILL)
        assert bob.readUntil("alice left")[-1] == "*** alice left #lobby (server gone)"
        alice.close()


def test_stopped_node_users_leave_at_once(redis: RedisServer) -> None:
    """A node stopped with SIGTERM: its users are shown leaving everywhere, with the reason."""
    with node(redis) as a, node(redis) as b:
        bob = login(b.port, "bob")
        alice = login(a.port, "alice")
        bob.readUntil("alice joined")
        a.stop()
        assert bob.readUntil("alice left")[-1] == "*** alice left #lobby (server shutting down)"
        alice.close()


def test_workers_share_one_port_and_one_chat(redis: RedisServer) -> None:
    """--workers 2 --cluster on one port: every client is in the same room, whichever worker."""
    port = freePort()
    listen = f"tcp:{port}:interface=127.0.0.1"
    server = ServerProcess(
        "tcplab-chat",
        ["--workers", "2", "--listen", listen, "--cluster", redis.url, "--max-per-ip", "10"],
    )
    try:
        server.waitForLine(re.compile("cluster node .* joined"), count=2)
        clients = [login(port, f"user{i}") for i in range(6)]
        clients[0].send("hello all")
        for client in clients[1:]:
            assert client.readUntil("hello all")[-1] == "<user0> hello all"
        # A node's records arrive in order, so once user5 has a line from
        # each of the others, their joins have reached user5's worker too
        # (records of different nodes may interleave either way).
        for number, client in enumerate(clients[1:5], start=1):
            client.send(f"hello from user{number}")
        heard = {"<user0> hello all"}
        while len(heard) < 5:
            heard.add(clients[5].readUntil("hello ")[-1])
        assert heard == {"<user0> hello all"} | {
            f"<user{n}> hello from user{n}" for n in range(1, 5)
        }
        clients[5].send("/who")
        assert whoIn(clients[5].readUntil("in #lobby")[-1]) == [f"user{i}" for i in range(6)]
    finally:
        # twistd ends by re-raising SIGTERM once its services have stopped.
        assert server.stop() == -signal.SIGTERM
    assert "tcplab-chat worker 0 stopped" in "".join(server.output)
    assert "tcplab-chat worker 1 stopped" in "".join(server.output)


def test_unreachable_redis_is_one_line_and_exit_10() -> None:
    """Redis not answering at start-up: one line on stderr, exit status 10."""
    url = f"redis://127.0.0.1:{freePort()}"
    result = runTwistd(
        "tcplab-chat",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--cluster",
        url,
        "--cluster-timeout",
        "1",
    )
    assert result.returncode == 10
    assert result.stderr.decode().strip().splitlines()[-1] == (
        f"tcplab-chat: cannot reach Redis at {url}: no answer"
    )


def test_local_start_serves_until_redis_comes(tmp_path: Path) -> None:
    """--cluster-local-start: no Redis at start-up, local users chat; it joins once Redis is up."""
    redis = RedisServer(tmp_path)
    redis.stop()
    server = ServerProcess(
        "tcplab-chat",
        ["--cluster", redis.url, "--cluster-timeout", "0.5", "--cluster-local-start"],
    )
    try:
        server.waitForLine(re.compile("serving local users until it answers"))
        alice, bob = login(server.port, "alice"), login(server.port, "bob")
        alice.send("anyone?")
        assert bob.readUntil("anyone")[-1] == "<alice> anyone?"
        redis.start()
        server.waitForLine(re.compile("cluster node .* joined"))
    finally:
        server.stop()
        redis.stop()


def test_chat_workers_without_cluster_refused() -> None:
    """Chat --workers 2 without --cluster would split the rooms: refused with one line."""
    result = subprocess.run(
        [sys.executable, "-m", "twisted", "tcplab-chat", "--workers", "2"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert b"--workers needs --cluster" in result.stderr + result.stdout
    assert b"Traceback" not in result.stderr + result.stdout


def test_workers_share_the_web_address_too(redis: RedisServer) -> None:
    """--workers 2 --cluster --web: both workers open the web address and the page is served."""
    import urllib.request

    port, webPort = freePort(), freePort()
    server = ServerProcess(
        "tcplab-chat",
        [
            "--workers",
            "2",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--web",
            f"tcp:{webPort}:interface=127.0.0.1",
            "--cluster",
            redis.url,
        ],
    )
    try:
        server.waitForLine(re.compile("cluster node .* joined"), count=2)
        for _ in range(4):  # several connections: whichever worker accepts, it serves
            with urllib.request.urlopen(f"http://127.0.0.1:{webPort}/", timeout=10) as page:
                assert page.status == 200 and b"tcplab chat" in page.read()
    finally:
        assert server.stop() == -signal.SIGTERM
