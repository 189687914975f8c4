"""
The ``--web`` option of the chat and files plugins: the web listener joins
the plugin's tree with the service's settings, a bad description is one
line and exit status 10, and a busy port stops the real twistd the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcplab.tap import chat as chatTap
from tcplab.tap import files as filesTap
from tcplab.tap.listening import ListeningService
from tcplab.web.files import FilesSite
from tcplab.web.site import WebSite
from tcplab.web.tap import WebObserver
from tests.support import heldPort, runTwistd


def test_webListenersJoinTheTreeWithABrowsersShare(tmp_path: Path) -> None:
    """Each --web is one endpoint of a listening service with the chat's limits, 6 per address."""
    options = chatTap.Options()
    options.parseOptions(
        ["--web", "tcp:0:interface=127.0.0.1", "--web", r"tcp6:0:interface=\:\:1"]
    )
    service = chatTap.makeService(options)
    assert isinstance(service, ListeningService)
    [web] = [c for c in service if isinstance(c, ListeningService)]
    assert [e.description for e in web.endpoints] == options["web"]
    observer = web.factory
    assert isinstance(observer, WebObserver) and isinstance(observer.wrappedFactory, WebSite)
    assert observer.settings.maxPerPeer == 5 * 6
    assert observer.settings.idleTimeout == 3600
    assert observer.acceptableProtocols() == [b"http/1.1"]


def test_filesWebServesTheSameRoot(tmp_path: Path) -> None:
    """The files page's site uses the protocol's own factory (root, limits, metrics)."""
    options = filesTap.Options()
    options.parseOptions(["--root", str(tmp_path), "--web", "tcp:0:interface=127.0.0.1"])
    service = filesTap.makeService(options)
    assert isinstance(service, ListeningService)
    [web] = [c for c in service if isinstance(c, ListeningService)]
    site = web.factory.wrappedFactory  # type: ignore[attr-defined]
    assert isinstance(site, FilesSite)
    assert site.factory is service.factory.wrappedFactory  # type: ignore[attr-defined]


def test_badWebEndpointIsOneLine(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --web stops start-up with one line and the cannot-listen status."""
    options = chatTap.Options()
    options.parseOptions(["--web", "nonsense:1"])
    with pytest.raises(SystemExit) as exited:
        chatTap.makeService(options)
    assert exited.value.code == 10
    assert "nonsense:1" in capsys.readouterr().err


@pytest.mark.subprocess
def test_busyWebPortStopsTheServerWithOneLine(tmp_path: Path) -> None:
    """A --web port in use ends twistd with exit status 10 and one line, not a traceback."""
    with heldPort() as port:
        result = runTwistd(
            "tcplab-chat",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--web",
            f"tcp:{port}:interface=127.0.0.1",
            cwd=tmp_path,
        )
    assert result.returncode == 10
    assert b"Traceback" not in result.stderr + result.stdout
    assert b"web: cannot listen" in result.stderr
