"""compute_statistic: one configured statistic of one metric over per-client data, as Jetstream computes it.

Config names, parameters and defaults are Jetstream's (see REFERENCE.md "Statistics"). Unknown parameters
are errors, because Jetstream's statistic classes reject them too and a typo would otherwise silently fall
back to a default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import estimators, linear_model
from .estimators import StatisticInput, factorize_branches
from .pre_treatments import PreTreatmentContext, apply_pre_treatments, known_pre_treatments
from .results import Row, StatisticError, records_frame, row_records

logger = logging.getLogger(__name__)

_REQUIRED = object()


@dataclass(frozen=True)
class StatisticSpec:
    output: str  # the `statistic` column
    fn: Callable[[StatisticInput], list[Row]]
    defaults: dict[str, Any]
    needs_metric_column: bool = True


_CI = {"confidence_interval": 0.95}
STATISTICS: dict[str, StatisticSpec] = {
    "bootstrap_mean": StatisticSpec(
        "mean", estimators.bootstrap_mean, {"num_samples": 10000, "drop_highest": 0.005, **_CI}
    ),
    "binomial": StatisticSpec("binomial", estimators.binomial, {**_CI}),
    "deciles": StatisticSpec("deciles", estimators.deciles, {"num_samples": 10000, **_CI}),
    "linear_model_mean": StatisticSpec(
        "mean_lm", linear_model.linear_model_mean, {"drop_highest": 0.005, "covariate_adjustment": None}
    ),
    "linear_model_mean_no_clip": StatisticSpec(
        "mean_lm_noclip", linear_model.linear_model_mean, {"drop_highest": 0.0, "covariate_adjustment": None}
    ),
    "per_client_dau_impact": StatisticSpec(
        "per_client_dau_impact", linear_model.per_client_dau_impact, {"drop_highest": 0.0, "covariate_adjustment": None}
    ),
    "count": StatisticSpec("count", estimators.count, {}, needs_metric_column=False),
    "sum": StatisticSpec("sum", estimators.sum_, {}),
    "kernel_density_estimate": StatisticSpec(
        "kernel_density_estimate",
        estimators.kernel_density_estimate,
        {"bandwidth": "scott", "adjust": 1.0, "kernel": "gaussian", "grid_size": 256, "log_space": False},
    ),
    "empirical_cdf": StatisticSpec("empirical_cdf", estimators.empirical_cdf, {"grid_size": 256, "log_space": False}),
    "population_ratio": StatisticSpec(
        "population_ratio",
        estimators.population_ratio,
        {
            "numerator": _REQUIRED,
            "denominator": _REQUIRED,
            "num_samples": 10000,
            "drop_highest": 0.005,
            **_CI,
        },
        needs_metric_column=False,
    ),
}
# Parameters any statistic may carry: the analysis period Jetstream adds, and the parser's pre-treatments key.
_ALWAYS_ALLOWED = {"period", "pre_treatments"}


def known_statistics() -> list[str]:
    """Statistic config names, for config validation."""
    return list(STATISTICS)


__all__ = ["check_parameters", "compute_statistic", "known_statistics", "known_pre_treatments"]


def _resolve_params(statistic: str, metric: str, params: dict[str, Any] | None) -> dict[str, Any]:
    spec = STATISTICS[statistic]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults) - _ALWAYS_ALLOWED)
    if unknown:
        raise StatisticError(
            metric,
            statistic,
            f"unknown parameter(s) {unknown}",
            f"Parameters of {statistic}: {sorted(spec.defaults) or 'none'}",
        )
    merged = {**spec.defaults, **{k: v for k, v in params.items() if k != "pre_treatments"}}
    missing = [k for k, v in merged.items() if v is _REQUIRED or (k in ("numerator", "denominator") and not v)]
    if missing:
        raise StatisticError(
            metric,
            statistic,
            f"missing required parameter(s) {missing}",
            f"Set them under [metrics.{metric}.statistics.{statistic}], naming the metrics in depends_on "
            f"(e.g. numerator = \"<metric>\", denominator = \"<metric>\")",
        )

    def number(key: str, kind: type, low: float, high: float, low_open: bool = False) -> None:
        if key not in merged:
            return
        value = merged[key]
        try:
            if isinstance(value, bool):
                raise TypeError
            converted = kind(value)
            if kind is int and converted != float(value):
                raise ValueError
        except (TypeError, ValueError):
            raise StatisticError(metric, statistic, f"parameter {key} must be a number, got {value!r}") from None
        if not (low < converted if low_open else low <= converted) or not converted <= high:
            bracket = "(" if low_open else "["
            raise StatisticError(metric, statistic, f"parameter {key}={value} is outside {bracket}{low}, {high}]")
        merged[key] = converted

    number("num_samples", int, 1, 10_000_000)
    number("confidence_interval", float, 0.0, 0.999, low_open=True)
    number("drop_highest", float, 0.0, 0.5)
    number("grid_size", int, 1, 100_000)
    number("adjust", float, 0.0, float("inf"), low_open=True)
    if "log_space" in merged:
        merged["log_space"] = str(merged["log_space"]).lower() in ("1", "true", "yes")
    cov = merged.get("covariate_adjustment")
    if cov is not None:
        if not isinstance(cov, dict) or "period" not in cov:
            raise StatisticError(
                metric,
                statistic,
                f"covariate_adjustment must be a table with 'period' (and optionally 'metric'), got {cov!r}",
                'E.g. covariate_adjustment = {period = "preenrollment_week"}',
            )
        if cov["period"] not in ("preenrollment_week", "preenrollment_days28"):
            raise StatisticError(
                metric,
                statistic,
                f"covariate_adjustment period must be preenrollment_week or preenrollment_days28, got {cov['period']!r}",
            )
    return merged


def check_parameters(statistic: str, metric: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """A statistic's parameters checked against its schema (names, types, ranges, and the KDE's bandwidth
    and kernel) as merged with the defaults; StatisticError says what is wrong. Config validation calls
    this so a bad parameter is reported before the analysis runs."""
    if statistic not in STATISTICS:
        raise StatisticError(metric, statistic, "unknown statistic", f"Use one of: {', '.join(STATISTICS)}")
    merged = _resolve_params(statistic, metric, params)
    if "bandwidth" in merged:
        bandwidth = merged["bandwidth"]
        number = None
        if not isinstance(bandwidth, bool):
            try:
                number = float(bandwidth)
            except (TypeError, ValueError):
                number = None
        if bandwidth not in ("scott", "silverman") and not (number is not None and number > 0):
            raise StatisticError(metric, statistic, f"bandwidth must be 'scott', 'silverman' or a positive "
                                 f"number, got {bandwidth!r}")
    if "kernel" in merged and merged["kernel"] not in estimators.KERNELS:
        raise StatisticError(metric, statistic, f"unknown kernel {merged['kernel']!r}",
                             f"Use one of: {', '.join(estimators.KERNELS)}")
    return merged


def _branch_order(present: list[str], branches: list[str] | None, reference_branch: str | None) -> list[str]:
    if branches:
        order = [b for b in branches if b in present] + [b for b in present if b not in branches]
    else:
        order = list(present)  # a copy: `present` names the branch codes, reordering it would rename them
    if reference_branch in order:
        order.remove(reference_branch)
        order.insert(0, reference_branch)
    return order


def compute_statistic(data: pd.DataFrame, metric: str, statistic: str, *args, **kwargs) -> pd.DataFrame:
    """Rows (STATISTIC_COLUMNS) of one statistic of one metric, every branch and every ordered branch pair.

    data: one row per client with "branch" and the metric column ("<metric>_pre" for covariate adjustment,
    the numerator/denominator columns for population_ratio). Comparisons are made for every ordered pair of
    branches, as Jetstream does by using each branch as the reference in turn; `reference_branch` (default:
    "control" when present, as Jetstream) only orders the rows, its comparisons first.

    Raises StatisticError (naming metric and statistic) for configuration errors and unusable data. When the
    data allow no result (e.g. a linear model of a metric without variation) the frame is empty and
    `frame.attrs["notes"]` says why; notes also record branches left out or fallbacks taken.

    The other parameters are statistic_records' (params, pre_treatments, branches, reference_branch,
    analysis_length_dates, segment, analysis_basis, seed).
    """
    records, notes = statistic_records(data, metric, statistic, *args, **kwargs)
    frame = records_frame(records)
    frame.attrs["notes"] = notes
    return frame


def _codes_after(data: pd.DataFrame, df: pd.DataFrame, branch_codes) -> tuple[np.ndarray, list[str]]:
    """The branch codes of the rows of `df` (what pre-treatments left of `data`): `branch_codes` (given for
    `data`, whose index is then its positions) for the rows left, else `df`'s own factorised branches."""
    if branch_codes is None:
        return factorize_branches(df)
    codes, labels = branch_codes
    if len(df) == len(data):
        return codes, labels
    return codes[df.index.to_numpy()], labels


