"""
Prometheus metrics for the tcplab services, served by twisted.web.

A L{Metrics} registry holds counters that services bump as things happen
(a chat message relayed, a transfer finished) and collectors that are asked
at scrape time (open connections, bytes in and out), so that nothing is
counted per chunk on the data path.  L{Metrics.render} gives the registry
in the Prometheus text exposition format (version 0.0.4), which
L{tcplab.metricshttp} serves.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

Sample = tuple[str, dict[str, str], float]
"""A metric name, its labels, and its value."""

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
"""The media type of the Prometheus text format."""


def formatValue(value: float) -> str:
    """
    A sample value as the text format wants it: integral values exactly, as
    integers (never C{4.26363e+08}, which stops changing as a counter grows),
    others in Python's shortest round-trip form, and C{NaN}, C{+Inf}, C{-Inf}.
    """
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer():
        return str(int(value))
    return repr(float(value))


def _labelText(labels: dict[str, str]) -> str:
    """Render labels as C{{a="x",b="y"}}, escaped as the text format requires."""
    if not labels:
        return ""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items())) + "}"


class Metrics:
    """
    Counters and gauges for one service, by name and labels.

    @ivar service: added as a C{service} label to every sample.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._collectors: list[Callable[[], Iterable[Sample]]] = []

    def describe(self, name: str, kind: str, text: str) -> None:
        """Declare a metric's type (C{counter} or C{gauge}) and help text."""
        self._help[name] = (kind, text)

    def increment(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add C{amount} to the counter C{name} with these labels."""
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter (0 if never incremented)."""
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def addCollector(self, collector: Callable[[], Iterable[Sample]]) -> None:
        """Call C{collector} at every scrape for samples computed on demand."""
        self._collectors.append(collector)

    def samples(self) -> list[Sample]:
        """Every sample, counters first, then the collectors'."""
        result: list[Sample] = []
        for name, series in self._counters.items():
            result += [(name, dict(key), value) for key, value in series.items()]
        for collector in self._collectors:
            result += list(collector())
        return result

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        byName: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples():
            byName[sample[0]].append(sample)
        lines = []
        for name in sorted(byName):
            kind, text = self._help.get(name, ("untyped", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for _, labels, value in byName[name]:
                allLabels = {"service": self.service, **labels}
                lines.append(f"{name}{_labelText(allLabels)} {formatValue(value)}")
        return ("\n".join(lines) + "\n").encode()
