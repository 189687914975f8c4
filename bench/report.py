"""Medians, spreads, ratios and the tables the suite prints."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from bench.jobs import Job, Row


def median(values: Iterable[float]) -> float:
    """The median of some figures."""
    return float(statistics.median(values))


def spread(values: list[float]) -> str:
    """(max - min) / median, as a percentage; "-" for a single figure."""
    if len(values) < 2:
        return "-"
    middle = median(values)
    return f"{100 * (max(values) - min(values)) / middle:.0f}%" if middle else "-"


def number(value: float) -> str:
    """A figure, readable at a glance."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def table(job: Job, config: str, rows: list[Row]) -> str:
    """
    The markdown table of one job and configuration: each server's median
    figure, its spread over the repetitions, further columns, and the
    ratio of tcplab's median to it.
    """
    headings = ["server", f"{job.unit} (median)", "spread", "ok runs"]
    headings += [heading for _, heading in job.columns]
    headings.append(f"tcplab ÷ server ({'higher' if job.higherIsBetter else 'lower'} is better)")
    medians: dict[str, float] = {}
    lines = []
    for server in job.servers:
        mine = [
            r
            for r in rows
            if r["job"] == job.name and r["server"] == server and r["config"] == config
        ]
        good = [r for r in mine if r.get("ok")]
        if good:
            medians[server] = median(r[job.figure] for r in good)
        lines.append((server, mine, good))
    tcplab = next((s for s in medians if s.startswith("tcplab")), None)
    out = [
        f"### {job.name}: {config}",
        "",
        "| " + " | ".join(headings) + " |",
        "|" + "---|" * len(headings),
    ]
    for server, mine, good in lines:
        if not good:
            errors = "; ".join(sorted({str(r.get("error", "?")) for r in mine}))
            cells = [server, "failed", "-", f"0/{len(mine)}"] + ["-"] * len(job.columns)
            out.append("| " + " | ".join([*cells, errors]) + " |")
            continue
        figures = [float(r[job.figure]) for r in good]
        cells = [server, number(medians[server]), spread(figures), f"{len(good)}/{len(mine)}"]
        cells += [number(median(float(r[key]) for r in good)) for key, _ in job.columns]
        ratio = "-"
        if tcplab is not None and medians[server]:
            ratio = f"{medians[tcplab] / medians[server]:.2f}x"
        out.append("| " + " | ".join([*cells, ratio]) + " |")
    return "\n".join(out) + "\n"
