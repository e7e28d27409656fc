"""Charts for the ops dashboard, drawn on the server as SVG: no script and no outside
network, so the page loads anywhere and prints as it looks."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BAR = "#1f6f43"
BAR_LIGHT = "#cfe6d8"
INK = "#1d1d1f"
MUTED = "#6b6b70"
GRID = "#e4e4e7"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def funnel_chart(stages: Sequence[tuple[str, int]], *, width: int = 640) -> str:
    """The funnel as horizontal bars, each with its count and its rate from the stage
    before."""
    row, label_w, top = 34, 160, 8
    height = top + row * len(stages) + 4
    most = max((count for _, count in stages), default=0) or 1
    bar_room = width - label_w - 120
    parts = [f'<svg class="chart funnel" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-labelledby="funnel-title" xmlns="http://www.w3.org/2000/svg">',
             '<title id="funnel-title">Conversion funnel</title>']
    before: int | None = None
    for i, (label, count) in enumerate(stages):
        y = top + i * row
        w = max(2, round(bar_room * count / most)) if count else 0
        rate = f"{count / before:.0%}" if before else ""
        parts.append(
            f'<g data-stage="{escape(label)}" data-count="{count}">'
            f'<text x="{label_w - 10}" y="{y + 20}" text-anchor="end" fill="{INK}" '
            f'font-size="14">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_room}" height="22" rx="3" '
            f'fill="{BAR_LIGHT}" opacity="0.35"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w}" height="22" rx="3" fill="{BAR}">'
            f'<title>{escape(label)}: {count:,}{" (" + rate + ")" if rate else ""}</title>'
            f'</rect>'
            f'<text x="{label_w + w + 8}" y="{y + 20}" fill="{INK}" font-size="14" '
            f'font-weight="600">{count:,}</text>'
            f'<text x="{width - 8}" y="{y + 20}" text-anchor="end" fill="{MUTED}" '
            f'font-size="13">{escape(rate)}</text></g>')
        before = count
    parts.append("</svg>")
    return "".join(parts)


def line_chart(points: Sequence[tuple[str, float | None]], *, title: str, unit: str = "",
               width: int = 640, height: int = 220) -> str:
    """Values over time (a day each) as a line with dots; a missing value breaks the line.
    The y axis starts at zero."""
    left, right, top, bottom = 48, 12, 12, 28
    values = [v for _, v in points if v is not None]
    most = max(values, default=0) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(points) - 1)

    def x(i: int) -> float:
        return left + (i * step if len(points) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / most

    parts = [f'<svg class="chart line" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for fraction in (0, 0.5, 1):
        gy = top + plot_h - plot_h * fraction
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" '
                     f'stroke="{GRID}"/><text x="{left - 6}" y="{gy + 4:.1f}" '
                     f'text-anchor="end" fill="{MUTED}" font-size="11">'
                     f"{_number(most * fraction)}{escape(unit)}</text>")
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     f'fill="{MUTED}" font-size="13">No data in this range</text>')
    path: list[str] = []
    for i, (label, value) in enumerate(points):
        if value is None:
            path.append("")
            continue
        path.append(f"{'M' if not path or not path[-1] else 'L'}{x(i):.1f},{y(value):.1f}")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3.5" fill="{BAR}" '
                     f'data-label="{escape(label)}" data-value="{value}">'
                     f"<title>{escape(label)}: {_number(value)}{escape(unit)}</title></circle>")
    d = " ".join(p for p in path if p)
    if d:
        parts.insert(2 + 3, f'<path d="{d}" fill="none" stroke="{BAR}" stroke-width="2"/>')
    every = max(1, len(points) // 6)
    for i, (label, _) in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle" '
                         f'fill="{MUTED}" font-size="11">{escape(label[5:] or label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
