"""`gatehouse load report FILE.json --html out.html`: a load report as one HTML page,
throughput and latency over time drawn as inline SVG. No plotting library: the page
is text the runner writes, opens in any browser and can be attached to a CI run."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import orjson

WIDTH, HEIGHT, MARGIN = 800, 240, 40
COLOURS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd")


def _chart(title: str, unit: str, times: Sequence[float], lines: dict[str, list[Any]]) -> str:
    values = [v for series in lines.values() for v in series if v is not None]
    top = max(values, default=0) or 1.0
    end = max(times, default=0) or 1.0

    def x(t: float) -> float:
        return MARGIN + (WIDTH - 2 * MARGIN) * t / end

    def y(v: float) -> float:
        return HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * v / top

    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img"><title>{html.escape(title)}</title>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}"'
        f' y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#999"/>',
        f'<text x="{MARGIN}" y="{MARGIN - 8}" font-size="12">{top:g} {unit}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - 10}" font-size="12"'
        f' text-anchor="end">{end:g} s</text>',
    ]
    for (name, series), colour in zip(lines.items(), COLOURS, strict=False):
        points = " ".join(
            f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, series, strict=True) if v is not None
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{points}"/>')
        index = list(lines).index(name)
        parts.append(
            f'<text x="{WIDTH - MARGIN - 120}" y="{MARGIN + 14 * index}" font-size="12"'
            f' fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render(report: dict[str, Any], table: str) -> str:
    series = report.get("series") or []
    times = [row["t"] for row in series]
    interval = report.get("settings", {}).get("series_interval", 1.0) or 1.0
    throughput = {
        name: [row[name] / interval for row in series] for name in ("sent", "replied", "errors")
    }
    latency = {name: [row.get(name) for row in series] for name in ("p50", "p99")}
    settings = orjson.dumps(report.get("settings", {}), option=orjson.OPT_INDENT_2).decode()
    return (
        "<!doctype html><meta charset='utf-8'><title>gatehouse load report</title>"
        "<body style='font-family:sans-serif'><h1>gatehouse load report</h1>"
        f"<pre>{html.escape(table)}</pre>"
        f"<h2>Throughput (per second)</h2>{_chart('throughput', '/s', times, throughput)}"
        f"<h2>Latency, post to reply (ms)</h2>{_chart('latency', 'ms', times, latency)}"
        f"<h2>Settings</h2><pre>{html.escape(settings)}</pre></body>\n"
    )
