"""The linear-model statistics: `linear_model_mean` (OLS means and branch differences, optionally adjusted by a
pre-enrollment covariate) and `per_client_dau_impact` (its differences scaled to the analysed population).

Computed in closed form from per-branch sufficient statistics, as mozanalysis' `compare_branches_lm` computes
them with statsmodels and marginaleffects (see `linear_model_mean`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import resampling
from .estimators import StatisticInput, _as_float, factorize_branches, st
from .results import Row


@dataclass
class _LinearFit:
    """OLS of metric ~ branch (+ covariate), fitted from per-branch sufficient statistics."""

    branches: list[str]
    coef: np.ndarray  # per-branch adjusted means (+ covariate slope last)
    cov: np.ndarray  # covariance of coef
    df_resid: float
    grid_shift: float  # (mean covariate over the prediction grid) - (mean covariate), 0 when unadjusted
    adjusted: bool


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product without BLAS: a vector dot through OpenBLAS wakes its thread pool, which costs ~1 ms
    at rest and tens of milliseconds on a busy machine, for microseconds of arithmetic."""
    return float(np.einsum("i,i->", a, b))


def _fit_linear(y: np.ndarray, codes: np.ndarray, k: int, branches: list[str], x: np.ndarray | None, grid_mean: float) -> _LinearFit | None:
    """Exact OLS with one indicator per branch and a centred covariate; None when the fit is singular.

    Same column space as mozanalysis' `y ~ C(branch, Treatment(ref)) + covariate`, so contrasts and their
    covariance are identical; sums are within-branch centred for precision (two passes, no design matrix).
    """
    n_b = np.bincount(codes, minlength=k).astype(float)
    ybar_b = np.bincount(codes, weights=y, minlength=k) / n_b
    yc = y - ybar_b[codes]
    syy_w = _dot(yc, yc)
    n = float(len(y))
    if x is None:
        p = k
        ssr = syy_w
        coef = ybar_b
        xtx_inv = np.diag(1.0 / n_b)
        shift = 0.0
    else:
        xbar = float(x.mean())
        xbar_b = np.bincount(codes, weights=x, minlength=k) / n_b
        xc = x - xbar_b[codes]
        sxx_w = _dot(xc, xc)
        sxy_w = _dot(xc, yc)
        scale = _dot(x - xbar, x - xbar)
        if not sxx_w > 1e-12 * max(scale, 1e-300) or not np.isfinite(sxx_w):
            return None
        p = k + 1
        slope = sxy_w / sxx_w
        coef = np.append(ybar_b - slope * (xbar_b - xbar), slope)
        ssr = syy_w - slope * sxy_w
        # (X'X)^-1 for X = [branch indicators, x - xbar], written out (block inverse)
        dx = xbar_b - xbar
        xtx_inv = np.zeros((p, p))
        xtx_inv[:k, :k] = np.diag(1.0 / n_b) + np.outer(dx, dx) / sxx_w
        xtx_inv[:k, k] = xtx_inv[k, :k] = -dx / sxx_w
        xtx_inv[k, k] = 1.0 / sxx_w
        shift = grid_mean - xbar
    df_resid = n - p
    sigma2 = max(ssr, 0.0) / df_resid if df_resid > 0 else np.nan
    return _LinearFit(branches, coef, sigma2 * xtx_inv, df_resid, shift, x is not None)


#: The covariate quantiles marginaleffects averages predictions over (0, 0.0001, ..., 0.9999).
GRID_QUANTILES = np.arange(0, 1, 0.0001)


def quantile_grid(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """`pd.Series(x).quantile(quantiles)` (linear interpolation, NaN ignored) from one sort.

    pandas computes each of the 10,000 grid quantiles with its own partition pass (0.4 s at 30,000
    clients); sorting once and interpolating gives the same values (to rounding) in about a millisecond.
    """
    xs = np.sort(x[~np.isnan(x)])
    if xs.size == 0:
        return np.full(len(quantiles), np.nan)
    q = np.asarray(quantiles, dtype=float)
    h = xs.size * q - q  # (n - 1) q, rounded as numpy's "linear" method rounds it
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, xs.size - 1)
    frac = h - lo
    a, b = xs[lo], xs[hi]
    # numpy's linear rule: lerp from the nearer end, so the result is exact when a == b
    return np.where(frac < 0.5, a + (b - a) * frac, b - (b - a) * (1 - frac))


