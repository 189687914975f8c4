"""The chat log (tcplab.chat.chatlog): entries, and a full disk that costs nobody their chat."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from twisted.logger import ILogObserver, Logger

from tcplab.chat.chatlog import LOG_ERRORS, ChatLogService, formatEntry
from tcplab.chat.events import ChatEvent
from tests.chat.memorychat import Chat

FULL = "/dev/full"


def recordingLog(service: ChatLogService) -> list[Any]:
    """Record what C{service} logs."""
    events: list[Any] = []
    service.log = Logger(observer=cast(ILogObserver, events.append))
    return events


def test_entries_for_messages_actions_and_announcements_only() -> None:
    """Messages, actions and announcements are logged with UTC time and room; joins are not."""
    at = 1_700_000_000.0
    assert formatEntry(ChatEvent("message", "#a", "bob", "hi", at)) == (
        "2023-11-14T22:13:20Z #a <bob> hi\n"
    )
    assert formatEntry(ChatEvent("action", "#a", "bob", "waves", at)).endswith("* bob waves\n")  # type: ignore[union-attr]
    assert formatEntry(ChatEvent("join", "#a", "bob", "", at)) is None
    forged = formatEntry(ChatEvent("message", "#a", "bob", "x\u2028<eve> y", at))
    assert forged is not None and forged.count("\n") == 1 and "\u2028" not in forged


def test_full_disk_disconnects_nobody_and_warns_once() -> None:
    """On /dev/full every message is still relayed; one warning, a metric, no error to users."""
    chat = Chat(floodRate=0)
    service = ChatLogService(chat.hub, FULL, chat.factory.metrics)
    warnings = recordingLog(service)
    service.startService()
    try:
        alice, bob = chat.joined("alice", "bob")
        for n in range(5):
            alice.send(f"message {n}")
        assert bob.lines() == [f"<alice> message {n}" for n in range(5)]
        assert alice.lines() == [], "no error text reaches the sender"
        assert not alice.closed and not bob.closed
        assert [e["log_level"].name for e in warnings] == ["warn"]
        assert "No space left on device" in warnings[0]["error"]
        assert chat.factory.metrics.value(LOG_ERRORS) == 5
    finally:
        service.stopService()


def test_log_recovers_after_a_failure(tmp_path: Path) -> None:
    """Once the file can be written again the operator is told, and entries are written."""
    chat = Chat(floodRate=0)
    path = tmp_path / "chat.log"
    service = ChatLogService(chat.hub, str(path))
    notices = recordingLog(service)
    service.startService()
    try:
        (alice,) = chat.joined("alice")
        good = service.file
        service.file = open(FULL, "ab", buffering=0)  # noqa: SIM115 (closed below)
        alice.send("lost")
        assert good is not None
        service.file.close()
        service.file = good
        alice.send("kept")
        assert [e["log_level"].name for e in notices] == ["warn", "info"]
        assert path.read_text().endswith("#lobby <alice> kept\n")
        assert "lost" not in path.read_text()
    finally:
        service.stopService()
    assert os.path.exists(path)
