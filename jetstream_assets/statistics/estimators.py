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
