"""
What a process imports is what its options ask for: the client's help and
version need no Twisted, a plain service needs no web, auth or metrics code.
Each check runs in a fresh interpreter, whose C{sys.modules} is the evidence.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tcplab.tlsfree import cannotUseTLS, serviceCannotUseTLS

pytestmark = pytest.mark.subprocess

HEAVY = ("OpenSSL", "cryptography", "service_identity", "twisted.web", "tqdm")
"""Packages a process should load only when an option needs them."""

CLIENT = """
import json, sys
from tcplab.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)), file=sys.stderr)
"""
"""Run the ``tcplab`` command line and report every module it imported."""

SERVICE = """
import json, sys
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.scripts.twistd import ServerOptions
config = ServerOptions()
config.parseOptions(sys.argv[1:])
plugin = {p.tapname: p for p in getPlugins(IServiceMaker)}[config.subCommand]
plugin.makeService(config.subOptions)
print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)))
"""
"""Build a service as ``twistd`` does (plugin, options, makeService) and report its modules."""


def runScript(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run C{script} with C{argv} in a fresh interpreter, whatever its exit status."""
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60
    )


def run(script: str, *argv: str) -> tuple[set[str], str]:
    """
    Run C{script} with C{argv} in a fresh interpreter; return the modules it
    had loaded at the end and what the client printed on stdout.
    """
    done = runScript(script, *argv)
    assert done.returncode == 0, done.stderr
    lines = (done.stderr if script is CLIENT else done.stdout).strip().splitlines()
    return set(json.loads(lines[-1])), done.stdout if script is CLIENT else ""


