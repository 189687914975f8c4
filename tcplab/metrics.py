"""
Prometheus metrics for the tcplab services, served by twisted.web.

A L{Metrics} registry holds counters that services bump as things happen
(a chat message relayed, a transfer finished) and collectors that are asked
at scrape time (open connections, bytes in and out), so that nothing is
counted per chunk on the data path.  L{MetricsResource} renders the registry
in the Prometheus text exposition format (version 0.0.4).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

Sample = tuple[str, dict[str, str], float]
"""A metric name, its labels, and its value."""


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
                lines.append(f"{name}{_labelText(allLabels)} {value:g}")
        return ("\n".join(lines) + "\n").encode()


class MetricsResource(Resource):
    """Serve a L{Metrics} registry at C{/metrics} (and at the root)."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        """Render the current figures."""
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render()


def metricsSite(metrics: Metrics) -> Site:
    """A twisted.web site serving C{metrics}."""
    site = Site(MetricsResource(metrics))
    site.noisy = False
    site.displayTracebacks = False
    return site