def _present(codes: np.ndarray, labels: list[str], known: list[str] | None) -> list[str]:
    """The labels some row has: those in `known`, then the others in order of their first row (the order
    pd.factorize gives them, which is what orders them in the rows)."""
    n = np.bincount(codes[codes >= 0], minlength=len(labels)) if labels else []
    present = [label for label, count in zip(labels, n) if count]
    unknown = [label for label in present if label not in (known or ())]
    if len(unknown) > 1:
        first = {label: int(np.argmax(codes == labels.index(label))) for label in unknown}
        unknown.sort(key=first.__getitem__)
    return [label for label in present if label in (known or ())] + unknown


def statistic_records(
    data: pd.DataFrame,
    metric: str,
    statistic: str,
    params: dict | None = None,
    pre_treatments: list[tuple[str, dict]] | None = None,
    branches: list[str] | None = None,
    reference_branch: str | None = None,
    analysis_length_dates: int = 1,
    segment: str = "all",
    analysis_basis: str = "enrollments",
    seed: int | None = None,
    branch_codes: tuple[np.ndarray, list[str]] | None = None,
) -> tuple[list[tuple], list[str]]:
    """compute_statistic's rows as records (results.row_records), and its notes (logged as warnings).

    `branch_codes`: data's branches factorised (estimators.factorize_branches; codes of any labels that
    index them), given when the caller has them; `data`'s index must then be its row positions (0..n-1).
    """
    if statistic not in STATISTICS:
        raise StatisticError(metric, statistic, "unknown statistic", f"Use one of: {', '.join(STATISTICS)}")
    spec = STATISTICS[statistic]
    merged = _resolve_params(statistic, metric, params)
    if not isinstance(data, pd.DataFrame) or "branch" not in data.columns:
        raise StatisticError(metric, statistic, "the data have no 'branch' column", "Pass one row per client with its branch")

    columns = [metric]
    if statistic == "population_ratio":
        columns += [merged["numerator"], merged["denominator"]]
        for c in columns[1:]:
            if c not in data.columns:
                raise StatisticError(
                    metric,
                    statistic,
                    f"column '{c}' (numerator/denominator) is not in the data",
                    "Compute the metrics named in depends_on for this analysis window",
                )
    elif spec.needs_metric_column and metric not in data.columns:
        raise StatisticError(metric, statistic, f"column '{metric}' is not in the data", "Check the metric name")
    wanted = ["branch"] + [c for c in dict.fromkeys(columns + [c for c in data.columns if c.endswith("_pre")]) if c in data.columns]
    # pre-treatments and estimators never change the frame they are given: no copy when it is all wanted
    df = data if list(data.columns) == wanted else data.loc[:, wanted]
    if not (pd.api.types.is_object_dtype(df["branch"].dtype) or pd.api.types.is_string_dtype(df["branch"].dtype)):
        df = df.assign(branch=df["branch"].astype(str))
        branch_codes = None  # the labels are the strings now

    ctx = PreTreatmentContext(metric, statistic, analysis_length_dates)
    df = apply_pre_treatments(df, columns, list(pre_treatments or []), ctx)

    reference_branch = reference_branch or "control"
    notes: list[str] = []
    branch_codes = _codes_after(data, df, branch_codes)
    order = _branch_order(_present(*branch_codes, branches), branches, reference_branch)
    for b in branches or []:
        if b not in order:
            notes.append(f"branch '{b}' has no clients (after pre-treatments): left out")
    if not order:
        raise StatisticError(
            metric,
            statistic,
            "no clients left to analyse" + (" after pre-treatments" if pre_treatments else ""),
            "Check the enrollments and the metric's pre-treatments",
        )
    if len(order) == 1 and statistic not in ("count", "sum", "kernel_density_estimate", "empirical_cdf"):
        notes.append(f"only one branch ('{order[0]}') has clients: no branch comparisons")

    inp = StatisticInput(
        data=df,
        metric=metric,
        statistic=statistic,
        params=merged,
        branches=order,
        experiment_branches=list(branches or []),
        seed=seed,
        notes=notes,
        branch_codes=branch_codes,
    )
    with np.errstate(all="ignore"):
        rows = spec.fn(inp)
    records = row_records(rows, metric=metric, statistic=spec.output, segment=segment, analysis_basis=analysis_basis)
    if not records:
        notes.append(f"metric '{metric}', statistic '{statistic}': no result rows")
    for note in notes:
        logger.warning("metric %s, statistic %s: %s", metric, statistic, note)
    return records, list(notes)
