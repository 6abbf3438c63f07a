"""Small server-drawn SVG bar charts: jobs finished per interval (completed and failed stacked)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._html import Safe, h, join

if TYPE_CHECKING:
    from kernel_queue import FinishedCounts

OK_COLOUR, FAIL_COLOUR = "#3f9d5a", "#c74a4a"


def failure_rate(counts: Sequence[FinishedCounts]) -> str:
    """``failed / finished`` over ``counts`` as a percentage (``-`` when nothing finished)."""
    done = sum(c.completed for c in counts)
    failed = sum(c.failed for c in counts)
    return f"{failed / (done + failed):.1%}" if done + failed else "-"


def throughput_svg(counts: Sequence[FinishedCounts], *, width: int = 360, height: int = 90) -> Safe:
    """Stacked bars, oldest on the left; each bar's tooltip gives its interval's numbers."""
    n = max(1, len(counts))
    peak = max((c.completed + c.failed for c in counts), default=0) or 1
    slot = width / n
    bar = max(1.0, slot - 2)
    label_h = 14 if height >= 60 else 0
    plot = height - label_h
    bars: list[Safe] = []
    for i, c in enumerate(counts):
        x = round(i * slot + 1, 1)
        ok_h = round(plot * c.completed / peak, 1)
        fail_h = round(plot * c.failed / peak, 1)
        minutes = round((counts[-1].start - c.start) / 60) if counts else 0
        tip = f"{minutes} min before the last interval: {c.completed} completed, {c.failed} failed"
        bars.append(
            h(
                '<g><title>{tip}</title><rect x="{x}" y="{y1}" width="{w}" height="{h1}" fill="{ok}"/>'
                '<rect x="{x}" y="{y2}" width="{w}" height="{h2}" fill="{bad}"/></g>',
                tip=tip,
                x=x,
                w=round(bar, 1),
                y1=round(plot - ok_h, 1),
                h1=ok_h,
                y2=round(plot - ok_h - fail_h, 1),
                h2=fail_h,
                ok=OK_COLOUR,
                bad=FAIL_COLOUR,
            )
        )
    labels = Safe("")
    if label_h and counts:
        step = counts[1].start - counts[0].start if len(counts) > 1 else 0.0
        labels = h(
            '<text x="0" y="{y}" font-size="10" fill="#4a5368">-{span} min</text>'
            '<text x="{w}" y="{y}" font-size="10" fill="#4a5368" text-anchor="end">now</text>',
            y=height - 2,
            span=round(len(counts) * step / 60),
            w=width,
        )
    return h(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{hh}" '
        'viewBox="0 0 {w} {hh}" role="img" aria-label="{label}" font-family="system-ui, sans-serif">'
        "{bars}{labels}</svg>",
        w=width,
        hh=height,
        label=f"jobs finished per interval: {sum(c.completed for c in counts)} completed, "
        f"{sum(c.failed for c in counts)} failed",
        bars=join(bars),
        labels=labels,
    )
