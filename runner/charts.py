"""Small server-side SVG charts for the dashboard and `seqrun simulate --html`: no JavaScript needed.

Each function returns one `<svg>` element as text, sized by its viewBox (it scales to its container),
with every label escaped. Colours come from `PALETTE`; a limit is drawn as a dashed red line.
"""
from __future__ import annotations

import html
import math
from typing import Sequence

PALETTE = ("#3b6fd8", "#e08a2e", "#3aa676", "#a05cc8", "#d0504f", "#2aa3b8", "#8c8c3a", "#c76a9b")
LIMIT_COLOUR = "#c93c3c"
AXIS = "#9aa3ad"
TEXT = "#3d4852"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def axis_top(value: float, ticks: int = 4) -> tuple[float, float]:
    """(top, step) for a y axis over 0..value: `ticks` steps or fewer, each a round number."""
    step = max(1.0, nice_max(value / ticks)) if value > 0 else 1.0
    return step * max(1, math.ceil(value / step)), step


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _frame(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{esc(label)}" class="chart" {FONT} font-size="12">'
            f"<title>{esc(label)}</title>{''.join(body)}</svg>")


def _y_axis(left: int, top: int, plot_w: int, plot_h: int, top_value: float, step: float) -> list[str]:
    out = []
    for i in range(int(round(top_value / step)) + 1):
        value = step * i
        y = top + plot_h - plot_h * value / top_value
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">{_fmt(value)}</text>')
    return out


def _legend(names: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y + i * 16 - 9}" width="10" height="10" rx="2" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y + i * 16}" fill="{TEXT}">{esc(name)}</text>')
    return out


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
              limit: float | None = None, limit_label: str = "limit", width: int = 720, height: int = 260,
              stacked: bool = False, max_labels: int = 16) -> str:
    """Bars per label, one colour per series (side by side, or `stacked`), with an optional limit line."""
    left, top, bottom = 48, 18, 42
    right = 130 if len(series) > 1 else 16
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(vals[i] for _, vals in series) if stacked else max((vals[i] for _, vals in series), default=0)
              for i in range(len(labels))]
    top_value, step = axis_top(max([*totals, limit or 0, 0]))
    body = _y_axis(left, top, plot_w, plot_h, top_value, step)
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.7 / (1 if stacked else max(len(series), 1))
    every = max(1, math.ceil(len(labels) / max_labels))
    for i, label in enumerate(labels):
        x0 = left + slot * i + slot * 0.15
        base = 0.0
        for j, (name, values) in enumerate(series):
            value = values[i]
            h = plot_h * value / top_value
            x = x0 if stacked else x0 + j * bar_w
            y = top + plot_h - h - (plot_h * base / top_value if stacked else 0)
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[j % len(PALETTE)]}"><title>{esc(label)} · {esc(name)}: {_fmt(value)}</title></rect>')
            if stacked:
                base += value
        if i % every == 0:
            body.append(f'<text x="{left + slot * (i + 0.5):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                        f'fill="{TEXT}">{esc(label)}</text>')
    body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    if limit is not None:
        y = top + plot_h - plot_h * limit / top_value
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{LIMIT_COLOUR}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>')
        body.append(f'<text x="{left + plot_w}" y="{y - 4:.1f}" text-anchor="end" fill="{LIMIT_COLOUR}">'
                    f"{esc(limit_label)} {_fmt(limit)}</text>")
    if len(series) > 1:
        body += _legend([name for name, _ in series], left + plot_w + 6, top + 30)
    return _frame(width, height, body, title)


def line_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
               width: int = 720, height: int = 260) -> str:
    """One line per series over evenly spaced points; empty labels are not drawn, the rest thinned to fit."""
    left, top, right, bottom = 48, 18, 130, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value, tick = axis_top(max((v for _, vals in series for v in vals), default=0))
    body = _y_axis(left, top, plot_w, plot_h, top_value, tick)
    n = max(len(labels), 1)
    step = plot_w / max(n - 1, 1)
    for j, (name, values) in enumerate(series):
        points = " ".join(f"{left + step * i:.1f},{top + plot_h - plot_h * v / top_value:.1f}" for i, v in enumerate(values))
        body.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[j % len(PALETTE)]}" stroke-width="2">'
                    f"<title>{esc(name)}</title></polyline>")
    shown = [i for i, label in enumerate(labels) if label]
    every = max(1, math.ceil(len(shown) / 10))
    for k, i in enumerate(shown):
        label = labels[i]
        if k % every == 0:
            body.append(f'<text x="{left + step * i:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                        f'fill="{TEXT}">{esc(label)}</text>')
    body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    body += _legend([name for name, _ in series], left + plot_w + 6, top + 30)
    return _frame(width, height, body, title)


def histogram(values: Sequence[float], *, title: str, unit: str = "h", bins: int = 12, width: int = 720,
              height: int = 240) -> str:
    """Counts of `values` in equal-width bins from 0 to their maximum."""
    high = max(values, default=0)
    width_of_bin = nice_max(high / bins) if high > 0 else 1.0
    count = max(1, min(bins * 2, math.ceil(high / width_of_bin) or 1))
    counts = [0.0] * count
    for v in values:
        counts[min(int(v // width_of_bin), count - 1)] += 1
    labels = [f"{_fmt(i * width_of_bin)}–{_fmt((i + 1) * width_of_bin)} {unit}" for i in range(count)]
    return bar_chart(labels, [("leads", counts)], title=title, width=width, height=height)


def hbars(rows: Sequence[tuple[str, float]], *, title: str, width: int = 720, note: str = "",
          of: float | None = None) -> str:
    """Horizontal bars, one per row, each labelled with its value and its share of `of` (every row)
    or, without it, of the first row (the rows after it)."""
    bar_h, gap, left, right = 22, 8, 200, 110
    height = max(len(rows), 1) * (bar_h + gap) + 10
    first = rows[0][1] if rows else 0
    top_value = max((v for _, v in rows), default=0) or 1
    body = []
    for i, (label, value) in enumerate(rows):
        y = 5 + i * (bar_h + gap)
        w = (width - left - right) * value / top_value
        whole = of if of is not None else first
        share = f" ({100 * value / whole:.0f}%)" if whole and (i or of is not None) else ""
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" fill="{TEXT}">{esc(label)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" rx="3" '
                    f'fill="{PALETTE[0]}"><title>{esc(label)}: {_fmt(value)}</title></rect>')
        body.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" fill="{TEXT}">{_fmt(value)}{esc(share)}</text>')
    return _frame(width, height, body, title + (f" {note}" if note else ""))
