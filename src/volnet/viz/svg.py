"""SVG written directly: line charts of a training history and the notes' drawing of an architecture.

Each function returns the SVG markup as a string (no plotting library).
"""

from __future__ import annotations

import math
from html import escape

KIND_COLOURS = {"input": "#bbbbbb", "conv": "#4c78a8", "relu": "#f58518", "pool": "#54a24b", "fc": "#e45756",
                "batchnorm": "#72b7b2", "residual": "#b279a2", "dropout": "#9d755d", "flatten": "#bab0ac"}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.3g}"


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, xlabel: str = "epoch",
               width: int = 420, height: int = 240, log_y: bool = False) -> str:
    """An SVG line chart of named series of ``(x, y)`` points (None y values skipped), with axes and legend."""
    points = [(x, y) for values in series.values() for x, y in values if y is not None and math.isfinite(y)]
    if log_y:
        points = [(x, y) for x, y in points if y > 0]
    left, right, top, bottom = 52, 12, 26 + 14 * len(series), 34  # the legend above the plot, one row a series
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>']
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    f = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs, ys = [p[0] for p in points], [f(p[1]) for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:  # a flat series (a constant learning rate): half its size either side
        half = abs(y0) / 2 or 0.5
        y0, y1 = y0 - half, y1 + half
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
                 'fill="#fafafa" stroke="#999"/>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{_label(10 ** t if log_y else t)}</text>')
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="10">'
                     f'{_label(t)}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle" font-size="11">'
                 f'{escape(xlabel)}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        kept = [(x, f(y)) for x, y in values if y is not None and math.isfinite(y) and (y > 0 or not log_y)]
        if not kept:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in kept)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in kept:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}">'
                         f'<title>{escape(name)} at {_label(x)}: {_label(10 ** y if log_y else y)}</title></circle>')
        parts.append(f'<rect x="{left + 8}" y="{26 + 14 * n}" width="10" height="3" fill="{colour}"/>'
                     f'<text x="{left + 22}" y="{31 + 14 * n}" font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _log_size(n: int, unit: float) -> float:
    return unit * (1 + math.log2(max(n, 1)))


def architecture(boxes: list[dict]) -> str:
    """The notes' picture of a ConvNet: each volume a box, H and W as its face, D as its depth (log scale).

    ``boxes``: dicts with ``shape`` (``(H, W, D)`` or ``(K,)``), ``label`` (under the box) and
    ``tooltip`` (shown on hover).
    """
    def faces(shape):
        H, W, D = (shape if len(shape) == 3 else (1, 1, shape[0]))
        return _log_size(H, 12), _log_size(W, 4), _log_size(D, 5)  # W drawn foreshortened, as the notes' boxes

    height = int(max(h + w for h, w, _ in (faces(box["shape"]) for box in boxes))) + 56
    x, parts = 24.0, []
    for index, box in enumerate(boxes):
        shape = box["shape"]
        face_h, face_w, depth = faces(shape)
        y = height - 40 - face_h
        dx, dy = face_w, -face_w  # the receding W edge
        colour = KIND_COLOURS.get(box.get("kind"), "#999999")
        front = f"{x:.1f},{y:.1f} {x + depth:.1f},{y:.1f} {x + depth:.1f},{y + face_h:.1f} {x:.1f},{y + face_h:.1f}"
        top_face = f"{x:.1f},{y:.1f} {x + dx:.1f},{y + dy:.1f} {x + depth + dx:.1f},{y + dy:.1f} {x + depth:.1f},{y:.1f}"
        side = (f"{x + depth:.1f},{y:.1f} {x + depth + dx:.1f},{y + dy:.1f} {x + depth + dx:.1f},{y + dy + face_h:.1f} "
                f"{x + depth:.1f},{y + face_h:.1f}")
        parts.append(f'<g class="volume" data-index="{index}"><title>{escape(box["tooltip"])}</title>'
                     f'<polygon points="{top_face}" fill="{colour}" fill-opacity="0.45" stroke="#333"/>'
                     f'<polygon points="{side}" fill="{colour}" fill-opacity="0.65" stroke="#333"/>'
                     f'<polygon points="{front}" fill="{colour}" fill-opacity="0.85" stroke="#333"/>'
                     f'<text x="{x + depth / 2:.1f}" y="{height - 24}" text-anchor="middle" font-size="10">'
                     f'{escape(box["label"])}</text>'
                     f'<text x="{x + depth / 2:.1f}" y="{height - 11}" text-anchor="middle" font-size="9" fill="#555">'
                     f'{escape("x".join(map(str, shape)))}</text></g>')
        x += max(depth + dx, 40) + 14
    width = int(x + 10)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="architecture" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">' + "".join(parts) + "</svg>")
