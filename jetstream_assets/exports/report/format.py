"""Words and numbers of the results report: human labels for Jetstream's internal names, and how an
estimate, an interval and a reading of significance are written."""

from __future__ import annotations

from typing import Any

from jetstream_assets.statistics.results import finite_or_none

# Analysis periods in the order the report's tabs show them, with the tab label and what a window counts.
PERIODS: dict[str, tuple[str, str]] = {
    "overall": ("Overall", "whole experiment"),
    "week": ("Weekly", "week after enrollment"),
    "day": ("Daily", "day after enrollment"),
    "days28": ("28-day", "28 days after enrollment"),
    "preenrollment_week": ("Pre-enrollment week", "week before enrollment"),
    "preenrollment_days28": ("Pre-enrollment 28 days", "28 days before enrollment"),
}
PREENROLLMENT_PERIODS = ("preenrollment_week", "preenrollment_days28")
# The period whose latest window is a metric's headline: the most complete picture first.
HEADLINE_PERIODS = ("overall", "days28", "week", "day")

# Statistics by their exported (output) name.
STATISTIC_LABELS: dict[str, str] = {
    "mean": "Mean (bootstrap)",
    "mean_lm": "Mean (linear model)",
    "mean_lm_noclip": "Mean (linear model, no capping)",
    "binomial": "Share of clients",
    "deciles": "Deciles",
    "count": "Client count",
    "sum": "Sum",
    "population_ratio": "Ratio over all clients",
    "per_client_dau_impact": "Daily active users impact per client",
    "kernel_density_estimate": "Density",
    "empirical_cdf": "Cumulative distribution",
}
LINEAR_MODELS = ("mean_lm", "mean_lm_noclip")
PRE_TREATMENT_LABELS: dict[str, str] = {
    "remove_nulls": "missing values dropped",
    "remove_indefinites": "missing and infinite values dropped",
    "censor_highest_values": "highest values capped",
    "censor_lowest_values": "lowest values capped",
    "censor_values_below_threshold": "values below a threshold capped",
    "censor_values_above_threshold": "values above a threshold capped",
    "normalize_over_analysis_period": "divided by the days in the window",
    "log": "log-transformed",
    "zero_fill": "missing values counted as zero",
}
BASIS_LABELS = {"enrollments": "All enrolled clients", "exposures": "Exposed clients only"}


def label(name: Any, table: dict[str, str]) -> str:
    """The human label of an internal name; an unknown name reads as words."""
    text = "" if name is None else str(name)
    return table.get(text) or text.replace("_", " ").strip().capitalize()


def segment_label(segment: str) -> str:
    return "All clients" if segment == "all" else label(segment, {})


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, infinite, boolean)."""
    return None if isinstance(value, bool) else finite_or_none(value)


def _signed(text: str) -> str:
    """No sign on a value that rounds to zero: a null effect reads 0.0%, never -0.0% or +0.0%."""
    digits = text.lstrip("+-")
    return digits if not any(c in "123456789" for c in digits) else text


def pct(value: float | None, digits: int = 1) -> str:
    """A relative difference as a signed percentage (0.1234 -> +12.3%, -0.00001 -> 0.0%)."""
    return "n/a" if value is None else _signed(f"{value * 100:+.{digits}f}%")


def num(value: float | None, signed: bool = False) -> str:
    """An estimate in the metric's own unit with three significant digits (signed for a difference)."""
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        text = f"{value:{sign}.3g}"
    elif abs(value) < 1000:
        text = f"{value:{sign},.3g}"
    else:
        text = f"{value:{sign},.0f}"
    return _signed(text) if signed else (text if text.strip("-0.,") else text.lstrip("-"))


def count(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def interval(lower: float | None, upper: float | None, fmt=pct) -> str:
    if lower is None or upper is None:
        return "no interval"
    return f"[{fmt(lower)}, {fmt(upper)}]"


def reading(lower: float | None, upper: float | None, bigger_is_better: bool | None) -> tuple[str, str]:
    """(css class, words) for a difference's interval: significant and which way, or not significant."""
    if lower is None or upper is None:
        return "neutral", "No interval"
    if lower <= 0 <= upper:
        return "neutral", "Not significant"
    up = lower > 0
    if bigger_is_better is None:
        return "neutral", f"Significant {'increase' if up else 'decrease'}"
    good = up == bigger_is_better
    return ("good" if good else "bad"), f"Significantly {'better' if good else 'worse'} ({'up' if up else 'down'})"