def _pooled_cap(series: pd.Series, quantile: float) -> float:
    # what Series.quantile computes for a NumPy column (np.percentile of the non-null values), without its overhead
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":
        values = series.to_numpy()
        if values.dtype.kind == "f":
            values = values[~np.isnan(values)]
        # np.percentile's quantile is the percentage divided by 100 again
        q = np.true_divide(np.asarray([quantile]) * 100, 100)
        threshold = float(resampling.quantiles(values, q)[0]) if values.size else float("nan")
    else:
        threshold = float(series.quantile(quantile))
    if pd.api.types.is_integer_dtype(series.dtype):
        threshold = float(math.ceil(threshold))
    return threshold


def _covariate_column(inp: StatisticInput) -> str | None:
    adjustment = inp.params.get("covariate_adjustment")
    if not adjustment:
        return None
    # Jetstream never adjusts a pre-enrollment period, nor a period by itself (`period` may be an enum).
    raw = inp.params.get("period")
    period = str(getattr(raw, "value", raw) or "")
    if period in ("preenrollment_week", "preenrollment_days28") or period == adjustment.get("period"):
        return None
    column = f"{adjustment.get('metric') or inp.metric}_pre"
    if column not in inp.data.columns:
        inp.notes.append(f"covariate column '{column}' not in the data: falling back to unadjusted inferences")
        return None
    if column == inp.metric:
        raise inp.error(f"the covariate '{column}' must differ from the metric")
    return column


