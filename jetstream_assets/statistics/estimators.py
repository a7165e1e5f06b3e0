"""One function per Jetstream statistic, each vectorised over clients and resamples.

Every estimator takes a `StatisticInput` (per-client data after pre-treatments, branches in order, merged
parameters) and returns `Row`s. Branch-level rows come once per branch; comparison rows come for every
ordered pair (branch, comparison_to_branch), which is what Jetstream produces by running each statistic once
with every branch as the reference. Here the per-branch draws are made once and reused for all pairs: each
pair's draws have the same joint distribution as in Jetstream's separate runs, at 1/k of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from . import resampling
from .results import Row, StatisticError


class _Distributions:
    """The quantiles the statistics need, as `scipy.stats` names them (`st.t.ppf(q, df)`, ...), computed with
    the `scipy.special` functions scipy.stats computes them with (bit for bit) and imported on first use:
    validate-config imports the statistics for their parameter schemas only, and importing scipy.stats would
    cost every run half a second. Any other distribution comes from scipy.stats itself."""

    def __getattr__(self, name: str) -> Any:
        from scipy import special

        fast = {
            "beta": SimpleNamespace(ppf=lambda q, a, b: special.betaincinv(a, b, q), mean=lambda a, b: a / (a + b)),
            "t": SimpleNamespace(ppf=lambda q, df: special.stdtrit(df, q)),
            "norm": SimpleNamespace(ppf=special.ndtri),
        }.get(name)
        if fast is not None:
            return fast
        from scipy import stats

        return getattr(stats, name)


st = _Distributions()

DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@dataclass
class StatisticInput:
    data: pd.DataFrame
    metric: str
    statistic: str  # config name
    params: dict[str, Any]
    branches: list[str]  # branches with data, in output order (reference branch first)
    experiment_branches: list[str]
    seed: int | None
    notes: list[str] = field(default_factory=list)
    branch_codes: tuple[np.ndarray, list[str]] | None = field(default=None, repr=False)
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _branch_mask(self, branch: str) -> np.ndarray:
        # factorised once: comparing millions of branch strings per lookup dominated the cheap statistics
        if self.branch_codes is None:
            self.branch_codes = factorize_branches(self.data)
        codes, labels = self.branch_codes
        return codes == (labels.index(branch) if branch in labels else -2)

    def error(self, problem: str, remedy: str | None = None) -> StatisticError:
        return StatisticError(self.metric, self.statistic, problem, remedy)

    def rng(self, *labels: str) -> np.random.Generator:
        return resampling.make_rng(self.seed, self.metric, self.statistic, *labels)

    def pairs(self) -> list[tuple[str, str]]:
        """(branch, reference) for every ordered pair, grouped by reference in branch order."""
        return [(b, r) for r in self.branches for b in self.branches if b != r]

    def values(self, column: str, branch: str, *, nulls_allowed: bool = False) -> np.ndarray:
        """A branch's finite values of a column; nulls and infinities are errors that name the remedy.
        With `nulls_allowed`, nulls are kept (as NaN) for the statistic to count."""
        if column not in self._columns:
            self._columns[column] = _as_float(self.data[column], self, column)
        x = self._columns[column][self._branch_mask(branch)]
        nulls = 0 if nulls_allowed else int(np.isnan(x).sum())
        if nulls:
            raise self.error(
                f"{nulls} client(s) in branch '{branch}' have no value for '{column}'",
                "Add the pre-treatment remove_nulls (drop them) or zero_fill (count them as 0)",
            )
        infinite = int(np.isinf(x).sum())
        if infinite:
            raise self.error(
                f"{infinite} client(s) in branch '{branch}' have an infinite value for '{column}'",
                "Add the pre-treatment remove_indefinites",
            )
        return x


def factorize_branches(data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Per-client branch codes (-1 for none) and the branch names in order of first appearance."""
    codes, labels = pd.factorize(data["branch"], sort=False)
    return codes, [str(label) for label in labels]


