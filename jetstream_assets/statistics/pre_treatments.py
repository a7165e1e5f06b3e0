"""Pre-treatments: per-client transformations applied, in config order, before a statistic.

Each is a function (frame, column, args, context) -> frame, registered under its Jetstream config name with
Jetstream's defaults. They apply to the metric's column and, for metrics with `depends_on` (population_ratio),
to each upstream metric's column too, as Jetstream does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .results import StatisticError


@dataclass
class PreTreatmentContext:
    metric: str
    statistic: str
    analysis_length_dates: int = 1


PreTreatmentFn = Callable[[pd.DataFrame, str, dict[str, Any], PreTreatmentContext], pd.DataFrame]


@dataclass(frozen=True)
class PreTreatmentSpec:
    fn: PreTreatmentFn
    defaults: dict[str, Any]
    required: tuple[str, ...] = ()


def remove_nulls(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Drop clients with no value for the column."""
    return df[df[col].notna()]


def remove_indefinites(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Drop clients whose value is null or infinite.

    Jetstream only turns +inf into null; -inf (e.g. log of 0) is dropped here too, since no statistic can
    use it and the name promises it.
    """
    values = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df[np.isfinite(values.to_numpy())]


def censor_highest_values(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Keep clients strictly below the `fraction` quantile (pooled over branches)."""
    threshold = df[col].quantile(float(args["fraction"]))
    return df[df[col] < threshold]


def censor_lowest_values(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Keep clients strictly above the `fraction` quantile (pooled over branches)."""
    threshold = df[col].quantile(float(args["fraction"]))
    return df[df[col] > threshold]


def censor_values_below_threshold(
    df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext
) -> pd.DataFrame:
    """Keep clients strictly above `threshold`."""
    return df[df[col] > float(args["threshold"])]


def censor_values_above_threshold(
    df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext
) -> pd.DataFrame:
    """Keep clients strictly below `threshold`."""
    return df[df[col] < float(args["threshold"])]


def normalize_over_analysis_period(
    df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext
) -> pd.DataFrame:
    """Divide by the analysis window's length in days (Jetstream always uses the window's own length)."""
    length = ctx.analysis_length_dates or 1
    return df.assign(**{col: df[col] / length})


def log(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Logarithm in `base` (natural when base is null or 0). Zero becomes -inf; negative values are an error.

    Jetstream silently turns negative values into NaN, which later breaks the statistic with an unrelated
    message; we say what happened instead.
    """
    values = pd.to_numeric(df[col], errors="coerce").astype(float)
    negative = int((values < 0).sum())
    if negative:
        raise StatisticError(
            ctx.metric,
            ctx.statistic,
            f"pre-treatment 'log' got {negative} negative value(s) in column '{col}' (smallest {values.min():g})",
            "Add the pre-treatment censor_values_below_threshold (e.g. threshold = 0) before log, "
            "or drop log for this metric",
        )
    base = args.get("base")
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.log(values)
        if base:
            result = result / np.log(float(base))
    return df.assign(**{col: result})


def zero_fill(df: pd.DataFrame, col: str, args: dict[str, Any], ctx: PreTreatmentContext) -> pd.DataFrame:
    """Clients without a value count as 0."""
    return df.fillna(value={col: 0})


PRE_TREATMENTS: dict[str, PreTreatmentSpec] = {
    "remove_nulls": PreTreatmentSpec(remove_nulls, {}),
    "remove_indefinites": PreTreatmentSpec(remove_indefinites, {}),
    "censor_highest_values": PreTreatmentSpec(censor_highest_values, {"fraction": 1 - 1e-5}),
    "censor_lowest_values": PreTreatmentSpec(censor_lowest_values, {"fraction": 1e-5}),
    "censor_values_below_threshold": PreTreatmentSpec(censor_values_below_threshold, {}, ("threshold",)),
    "censor_values_above_threshold": PreTreatmentSpec(censor_values_above_threshold, {}, ("threshold",)),
    # Jetstream overwrites analysis_period_length with the window length, so the argument is accepted and ignored.
    "normalize_over_analysis_period": PreTreatmentSpec(normalize_over_analysis_period, {"analysis_period_length": None}),
    "log": PreTreatmentSpec(log, {"base": 10.0}),
    "zero_fill": PreTreatmentSpec(zero_fill, {}),
}


def known_pre_treatments() -> list[str]:
    return list(PRE_TREATMENTS)


def resolve_pre_treatment(name: str, args: dict[str, Any] | None, metric: str, statistic: str) -> dict[str, Any]:
    """Merge config args over defaults; reject unknown names, unknown args and missing required args."""
    spec = PRE_TREATMENTS.get(name)
    if spec is None:
        raise StatisticError(
            metric,
            statistic,
            f"unknown pre-treatment '{name}'",
            f"Use one of: {', '.join(PRE_TREATMENTS)}",
        )
    args = dict(args or {})
    allowed = set(spec.defaults) | set(spec.required)
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise StatisticError(
            metric,
            statistic,
            f"pre-treatment '{name}' has no argument(s) {unknown}",
            f"Its arguments are: {sorted(allowed) or 'none'}",
        )
    missing = [k for k in spec.required if args.get(k) is None]
    if missing:
        raise StatisticError(
            metric,
            statistic,
            f"pre-treatment '{name}' needs argument(s) {missing}",
            f"Set them in the metric's pre_treatments, e.g. {{name = \"{name}\", args = {{{missing[0]} = 0}}}}",
        )
    merged = {**spec.defaults, **args}
    for key in ("fraction", "threshold"):
        if key in merged and merged[key] is not None:
            try:
                merged[key] = float(merged[key])
            except (TypeError, ValueError):
                raise StatisticError(
                    metric, statistic, f"pre-treatment '{name}' argument {key}={merged[key]!r} is not a number"
                ) from None
    if name in ("censor_highest_values", "censor_lowest_values") and not 0 <= merged["fraction"] <= 1:
        raise StatisticError(metric, statistic, f"pre-treatment '{name}' fraction must be in [0, 1], got {merged['fraction']}")
    return merged


def apply_pre_treatments(
    df: pd.DataFrame,
    columns: list[str],
    pre_treatments: list[tuple[str, dict[str, Any]]],
    ctx: PreTreatmentContext,
) -> pd.DataFrame:
    """Apply each pre-treatment, in order, to every column it concerns."""
    resolved = [(name, resolve_pre_treatment(name, args, ctx.metric, ctx.statistic)) for name, args in pre_treatments]
    for name, args in resolved:
        fn = PRE_TREATMENTS[name].fn
        for col in columns:
            if col in df.columns:
                df = fn(df, col, args, ctx)
    return df
