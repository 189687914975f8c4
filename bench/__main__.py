"""
tcplab's benchmark suite: tcplab's real twistd plugins against peer servers,
side by side, in one run.

    .venv/bin/python -m bench                 # everything, 3 repetitions (~10 min)
    .venv/bin/python -m bench echo chat --reps 5
    .venv/bin/python -m bench files --size-mib 256
    .venv/bin/python -m bench startup           # command start-up and idle service memory
    .venv/bin/python -m bench cluster --reps 1  # chat, --workers 2 --cluster (needs redis-server)

Servers run on CPU 0, the load on CPU 1 (C{taskset}; C{BENCH_SERVER_CPU},
C{BENCH_CLIENT_CPU} change them).  Repetitions are interleaved (every
configuration on every server, then again in a rotated order) so drift hits
all servers alike.  Every echoed byte and every chat line is verified by the
load generator, every copied file by size and SHA-256; a failed run is shown
as failed, never averaged in.  Tables go to stdout and, with the raw rows,
to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.jobs import Row, compileTcplab, jobs
from bench.processes import BENCH, BenchError, buildLoadgen, raiseFileLimit
from bench.report import table

SELECTIONS = {
    "echo": ["echo"],
    "chat": ["chat"],
    "idle": ["idle-echo", "idle-chat"],
    "files": ["files"],
    "startup": ["startup", "idle-service"],
    "cluster": ["cluster"],
}
OPT_IN = {"cluster"}
"""Selections run only when named (the cluster case needs redis-server)."""


def main(argv: list[str] | None = None) -> int:
    """Run the chosen jobs and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[1])
    parser.add_argument("jobs", nargs="*", help=f"some of: {', '.join(SELECTIONS)} (default: all)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--idle-conns", type=int, default=5000, help="default 5000")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.jobs) - set(SELECTIONS))
    if unknown:
        parser.error(f"unknown job {', '.join(unknown)}; choose from {', '.join(SELECTIONS)}")
    default = [selection for selection in SELECTIONS if selection not in OPT_IN]
    chosen = [name for selection in (args.jobs or default) for name in SELECTIONS[selection]]
    buildLoadgen()
    compileTcplab()
    limit = raiseFileLimit()
    if limit < args.idle_conns + 100:
        print(f"warning: open-file limit {limit} is below {args.idle_conns} connections")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = BENCH / "results"
    logDir = results / f"logs-{stamp}"
    logDir.mkdir(parents=True, exist_ok=True)
    raw = results / f"{stamp}.jsonl"
    allJobs = jobs(args.size_mib, args.idle_conns)
    rows: list[Row] = []
    for rep in range(args.reps):
        for name in chosen:
            job = allJobs[name]
            servers = list(job.servers)
            servers = servers[rep % len(servers) :] + servers[: rep % len(servers)]
            for config, setting in job.configs.items():
                for server in servers:
                    run = partial(
                        job.measure, server, job.servers[server], config, setting, logDir
                    )
                    row = measure(job.name, server, config, rep, run)
                    rows.append(row)
                    with raw.open("a") as out:
                        out.write(json.dumps(row) + "\n")
    report = [f"## tcplab benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {args.reps} reps", ""]
    for name in chosen:
        job = allJobs[name]
        for config in job.configs:
            report.append(table(job, config, rows))
    text = "\n".join(report)
    print(text)
    (results / f"{stamp}.md").write_text(text)
    print(f"raw rows: {raw}\nserver logs: {logDir}")
    return 0 if all(row.get("ok") for row in rows) else 1


def measure(job: str, server: str, config: str, rep: int, run: Callable[[], Row]) -> Row:
    """Run one measurement, turning a failure into a failed row."""
    label = f"[rep {rep + 1}] {job} / {config} / {server}"
    print(label, end=" ... ", flush=True)
    row: Row
    try:
        row = dict(run())
        print("ok", flush=True)
    except BenchError as e:
        row = {"ok": False, "error": str(e)}
        print(f"FAILED: {e}", flush=True)
    except Exception as e:  # a bug in the suite itself: show it, keep going
        traceback.print_exc()
        row = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    if row.get("ok") is False and "error" in row and "detail" in row:
        row["error"] = f"{row['error']}: {row['detail']}"
    row.update(job=job, server=server, config=config, rep=rep + 1)
    return row


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
