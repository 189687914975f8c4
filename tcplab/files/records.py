"""
Transfer records: what a transfer is while it runs, and how it ends -- one
log line with its figures, and a count by operation and outcome in the
metrics (C{tcplab_file_transfers_total}, C{tcplab_file_transfer_bytes_total}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from tcplab.metrics import Metrics

OK = "ok"
FAILED = "failed"
REFUSED = "refused"
INTERRUPTED = "interrupted"
OUTCOMES = (OK, FAILED, REFUSED, INTERRUPTED)
"""The C{outcome} labels of C{tcplab_file_transfers_total} (README, *Files*)."""


TRANSFER_OPS = ("get", "put", "delete")
"""The operations counted in C{tcplab_file_transfers_total}."""


@dataclass
class TransferRecord:
    """One transfer in progress: what, where, since when (for its log line and metrics)."""

    op: str
    path: str
    started: float


def recordTransfer(
    log: Logger,
    metrics: Metrics,
    peer: str,
    record: TransferRecord,
    count: int,
    now: float,
    outcome: str,
    detail: str = "",
) -> None:
    """Log one transfer with its figures, and count it by outcome in the metrics."""
    duration = max(now - record.started, 0.0)
    rate = count / duration / 1e6 if duration > 0 else 0.0
    log.info(
        "{peer} {op} {path!r}: {outcome}{detail}, {count} bytes in {duration:.3f}s"
        " ({rate:.1f} MB/s)",
        peer=peer,
        op=record.op,
        path=record.path,
        outcome=outcome,
        detail=f" ({detail})" if detail else "",
        count=count,
        duration=duration,
        rate=rate,
    )
    metrics.increment("tcplab_file_transfers_total", op=record.op, outcome=outcome)
    metrics.increment("tcplab_file_transfer_bytes_total", count, op=record.op)


def countRefused(metrics: Metrics, op: str) -> None:
    """Count a transfer refused before a byte moved (it has no log line of its own)."""
    metrics.increment("tcplab_file_transfers_total", op=op, outcome=REFUSED)
