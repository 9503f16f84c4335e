"""Small bar charts as inline SVG, drawn on the server: no script, nothing fetched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webhook.console.html import esc

WIDTH, HEIGHT = 520, 170
LEFT, BOTTOM, TOP = 44, 22, 10


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    values: Sequence[float | None]


def _tick(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3g} s"
    return f"{value:.0f}"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, unit: str) -> str:
    """Grouped bars, one group per label; a missing value (None) draws nothing."""
    top = max((v for s in series for v in s.values if v is not None), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 6, HEIGHT - BOTTOM - TOP
    group = plot_w / max(1, len(labels))
    bar = group * 0.8 / max(1, len(series))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + 18}" '
        f'role="img" aria-label="{esc(title)}">',
        f'<text x="{LEFT}" y="{HEIGHT + 14}" font-size="11">{esc(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 6}" y2="{TOP + plot_h}" '
        'stroke="#8a939c"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 8}" font-size="10" text-anchor="end">'
        f"{esc(_tick(top, unit))}</text>",
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        x0 = LEFT + i * group + group * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{esc(s.colour)}"><title>{esc(s.name)} {esc(label)}: '
                f"{esc(_tick(value, unit))}</title></rect>"
            )
        if i % 3 == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{TOP + plot_h + 14}" font-size="10">{esc(label)}</text>'
            )
    legend_x = WIDTH - 6
    for s in reversed(series):
        legend_x -= 8 * len(s.name) + 18
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT + 5}" width="10" height="10" fill="{esc(s.colour)}"/>'
            f'<text x="{legend_x + 13}" y="{HEIGHT + 14}" font-size="11">{esc(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
