"""The report's SVG plots, as geometry: where every tick, line and point goes. The page template draws
them (so every text in a plot is escaped by the template like the rest of the page).

An uplift plot shows one metric's relative difference against the reference branch, per analysis window
(or per parameter of the latest window, for deciles), one colour per branch, with the interval as a
whisker; the better side of zero is shaded when the metric says which side is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jetstream_assets.exports.report.format import interval, pct, reading

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
W, H = 400, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 40
MIN_SPAN = 1e-9  # a range narrower than this (a constant metric) is drawn as +-1% around its centre


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2, 2.5 or 5 times a power of ten.

    A range that is empty or narrower than MIN_SPAN (a constant metric: every interval within 1e-15 of
    zero) is widened to +-1% around its centre, so there are always at least two distinct ticks.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = -0.01, 0.01
    if high - low < MIN_SPAN:
        centre = (low + high) / 2
        low, high = centre - 0.01, centre + 0.01
    raw = (high - low) / max(target, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    value = math.floor(low / step) * step
    ticks: list[float] = []
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12) + 0.0)  # + 0.0: no "-0%" tick
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12) + 0.0)
    return ticks


@dataclass(frozen=True)
class Point:
    """One estimate to draw: a branch's relative difference in one window (and decile, if any)."""

    branch: str
    window: int
    parameter: float | None
    point: float | None
    lower: float | None
    upper: float | None
    adjusted: bool | None = None  # covariate-adjusted (linear models); None: not a linear model


@dataclass
class Mark:
    color: str
    css: str
    tip: str
    data: dict[str, str]
    x: float
    y: float | None
    y1: float | None
    y2: float | None
    cap: float
    hollow: bool


@dataclass
class Plot:
    label: str
    width: int = W
    height: int = H
    left: int = LEFT
    top: int = TOP
    plot_width: float = W - LEFT - RIGHT
    plot_height: float = H - TOP - BOTTOM
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_title: str = ""
    y_title: str = ""
    zero: float = 0.0
    better: tuple[float, float, float, str] | None = None  # y, height, label y, arrow
    marks: list[Mark] = field(default_factory=list)


def uplift_plot(
    points: Sequence[Point],
    *,
    label: str,
    data: Mapping[str, str],
    colors: Mapping[str, str],
    order: Sequence[str],
    reference: str,
    bigger_is_better: bool | None,
    x_title: str,
    statistic_label: str,
) -> Plot:
    """Relative difference (y, %) per window (x) for each branch; per parameter for the latest window."""
    by_parameter = any(p.parameter is not None for p in points)
    if by_parameter:
        latest = max(p.window for p in points)
        points = [p for p in points if p.window == latest]
        xs = sorted({p.parameter for p in points if p.parameter is not None})
        x_of = {x: i for i, x in enumerate(xs)}
        x_text = [f"{x:g}" for x in xs]
        x_title = f"{statistic_label}, window {latest}"
        slot = lambda p: x_of.get(p.parameter, 0)  # noqa: E731
    else:
        xs = sorted({p.window for p in points})
        x_of = {x: i for i, x in enumerate(xs)}
        x_text = [str(x) for x in xs]
        slot = lambda p: x_of[p.window]  # noqa: E731
    values = [v for p in points for v in (p.point, p.lower, p.upper) if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    pad = (high - low) * 0.08
    ticks = nice_ticks(low - pad, high + pad)
    y_min, y_max = ticks[0], ticks[-1]
    plot = Plot(label=label, x_title=x_title, y_title=f"difference vs {reference}")

    def y(v: float) -> float:
        return round(TOP + (y_max - v) / (y_max - y_min) * plot.plot_height, 1)

    digits = 1 if y_max - y_min < 0.2 else 0
    if y_max - y_min < 0.002:
        digits = 3
    plot.y_ticks = [(y(t), pct(t, digits)) for t in ticks]
    plot.zero = y(0.0)
    if bigger_is_better is not None:
        top, bottom = (TOP, plot.zero) if bigger_is_better else (plot.zero, TOP + plot.plot_height)
        text_y = TOP + 11 if bigger_is_better else TOP + plot.plot_height - 4
        plot.better = (top, max(bottom - top, 0.0), text_y, "\u2191" if bigger_is_better else "\u2193")
    band = plot.plot_width / max(len(xs), 1)
    every = max(1, math.ceil(len(xs) / 14))
    plot.x_ticks = [(round(LEFT + band * (i + 0.5), 1), t) for i, t in enumerate(x_text) if i % every == 0]
    shown = [b for b in order if b != reference and any(p.branch == b for p in points)]
    shown += sorted({p.branch for p in points} - set(shown))
    offset = {b: (i + 1) / (len(shown) + 1) for i, b in enumerate(shown)}
    cap = min(5.0, band / (len(shown) + 1) / 2.5)
    for p in points:
        if p.point is None and (p.lower is None or p.upper is None):
            continue
        css, words = reading(p.lower, p.upper, bigger_is_better)
        where = f"window {p.window}" if p.parameter is None else f"{p.parameter:g}, window {p.window}"
        method = {True: ", covariate-adjusted", False: ", not covariate-adjusted"}.get(p.adjusted, "")
        tip = f"{p.branch} vs {reference}, {where}: {pct(p.point)} {interval(p.lower, p.upper)}, {words}{method}"
        has_ci = p.lower is not None and p.upper is not None
        plot.marks.append(Mark(
            color=colors.get(p.branch, PALETTE[-2]), css=css, tip=tip,
            data={**data, "branch": p.branch, "reference": reference, "window": str(p.window),
                  "parameter": "" if p.parameter is None else f"{p.parameter:g}",
                  "point": "" if p.point is None else repr(p.point),
                  "lower": "" if p.lower is None else repr(p.lower),
                  "upper": "" if p.upper is None else repr(p.upper),
                  "adjusted": {True: "true", False: "false"}.get(p.adjusted, "")},
            x=round(LEFT + band * (slot(p) + offset[p.branch]), 1),
            y=None if p.point is None else y(p.point),
            y1=y(p.upper) if has_ci else None, y2=y(p.lower) if has_ci else None,
            cap=round(cap, 1), hollow=p.adjusted is False,
        ))
    return plot