def linear_model_mean(inp: StatisticInput) -> list[Row]:
    """Means and branch differences from OLS, optionally adjusted by a pre-enrollment covariate (CUPED-like).

    Follows mozanalysis compare_branches_lm as Jetstream calls it: metric (and covariate) capped at the
    pooled (1 - drop_highest) quantile (rounded up for integer columns), clients without a value dropped,
    branch rows are t intervals of the capped means, differences are OLS contrasts with t intervals, and
    relative uplifts are exp of a normal delta-method interval on log(mean_b / mean_ref), the means predicted
    over the covariate's quantile grid (marginaleffects' lnratioavg). Computed in closed form from per-branch
    sums with an analytic gradient, so identical to the reference up to rounding (the reference's own
    finite-difference gradient is accurate to ~1e-7 relative). Intervals are always 95%, as in Jetstream.
    """
    metric = inp.metric
    drop = inp.params["drop_highest"]
    covariate = _covariate_column(inp)
    df = inp.data
    y_all = _as_float(df[metric], inp, metric)
    if np.isinf(y_all).any():
        raise inp.error(f"{int(np.isinf(y_all).sum())} client(s) have an infinite value", "Add the pre-treatment remove_indefinites")
    std = df[metric].astype(float).std()
    if not np.isfinite(std) or np.isclose(std, 0):
        inp.notes.append(f"metric '{metric}' has no variation; a linear model cannot be fitted")
        return []

    quantile = 1 - drop
    y_cap = _pooled_cap(df[metric], quantile)
    keep = ~np.isnan(y_all)
    x_all = None
    if covariate is not None:
        x_all = _as_float(df[covariate], inp, covariate)
        if np.isinf(x_all).any():
            raise inp.error(f"covariate '{covariate}' has infinite values", "Add the pre-treatment remove_indefinites")
        keep &= ~np.isnan(x_all)
        x_all = np.minimum(x_all, _pooled_cap(df[covariate], quantile))
    y = np.minimum(y_all, y_cap)[keep]
    if inp.branch_codes is None:
        inp.branch_codes = factorize_branches(df)
    label_codes, labels = inp.branch_codes
    label_codes = label_codes[keep]
    present = np.bincount(label_codes[label_codes >= 0], minlength=len(labels)) > 0
    branches = [b for b in inp.branches if b in labels and present[labels.index(b)]]
    for b in inp.branches:
        if b not in branches:
            inp.notes.append(f"branch '{b}' has no clients with a value: left out")
    index = {b: i for i, b in enumerate(branches)}
    # the model's branch index of each client (-1: a branch not analysed), from the factorised branch codes
    to_model = np.full(len(labels) + 1, -1)
    for i, b in enumerate(branches):
        to_model[labels.index(b)] = i
    codes = to_model[label_codes]  # code -1 (no branch) picks the last entry, -1
    in_model = codes >= 0
    y, codes = y[in_model], codes[in_model]
    x = x_all[keep][in_model] if x_all is not None else None
    k = len(branches)

    rows: list[Row] = []
    for i, b in enumerate(branches):
        yb = y[codes == i]
        nb = len(yb)
        mean = float(yb.mean())
        if nb > 1:
            sem = float(yb.std(ddof=1)) / math.sqrt(nb)
            t = st.t.ppf(0.975, nb - 1)
            rows.append(Row(b, mean, mean - t * sem, mean + t * sem, ci_width=0.95))
        else:
            rows.append(Row(b, mean, None, None, ci_width=0.95))

    grid_mean = 0.0
    if x is not None:
        grid_mean = float(quantile_grid(x, GRID_QUANTILES).mean())
    fit = _fit_linear(y, codes, k, branches, x, grid_mean) if k else None
    if fit is None and x is not None:
        inp.notes.append(f"covariate '{covariate}' cannot be used (no variation within branches): unadjusted inferences")
        fit = _fit_linear(y, codes, k, branches, None, 0.0)
    if fit is None or not (fit.df_resid > 0):
        return rows
    t_crit = st.t.ppf(0.975, fit.df_resid)
    z_crit = st.norm.ppf(0.975)  # marginaleffects' delta-method intervals are normal, not t

    skipped: set[str] = set()
    for r in inp.branches:
        ref_values = y_all[inp._branch_mask(r) & ~np.isnan(y_all)]
        if len(ref_values) and (np.minimum(ref_values, y_cap) == 0).all():
            skipped.add(r)
            inp.notes.append(
                f"reference branch '{r}' is all zero (after capping): no comparisons to it, "
                "since a relative uplift over a zero mean is undefined"
            )
    if skipped and skipped >= set(branches):
        return []
    p = len(fit.coef)
    for b, r in inp.pairs():
        if r in skipped or b not in index or r not in index:
            continue
        g = np.zeros(p)
        g[index[b]], g[index[r]] = 1.0, -1.0
        diff = float(g @ fit.coef)
        se = math.sqrt(max(float(g @ fit.cov @ g), 0.0))
        rows.append(Row(b, diff, diff - t_crit * se, diff + t_crit * se, None, "difference", r, 0.95))

        mu_b = fit.coef[index[b]] + (fit.coef[-1] * fit.grid_shift if fit.adjusted else 0.0)
        mu_r = fit.coef[index[r]] + (fit.coef[-1] * fit.grid_shift if fit.adjusted else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(mu_b / mu_r)
        h = np.zeros(p)
        h[index[b]], h[index[r]] = 1.0 / mu_b, -1.0 / mu_r
        if fit.adjusted:
            h[-1] = fit.grid_shift * (1.0 / mu_b - 1.0 / mu_r)
        se_log = math.sqrt(max(float(h @ fit.cov @ h), 0.0))
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(
                Row(
                    b,
                    float(np.exp(log_ratio) - 1),
                    float(np.exp(log_ratio - z_crit * se_log) - 1),
                    float(np.exp(log_ratio + z_crit * se_log) - 1),
                    None,
                    "relative_uplift",
                    r,
                    0.95,
                )
            )
    return rows


def per_client_dau_impact(inp: StatisticInput) -> list[Row]:
    """Linear-model branch comparisons only; the difference scaled by the clients in the analysis.

    As Jetstream: difference rows times the number of clients (rows after pre-treatments, in this segment),
    i.e. the daily-active-users gain if the branch were shipped to the experiment's population; relative
    uplift rows unchanged; no branch-level rows (absolute values depend on the enrollment size).
    """
    n_clients = len(inp.data)
    rows = [r for r in linear_model_mean(inp) if r.comparison is not None]
    order = {b: i for i, b in enumerate(inp.experiment_branches or inp.branches)}
    out = []
    for r in rows:
        if r.branch not in order:
            continue
        if r.comparison == "difference":
            r.point, r.lower, r.upper = (None if v is None else v * n_clients for v in (r.point, r.lower, r.upper))
        r.statistic = "per_client_dau_impact"
        out.append(r)
    out.sort(key=lambda r: order[r.branch])
    return out
