"""
Where an idle echo connection's memory goes: Python heap per held connection.

C{python -m bench idle} measures the server's RSS growth over thousands of
held connections, which says how much but not what.  This runs the echo
service as twistd builds it in this process, has C{bench/build/loadgen idle}
open C{conns} connections that each verify one 64-byte echo and then hold
still, and compares C{tracemalloc} snapshots taken before and while they
are held: bytes per connection in total and by allocation site.  Use it for
A/B comparisons (put the other tree first on C{PYTHONPATH})::

    .venv/bin/python -m bench.idleheap --conns 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import tracemalloc
from typing import Any, cast

from twisted.logger import ILogObserver, globalLogBeginner

from bench.processes import buildLoadgen, raiseFileLimit
from tcplab.echo import EchoFactory
from tcplab.observe import ConnectionObserver
from tcplab.reactors import defaultReactor
from tcplab.sending import BULK_READ_SIZE


def run(conns: int, top: int) -> dict[str, Any]:
    """Hold C{conns} echo connections; the heap they cost, per connection."""
    raiseFileLimit()
    # Logging begun (to nowhere), as in twistd: otherwise every event is buffered.
    discard = cast(ILogObserver, lambda event: None)
    globalLogBeginner.beginLoggingTo([discard], redirectStandardIO=False)
    reactor = defaultReactor()
    observer = ConnectionObserver(
        EchoFactory(), "bench", readSize=BULK_READ_SIZE, writeDirectly=True
    )
    port = reactor.listenTCP(0, observer, backlog=1024, interface="127.0.0.1")
    try:
        from tcplab.tap.listening import readDirectly
    except ImportError:  # a tree from before tcplab.directread
        pass
    else:
        readDirectly(port)
    loadgen = [str(buildLoadgen()), "idle", "127.0.0.1", str(port.getHost().port)]
    holder = subprocess.Popen([*loadgen, "1", "1", "1"], stdout=subprocess.PIPE)
    # A first connection warms up every code path (imports, caches) before the baseline.
    while holder.poll() is None:
        reactor.iterate(0.01)
    while observer.openConnections():
        reactor.iterate(0.01)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    holder = subprocess.Popen([*loadgen, str(conns), "1", "60"], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    os.set_blocking(holder.stdout.fileno(), False)
    ready = b""
    while b"\n" not in ready:
        reactor.iterate(0.01)
        ready += holder.stdout.read() or b""
        if holder.poll() is not None:
            raise RuntimeError(f"loadgen idle failed: {ready!r}")
    if len(observer.openConnections()) != conns or not json.loads(ready).get("ok"):
        raise RuntimeError(f"expected {conns} connections: {ready!r}")
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    holder.terminate()
    holder.wait()
    while observer.openConnections():
        reactor.iterate(0.01)
    port.stopListening()
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    sites = [
        (round(stat.size_diff / conns, 1), str(stat.traceback[0]))
        for stat in stats[:top]
        if abs(stat.size_diff) >= conns
    ]
    return {"conns": conns, "bytes_per_connection": round(total / conns, 1), "sites": sites}


def main() -> None:
    """Run once and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    print(json.dumps(run(options.conns, options.top), indent=1))


if __name__ == "__main__":
    main()