def modulesAfter(script: str, *argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running C{script} with C{argv}."""
    return run(script, *argv)[0]


def loaded(modules: set[str], *packages: str) -> list[str]:
    """Which of C{packages} (or their submodules) are among C{modules}."""
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["echo", "--help"], ["get", "--help"]]
)
def test_client_help_and_version_import_no_twisted(argv: list[str]) -> None:
    """``tcplab --version`` and every --help answer without Twisted, TLS or a subcommand."""
    modules = modulesAfter(CLIENT, *argv)
    assert loaded(modules, "twisted", "zope", *HEAVY) == []
    assert loaded(modules, "tcplab.cli.echo", "tcplab.cli.files", "tcplab.files") == []


def test_plain_echo_service_imports_no_tls_web_auth_or_metrics() -> None:
    """A plain ``tcplab-echo`` loads neither pyOpenSSL, twisted.web, auth, chat nor metrics."""
    modules = modulesAfter(SERVICE, "tcplab-echo", "--listen", "tcp:0:interface=127.0.0.1")
    assert "tcplab.echo.stream" in modules
    assert "twisted.internet.endpoints" in modules
    assert loaded(modules, *HEAVY, "tcplab.metricshttp", "tcplab.auth") == []
    assert loaded(modules, "tcplab.chat", "tcplab.files", "twisted.cred.checkers") == []


@pytest.mark.parametrize("plugin", ["tcplab-chat", "tcplab-files"])
def test_plain_chat_and_files_services_import_no_tls_web_or_redis(plugin: str) -> None:
    """Without ssl:, --web or --cluster, chat and files load neither pyOpenSSL, twisted.web,
    the web pages nor the Redis client."""
    modules = modulesAfter(SERVICE, plugin, "--listen", "tcp:0:interface=127.0.0.1")
    assert "twisted.internet.endpoints" in modules
    assert loaded(modules, *HEAVY, "tcplab.web", "txredisapi", "tcplab.chat.cluster") == []


def test_metrics_option_loads_the_metrics_endpoint() -> None:
    """``--metrics`` is what brings the metrics endpoint in: the lazy import follows the option."""
    modules = modulesAfter(
        SERVICE,
        "tcplab-echo",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    )
    assert "tcplab.metricshttp" in modules


@pytest.fixture
def lineEchoPort() -> Iterator[int]:
    """A one-connection blocking echo server on a thread; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve() -> None:
        """Echo everything one client sends until it half-closes."""
        with listener, listener.accept()[0] as peer:
            while data := peer.recv(65536):
                peer.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(30)


def test_plain_tcp_echo_command_runs_without_pyopenssl(lineEchoPort: int) -> None:
    """``tcplab echo HOST:PORT hello`` gets its reply without ever loading pyOpenSSL."""
    modules, output = run(CLIENT, "echo", f"127.0.0.1:{lineEchoPort}", "hello")
    assert output == "hello\n"  # the reply arrived: the command really ran
    assert "twisted.internet.endpoints" in modules
    assert loaded(modules, *HEAVY) == []


def test_echo_command_loads_no_other_subcommand(lineEchoPort: int) -> None:
    """``tcplab echo HOST:PORT hello`` imports neither chat's nor the file commands' code,
    nor the password prompt it does not need."""
    modules, output = run(CLIENT, "echo", f"127.0.0.1:{lineEchoPort}", "hello")
    assert output == "hello\n"
    others = ("tcplab.cli.chat", "tcplab.cli.files", "tcplab.cli.files_get")
    assert loaded(modules, *others, "tcplab.cli.files_put", "tcplab.files", "getpass") == []


def test_plain_tcp_echo_command_maps_no_openssl_at_all(lineEchoPort: int) -> None:
    """``tcplab echo HOST:PORT`` loads neither the stdlib's TLS nor OpenSSL's digests, so
    libcrypto is never mapped; hashlib still works, on Python's built-in digests."""
    script = CLIENT + "import hashlib; print(hashlib.sha256(b'x').hexdigest(), file=sys.stderr)\n"
    done = runScript(script, "echo", f"127.0.0.1:{lineEchoPort}", "hello")
    assert done.stdout == "hello\n", done.stderr
    modulesLine, digest = done.stderr.strip().splitlines()[-2:]
    assert loaded(set(json.loads(modulesLine)), "_ssl", "_hashlib") == []
    assert digest == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_file_commands_keep_openssl_digests() -> None:
    """``tcplab get`` hashes whole files: it keeps OpenSSL's SHA-256 (C{_hashlib}) even with
    TLS left out, while pyOpenSSL and the stdlib's TLS stay out."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.close()  # nobody listens: the command fails to connect, after its imports
        done = runScript(CLIENT, "get", f"127.0.0.1:{port}", "f", "-o", "/dev/null")
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "hashlib" in modules and "_hashlib" in modules
    assert loaded(modules, "OpenSSL", "_ssl") == []


@pytest.mark.parametrize(
    "address, options, plain",
    [
        ("127.0.0.1:7", {}, True),
        ("[::1]:7", {}, True),
        ("tcp:host=example.org:port=7", {}, True),
        ("unix:path=/tmp/s.sock", {}, True),
        ("localhost:7", {"tls": True}, False),
        ("localhost:7", {"cafile": "ca.pem"}, False),
        ("tls:localhost:7", {}, False),
        ("ssl:host=localhost:port=7", {}, False),
        ("someplugin:whatever", {}, False),
    ],
)
def test_tls_is_left_out_only_when_the_address_cannot_use_it(
    address: str, options: dict[str, object], plain: bool
) -> None:
    """Only plain HOST:PORT, tcp: and unix: without --tls/--cafile skip loading pyOpenSSL."""
    args = argparse.Namespace(address=address, tls=False, cafile=None)
    vars(args).update(options)
    assert cannotUseTLS(args) is plain


@pytest.mark.parametrize(
    "options, plain",
    [
        ({"listen": ["tcp:8000", "unix:/tmp/s"], "udp": "udp:8000", "root": "/srv"}, True),
        ({"listen": ["tcp:0"], "metrics": "tcp:9100", "mode": "echo", "limit": 5}, True),
        ({"listen": ["tcp:0", "ssl:8443:privateKey=k.pem"]}, False),
        ({"listen": ["tcp:0"], "metrics": "tls:9100"}, False),
        ({"listen": ["tcp:0"], "web": "someplugin:8080"}, False),
        ({"listen": ["tcp:0"], "redis": "127.0.0.1:6379"}, False),
        ({"listen": ["tcp:0"], "redis": "rediss://cache:6380"}, False),
        ({"listen": ["tcp:0"], "web-cert": "/etc/cert.pem"}, False),
        ({"listen": ["tcp:0"], "tls": True}, False),
        ({"listen": ["tcp:0"], "tls-key": None}, True),
    ],
)
def test_a_service_leaves_tls_out_only_when_no_option_can_use_it(
    options: dict[str, object], plain: bool
) -> None:
    """A service drops pyOpenSSL only if every address is plain and no TLS-named option is set."""
    assert serviceCannotUseTLS(options) is plain


def test_echo_command_runs_with_the_collector_on(lineEchoPort: int) -> None:
    """The ``tcplab`` command pauses the garbage collector only while starting: the
    command itself runs with it back on, and start-up's objects frozen
    (L{tcplab.cli.collectorPaused}); a program calling L{tcplab.cli.main} keeps its own."""
    script = (
        "import gc, os, sys\n"
        "from tcplab import cli\n"
        "def report(status, exit=os._exit):\n"
        "    print(gc.isenabled(), gc.get_freeze_count() > 10000, flush=True)\n"
        "    exit(status)\n"
        "os._exit = report\n"
        "cli.console()\n"
    )
    done = runScript(script, "echo", f"127.0.0.1:{lineEchoPort}", "hello")
    assert done.stdout == "hello\nTrue True\n", done.stderr


def test_main_leaves_the_collector_alone(lineEchoPort: int) -> None:
    """L{tcplab.cli.main} called by another program freezes none of that program's objects."""
    script = CLIENT + "import gc; print(gc.isenabled(), gc.get_freeze_count())\n"
    done = runScript(script, "echo", f"127.0.0.1:{lineEchoPort}", "hello")
    assert done.stdout == "hello\nTrue 0\n", done.stderr
