"""The tutorials' counted-reply client (seed 002) against the real twistd tcplab-echo."""

from __future__ import annotations

import socket

import pytest

from tests.support import ServerProcess

pytestmark = pytest.mark.subprocess


def tutorialCountClient(port: int, messages: list[bytes], timeout: float) -> list[bytes]:
    """
    Tutorial 002's client: recv(1024) the welcome, then for each message
    send it with no newline and recv(1024) one reply.
    """
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        replies.append(client.recv(1024))
        for message in messages:
            client.send(message)
            try:
                replies.append(client.recv(1024))
            except TimeoutError:
                replies.append(b"(no reply)")
    return replies


def test_count_per_read_answers_the_tutorial_client() -> None:
    """--mode count --per-read numbers 'hello' sent without a newline; 'exit' closes."""
    with ServerProcess("tcplab-echo", ["--mode", "count", "--per-read", "--banner", "hi"]) as s:
        replies = tutorialCountClient(s.port, [b"hello", b"world", b"exit"], timeout=10)
    assert replies == [b"hi\r\n", b"1: hello\r\n", b"2: world\r\n", b"bye\r\n"]


def test_count_per_line_waits_for_a_newline() -> None:
    """Plain --mode count answers lines: the same client gets no reply to 'hello' alone."""
    with ServerProcess("tcplab-echo", ["--mode", "count", "--banner", "hi"]) as s:
        replies = tutorialCountClient(s.port, [b"hello"], timeout=1)
    assert replies == [b"hi\r\n", b"(no reply)"]
