"""A tiny line/point plot drawn as inline SVG (no library, nothing fetched at view time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ("Series", "line_plot")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str
    line: bool = True  # False: points only (e.g. rejected candidates)
    css: str = ""


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def line_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 320,
    y_range: tuple[float, float] = (0.0, 1.0),
    integer_x: bool = True,
) -> str:
    """An SVG element: one polyline (with a circle per point) per series, axes and a legend."""
    left, right, top, bottom = 56, 150, 30, 44
    pw, ph = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    ys = [y for s in series for _, y in s.points]
    y0, y1 = y_range
    if ys:
        y0, y1 = min(y0, min(ys)), max(y1, max(ys))

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / ((y1 - y0) or 1.0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" class="plot-title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="tick">{t:.2f}</text>')
    if integer_x:
        xt = [float(v) for v in range(int(x0 + 0.999), int(x1) + 1)] if x1 - x0 <= 40 else _ticks(x0, x1)
    else:
        xt = _ticks(x0, x1)
    for t in xt:
        out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{t:g}</text>')
    out.append(
        f'<text x="{left + pw / 2:.0f}" y="{height - 8}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + ph / 2:.0f}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {top + ph / 2:.0f})">{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        pts = sorted(s.points)
        cls = escape(s.css or f"series-{i}")
        out.append(f'<g class="series {cls}" data-name="{escape(s.name)}">')
        if s.line and len(pts) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for x, y in pts:
            fill = s.color if s.line else "none"
            out.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{fill}" stroke="{s.color}" '
                f'stroke-width="1.5"><title>{escape(s.name)}: x={x:g}, y={y:.4f}</title></circle>'
            )
        out.append("</g>")
        ly = top + 14 + 18 * i
        if s.line:
            out.append(
                f'<line x1="{left + pw + 12}" x2="{left + pw + 32}" y1="{ly}" y2="{ly}" '
                f'stroke="{s.color}" stroke-width="2"/>'
            )
        else:
            out.append(
                f'<circle cx="{left + pw + 22}" cy="{ly}" r="4" fill="none" stroke="{s.color}" '
                'stroke-width="1.5" class="legend-mark"/>'
            )
        out.append(f'<text x="{left + pw + 38}" y="{ly + 4}" class="legend">{escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