def _as_float(series: pd.Series, inp: StatisticInput, column: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype(float)
    try:
        return series.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise inp.error(
            f"column '{column}' is not numeric (dtype {series.dtype})",
            "Check the metric's select_expression: statistics need numbers per client",
        ) from None


def _clip_top(x: np.ndarray, drop_highest: float) -> np.ndarray:
    """Cap a branch's values at its own (1 - drop_highest) quantile, as mozanalysis' bootstraps do."""
    if drop_highest <= 0 or len(x) == 0:
        return x
    return np.clip(x, np.min(x, axis=0), resampling.quantiles(x, 1 - drop_highest))


def _comparison_rows(
    inp: StatisticInput,
    draws: dict[str, np.ndarray],
    ci: float,
    parameters: list[float | None],
    exact_difference: dict[str, np.ndarray] | None = None,
) -> list[Row]:
    """difference and relative_uplift rows for every ordered pair, from paired per-branch draws.

    draws[b] is (num_samples x len(parameters)). When exact_difference is given (posterior means known in
    closed form), the difference point is exact instead of a Monte Carlo average.
    """
    rows: list[Row] = []
    for b, r in inp.pairs():
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            diff = draws[b] - draws[r]
            rel = draws[b] / draws[r] - 1
        d_point, d_lo, d_hi = resampling.summarize(diff, ci)
        if exact_difference is not None:
            d_point = exact_difference[b] - exact_difference[r]
        r_point, r_lo, r_hi = resampling.summarize(rel, ci)
        for i, param in enumerate(parameters):
            rows.append(Row(b, d_point[i], d_lo[i], d_hi[i], param, "difference", r, ci))
            rows.append(Row(b, r_point[i], r_lo[i], r_hi[i], param, "relative_uplift", r, ci))
    return rows


# --- resampling statistics -----------------------------------------------------------------------------


def bootstrap_mean(inp: StatisticInput) -> list[Row]:
    """Bayesian bootstrap of the mean (Rubin 1981), as mozanalysis' bayesian_bootstrap.compare_branches.

    Each branch is capped at its own (1 - drop_highest) quantile, compressed (`resampling.compress`) and
    resampled with Dirichlet weights drawn as block Gammas (`resampling.bayesian_bootstrap_means`). The
    branch point and the difference point are the posterior means, which for Dirichlet(1,...,1) weights are
    exactly the (capped) sample means; the reference reports the Monte Carlo average of the same quantity.
    """
    p = inp.params
    ci, n_samples, drop = p["confidence_interval"], p["num_samples"], p["drop_highest"]
    draws: dict[str, np.ndarray] = {}
    means: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    for b in inp.branches:
        x = _clip_top(inp.values(inp.metric, b), drop)
        blocks = resampling.compress(x)
        draws[b] = resampling.bayesian_bootstrap_means(blocks, n_samples, inp.rng(b))[:, None]
        means[b] = np.array([x.mean()])
        _, lo, hi = resampling.summarize(draws[b], ci)
        rows.append(Row(b, means[b][0], lo[0], hi[0], ci_width=ci))
    return rows + _comparison_rows(inp, draws, ci, [None], exact_difference=means)


def deciles(inp: StatisticInput) -> list[Row]:
    """Bootstrap of the deciles without resampling clients (mozanalysis compare_branches_quantiles).

    The order statistic a bootstrap resample yields for quantile q is drawn directly as the sorted value at a
    Binomial(n - 1, q) index; that is the reference's own method, here drawn for all deciles at once.
    """
    p = inp.params
    ci, n_samples = p["confidence_interval"], p["num_samples"]
    draws: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    for b in inp.branches:
        x = np.sort(inp.values(inp.metric, b))
        draws[b] = resampling.quantile_bootstrap(x, DECILES, n_samples, inp.rng(b))
        point, lo, hi = resampling.summarize(draws[b], ci)
        rows += [Row(b, point[i], lo[i], hi[i], q, ci_width=ci) for i, q in enumerate(DECILES)]
    return rows + _comparison_rows(inp, draws, ci, list(DECILES))


def population_ratio(inp: StatisticInput) -> list[Row]:
    """Classical bootstrap of mean(numerator) / mean(denominator) (mozanalysis frequentist compare_branches).

    Each branch's (numerator, denominator) pairs are capped column-wise at the branch's (1 - drop_highest)
    quantile, compressed into blocks of clients, and resampled with multinomial block counts
    (`resampling.classical_bootstrap_sums`); the ratio of resampled sums is the ratio of resampled means.
    """
    p = inp.params
    ci, n_samples, drop = p["confidence_interval"], p["num_samples"], p["drop_highest"]
    num, den = p["numerator"], p["denominator"]
    draws: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    for b in inp.branches:
        xy = np.column_stack([inp.values(num, b), inp.values(den, b)])
        xy = _clip_top(xy, drop)
        sums = resampling.classical_bootstrap_sums(resampling.compress(xy), n_samples, inp.rng(b))
        with np.errstate(divide="ignore", invalid="ignore"):
            draws[b] = (sums[:, 0] / sums[:, 1])[:, None]
        point, lo, hi = resampling.summarize(draws[b], ci)
        rows.append(Row(b, point[0], lo[0], hi[0], ci_width=ci))
    return rows + _comparison_rows(inp, draws, ci, [None])


def binomial(inp: StatisticInput) -> list[Row]:
    """Beta(1, 1)-prior posterior of a conversion rate (mozanalysis bayesian_stats.binary).

    Branch rows are exact Beta quantiles and mean; comparisons come from 10,000 joint posterior draws.
    (mozanalysis always summarises comparisons at its default quantiles, so Jetstream has no interval for a
    confidence_interval other than 0.95 or 0.99; here every confidence_interval gets its interval.)
    """
    ci = inp.params["confidence_interval"]
    lo_q = (1 - ci) / 2
    draws: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    for b in inp.branches:
        x = inp.values(inp.metric, b)
        if not np.isin(x, (0.0, 1.0)).all():
            bad = x[~np.isin(x, (0.0, 1.0))][0]
            raise inp.error(
                f"binomial needs values 0 or 1 (true/false) per client; branch '{b}' has {bad:g}",
                "Use a boolean metric, or bootstrap_mean for counts and amounts",
            )
        n, k = len(x), float(x.sum())
        # the distribution's methods with its parameters: freezing a scipy distribution costs about a millisecond
        lo, hi = st.beta.ppf([lo_q, 1 - lo_q], k + 1, n - k + 1)
        rows.append(Row(b, st.beta.mean(k + 1, n - k + 1), lo, hi, ci_width=ci))
        draws[b] = inp.rng(b).beta(k + 1, n - k + 1, size=10_000)[:, None]
    return rows + _comparison_rows(inp, draws, ci, [None])


# --- linear models -------------------------------------------------------------------------------------


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


# --- deterministic statistics --------------------------------------------------------------------------


def count(inp: StatisticInput) -> list[Row]:
    """Clients per branch (every row, with or without a value)."""
    return [Row(b, float(np.count_nonzero(inp._branch_mask(b)))) for b in inp.branches]


def sum_(inp: StatisticInput) -> list[Row]:
    """Sum of the metric per branch; clients without a value add nothing (pandas' sum, as Jetstream)."""
    values = pd.to_numeric(inp.data[inp.metric], errors="coerce").astype(float)
    sums = values.groupby(inp.data["branch"], sort=False).sum()
    return [Row(b, float(sums.get(b, 0.0))) for b in inp.branches]


@dataclass
class _Grid:
    points: np.ndarray
    geometric: bool
    zero_row: bool  # add a row at 0, below the first point of a geometric grid


def _grid(x: np.ndarray, size: int, log_space: bool, inp: StatisticInput, branch: str) -> _Grid:
    """Evaluation grid over [min, max]: geometric when asked and possible, else linear (as Jetstream)."""
    start, stop = float(x.min()), float(x.max())
    geometric = log_space
    if geometric and (start < 0 or stop <= 0):
        inp.notes.append(f"branch '{branch}': no geometric grid for negative or all-zero values, using a linear grid")
        geometric = False
    zero_row = False
    if geometric and start == 0:
        start = float(np.unique(x)[1])
        zero_row = True
    points = np.geomspace(start, stop, size) if geometric else np.linspace(start, stop, size)
    return _Grid(points, geometric, zero_row)


_KERNEL_NORMS = {  # integral of the unnormalised 1-D kernel over the real line, in units of the bandwidth
    "gaussian": math.sqrt(2 * math.pi),
    "tophat": 2.0,
    "epanechnikov": 4.0 / 3.0,
    "exponential": 2.0,
    "linear": 1.0,
    "cosine": 4.0 / math.pi,
}


KERNELS = tuple(_KERNEL_NORMS)


def _kernel(u: np.ndarray, kernel: str) -> np.ndarray:
    """Unnormalised kernel at distance u (in bandwidths), as scikit-learn's KernelDensity defines it."""
    if kernel == "gaussian":
        return np.exp(-0.5 * u * u)
    if kernel == "exponential":
        return np.exp(-u)
    inside = u < 1
    if kernel == "tophat":
        return inside.astype(float)
    if kernel == "epanechnikov":
        return np.where(inside, 1 - u * u, 0.0)
    if kernel == "linear":
        return np.where(inside, 1 - u, 0.0)
    return np.where(inside, np.cos(0.5 * np.pi * u), 0.0)  # cosine


def _bandwidth(bandwidth: Any, n: int, inp: StatisticInput) -> float:
    """scikit-learn's rules: 'scott' is n^(-1/5), 'silverman' (3n/4)^(-1/5) -- not scaled by the spread."""
    if bandwidth == "scott":
        return n ** (-1 / 5)
    if bandwidth == "silverman":
        return (n * 3 / 4) ** (-1 / 5)
    try:
        h = float(bandwidth)
    except (TypeError, ValueError):
        raise inp.error(f"bandwidth must be 'scott', 'silverman' or a positive number, got {bandwidth!r}") from None
    if not h > 0:
        raise inp.error(f"bandwidth must be positive, got {bandwidth!r}")
    return h


def kernel_density_estimate(inp: StatisticInput) -> list[Row]:
    """Kernel density of each branch on a grid (scikit-learn KernelDensity semantics, computed exactly).

    The density at each grid point sums the kernel over distinct values weighted by their client counts,
    in chunks of distinct values so memory stays bounded on millions of clients.
    """
    p = inp.params
    if not np.isclose(float(p["adjust"]), 1.0):
        raise inp.error("the KDE parameter adjust is no longer supported (Jetstream refuses it too)", "Remove adjust")
    kernel = p["kernel"]
    if kernel not in _KERNEL_NORMS:
        raise inp.error(f"unknown kernel {kernel!r}", f"Use one of: {', '.join(_KERNEL_NORMS)}")
    rows: list[Row] = []
    for b in inp.branches:
        x = inp.values(inp.metric, b)
        if len(x) == 0:
            continue
        h = _bandwidth(p["bandwidth"], len(x), inp)
        grid = _grid(x, int(p["grid_size"]), bool(p["log_space"]), inp, b)
        points = np.concatenate([[0.0], grid.points]) if grid.zero_row else grid.points
        values, weights = np.unique(x, return_counts=True)
        density = np.zeros(len(points))
        step = max(1, resampling.CHUNK_ELEMENTS // max(len(points), 1))
        for a in range(0, len(values), step):
            u = np.abs(points[:, None] - values[None, a : a + step]) / h
            density += _kernel(u, kernel) @ weights[a : a + step]
        density /= len(x) * h * _KERNEL_NORMS[kernel]
        rows += [Row(b, float(d), parameter=round(float(t), 6)) for t, d in zip(points, density, strict=True)]
    return rows


def empirical_cdf(inp: StatisticInput) -> list[Row]:
    """Empirical CDF of each branch on a grid: share of clients with a value <= the grid point.

    Clients without a value count in the denominator and never below a grid point (statsmodels' ECDF, as
    Jetstream computes it when no pre-treatment removes them), so such a CDF tops out at the share of
    clients with a value; a warning gives that share. The grid spans the values present."""
    p = inp.params
    rows: list[Row] = []
    for b in inp.branches:
        raw = inp.values(inp.metric, b, nulls_allowed=True)
        missing = np.isnan(raw)
        x = np.sort(raw[~missing])
        if len(x) == 0:
            inp.notes.append(f"branch '{b}': every client has a null {inp.metric}: no empirical CDF")
            continue
        if missing.any():
            inp.notes.append(
                f"branch '{b}': {missing.sum()} of {len(raw)} clients ({missing.mean():.1%}) have a null "
                f"{inp.metric}; they count in the CDF's denominator (as Jetstream), so it ends at "
                f"{1 - missing.mean():.3f}. Add the pre-treatment remove_nulls or zero_fill to choose otherwise"
            )
        grid = _grid(x, int(p["grid_size"]), bool(p["log_space"]), inp, b)
        points = np.concatenate([[0.0], grid.points]) if grid.zero_row else grid.points
        cdf = np.searchsorted(x, points, side="right") / len(raw)
        rows += [Row(b, float(c), parameter=round(float(t), 6)) for t, c in zip(points, cdf, strict=True)]
    return rows
