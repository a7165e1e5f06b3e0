"""Parity of our statistics engine with mozanalysis, called the way Jetstream calls it, on small data.

Deterministic quantities (counts, sums, means, Beta posteriors, linear-model estimates, ECDF, KDE) must
agree to 1e-9; resampled interval ends (and Monte Carlo points) within 3% of the interval's width at
num_samples = 10,000, on continuous, integer, binary, heavy-tailed and mostly-zero metrics.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from mozanalysis.bayesian_stats import bayesian_bootstrap, binary
from mozanalysis.frequentist_stats import bootstrap
from mozanalysis.frequentist_stats.linear_models import compare_branches_lm
from scipy import stats as st
from statsmodels.distributions.empirical_distribution import ECDF

from jetstream_assets.statistics import STATISTIC_COLUMNS, compute_statistic, resampling

N = 2000
CI = 0.95
Q = ((1 - CI) / 2, 1 - (1 - CI) / 2)


def _metric(kind: str, rng: np.random.Generator, n: int, effect: float = 0.0) -> np.ndarray:
    if kind == "continuous":
        return rng.normal(10 + effect, 3, n)
    if kind == "integer":
        return rng.poisson(4 + effect, n).astype(float)
    if kind == "binary":
        return (rng.random(n) < 0.3 + effect / 10).astype(float)
    if kind == "heavy_tailed":
        return rng.lognormal(1 + effect / 10, 1.5, n)
    if kind == "mostly_zero":
        return np.where(rng.random(n) < 0.9, 0.0, rng.lognormal(1 + effect / 10, 1, n))
    raise ValueError(kind)


def _frame(kind: str, branches=("control", "treatment"), seed: int = 0, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame({"branch": b, "m": _metric(kind, rng, n, effect=0.3 * i)}) for i, b in enumerate(branches)
    ]
    return pd.concat(parts, ignore_index=True)


def _label(index, q: float):
    """The summary label mozanalysis uses for quantile q (stringified floats)."""
    for i in index:
        try:
            if abs(float(i) - q) < 1e-5:
                return i
        except (TypeError, ValueError):
            continue
    raise KeyError(q)


def _ref_rows(ma: dict, reference: str, parameter=None) -> dict:
    """{(branch, comparison, comparison_to_branch, parameter): (point, lower, upper)} of a mozanalysis result."""
    out = {}
    for b, s in ma["individual"].items():
        if isinstance(s, pd.DataFrame):
            for p, row in s.iterrows():
                out[(b, None, None, float(p))] = (row["mean"], row[_label(row.index, Q[0])], row[_label(row.index, Q[1])])
        else:
            out[(b, None, None, parameter)] = (s["mean"], s[_label(s.index, Q[0])], s[_label(s.index, Q[1])])
    for b, s in ma["comparative"].items():
        for comp, key in (("difference", "abs_uplift"), ("relative_uplift", "rel_uplift")):
            part = s[key]
            if isinstance(part, pd.DataFrame):
                for p, row in part.iterrows():
                    out[(b, comp, reference, float(p))] = (row["exp"], row[_label(row.index, Q[0])], row[_label(row.index, Q[1])])
            else:
                out[(b, comp, reference, parameter)] = (part["exp"], part[_label(part.index, Q[0])], part[_label(part.index, Q[1])])
    return out


def _our_rows(frame: pd.DataFrame) -> dict:
    return {
        (r.branch, r.comparison, r.comparison_to_branch, r.parameter): (r.point, r.lower, r.upper)
        for r in frame.itertuples()
    }


def _assert_close_in_width(ours: dict, ref: dict, share: float = 0.03, exact_points: bool = False) -> None:
    assert ref, "reference produced nothing"
    for key, (r_point, r_lo, r_hi) in ref.items():
        assert key in ours, f"missing row {key}"
        o_point, o_lo, o_hi = ours[key]
        if any(pd.isna(v) for v in (r_point, r_lo, r_hi)):  # e.g. relative uplift over a zero reference
            assert all(v is None for v in (o_point, o_lo, o_hi)) or not pd.isna(r_lo), (key, ours[key])
            continue
        width = r_hi - r_lo
        assert width > 0, key
        assert abs(o_lo - r_lo) <= share * width, (key, "lower", o_lo, r_lo, width)
        assert abs(o_hi - r_hi) <= share * width, (key, "upper", o_hi, r_hi, width)
        if not exact_points:
            assert abs(o_point - r_point) <= share * width, (key, "point", o_point, r_point, width)


KINDS = ["continuous", "integer", "binary", "heavy_tailed", "mostly_zero"]


@pytest.mark.parametrize("kind", KINDS)
def test_bootstrap_mean_matches_mozanalysis(kind):
    df = _frame(kind)
    np.random.seed(11)
    ma = bayesian_bootstrap.compare_branches(
        df, "m", ref_branch_label="control", num_samples=10000, individual_summary_quantiles=Q, threshold_quantile=0.995
    )
    ours = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 10000}, seed=5)
    assert list(ours.columns) == STATISTIC_COLUMNS
    assert set(ours["statistic"]) == {"mean"} and set(ours["ci_width"]) == {0.95}
    _assert_close_in_width(_our_rows(ours), _ref_rows(ma, "control"))
    # Branch points are the exact posterior mean: the branch mean after capping at its own 99.5th percentile.
    for b in ("control", "treatment"):
        x = df.loc[df.branch == b, "m"].to_numpy()
        capped = np.clip(x, x.min(), np.quantile(x, 0.995)).mean()
        point = ours[(ours.branch == b) & ours.comparison.isna()].point.iloc[0]
        assert abs(point - capped) <= 1e-9 * max(1, abs(capped))


def test_every_ordered_pair_is_compared_three_branches():
    branches = ("control", "a", "b")
    df = _frame("heavy_tailed", branches)
    ours = _our_rows(compute_statistic(df, "m", "bootstrap_mean", {}, branches=list(branches), seed=3))
    np.random.seed(12)
    for reference in branches:
        ma = bayesian_bootstrap.compare_branches(
            df, "m", ref_branch_label=reference, num_samples=10000, individual_summary_quantiles=Q, threshold_quantile=0.995
        )
        _assert_close_in_width(ours, _ref_rows(ma, reference))
    pairs = {(k[0], k[2]) for k in ours if k[1] == "difference"}
    assert pairs == {(b, r) for b in branches for r in branches if b != r}


@pytest.mark.parametrize("kind", ["continuous", "integer", "heavy_tailed", "mostly_zero"])
def test_deciles_match_mozanalysis(kind):
    # Decile draws are order statistics: at a few thousand clients the gap between neighbouring order
    # statistics is itself a few % of the interval, in the reference's own run-to-run variation too.
    df = _frame(kind, n=20000)
    np.random.seed(13)
    ma = bootstrap.compare_branches_quantiles(
        df, "m", ref_branch_label="control", num_samples=10000,
        individual_summary_quantiles=Q, comparative_summary_quantiles=Q,
    )
    ours = compute_statistic(df, "m", "deciles", {}, seed=5)
    assert sorted(set(ours.parameter)) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    ref = _ref_rows(ma, "control")
    # A decile interval can be degenerate on integer / mostly-zero data (every draw the same value): equal then.
    degenerate = {k: v for k, v in ref.items() if v[2] - v[1] == 0}
    for key, (point, lo, hi) in degenerate.items():
        assert _our_rows(ours)[key][1:] == pytest.approx((lo, hi), abs=1e-12)
    _assert_close_in_width(_our_rows(ours), {k: v for k, v in ref.items() if k not in degenerate})


@pytest.mark.parametrize("kind", ["continuous", "integer", "heavy_tailed", "mostly_zero"])
def test_population_ratio_matches_mozanalysis(kind):
    rng = np.random.default_rng(7)
    df = _frame(kind, n=1500)
    df["den"] = rng.poisson(5, len(df)) + 1.0
    np.random.seed(14)
    ma = bootstrap.compare_branches(
        df, ["m", "den"], ref_branch_label="control",
        stat_fn=lambda d: {np.mean(d[:, 0]) / np.mean(d[:, 1])}, num_samples=10000,
        individual_summary_quantiles=Q, threshold_quantile=0.995,
    )
    ours = compute_statistic(df, "ratio", "population_ratio", {"numerator": "m", "denominator": "den"}, seed=5)
    assert set(ours["metric"]) == {"ratio"} and set(ours["statistic"]) == {"population_ratio"}
    _assert_close_in_width(_our_rows(ours), _ref_rows(ma, "control"))


def test_binomial_posterior_exact_and_comparisons_match():
    df = _frame("binary", ("control", "a", "b"))
    np.random.seed(15)
    ours = compute_statistic(df, "m", "binomial", {}, seed=5)
    rows = _our_rows(ours)
    for reference in ("control", "a"):
        ma = binary.compare_branches(
            df, "m", ref_branch_label=reference, individual_summary_quantiles=Q, comparative_summary_quantiles=Q
        )
        ref = _ref_rows(ma, reference)
        for key, value in ref.items():
            if key[1] is None:  # Beta posterior: deterministic
                assert rows[key] == pytest.approx(value, abs=1e-9)
        _assert_close_in_width(rows, {k: v for k, v in ref.items() if k[1] is not None})


@pytest.mark.parametrize("covariate", [False, True])
@pytest.mark.parametrize("kind", ["continuous", "integer", "heavy_tailed"])
def test_linear_model_mean_matches_mozanalysis(kind, covariate):
    branches = ("control", "a", "b")
    df = _frame(kind, branches)
    rng = np.random.default_rng(9)
    df["m_pre"] = df["m"] * 0.6 + _metric(kind, rng, len(df))
    params = {"covariate_adjustment": {"metric": "m", "period": "preenrollment_week"}} if covariate else {}
    ours = _our_rows(compute_statistic(df, "m", "linear_model_mean", params))
    for reference in ("control", "a"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ma = compare_branches_lm(
                df.copy(), "m", ref_branch_label=reference, covariate_col_label="m_pre" if covariate else None,
                threshold_quantile=0.995, alphas=[0.05],
            )
        for key, (point, lo, hi) in _ref_rows(ma, reference).items():
            o_point, o_lo, o_hi = ours[key]
            assert o_point == pytest.approx(point, rel=1e-9, abs=1e-9), key
            # marginaleffects takes the delta method's gradient by forward differences (relative step
            # 1.5e-8), so its relative-uplift interval is itself only accurate to ~1e-7 of the estimate.
            tol = dict(rel=1e-6, abs=1e-7) if key[1] == "relative_uplift" else dict(rel=1e-9, abs=1e-9)
            assert (o_lo, o_hi) == pytest.approx((lo, hi), **tol), key


def test_linear_model_covariate_narrows_interval():
    df = _frame("continuous", ("control", "treatment"))
    rng = np.random.default_rng(1)
    df["m_pre"] = df["m"] + rng.normal(0, 1, len(df))
    plain = compute_statistic(df, "m", "linear_model_mean", {})
    adjusted = compute_statistic(df, "m", "linear_model_mean", {"covariate_adjustment": {"period": "preenrollment_week"}})
    width = lambda f: (f[f.comparison == "difference"].upper - f[f.comparison == "difference"].lower).iloc[0]  # noqa: E731
    assert width(adjusted) < 0.5 * width(plain)
    # Jetstream never adjusts a pre-enrollment period by itself.
    same = compute_statistic(
        df, "m", "linear_model_mean",
        {"covariate_adjustment": {"period": "preenrollment_week"}, "period": "preenrollment_week"},
    )
    assert width(same) == pytest.approx(width(plain))


def test_per_client_dau_impact_scales_differences_by_clients():
    df = _frame("integer", ("control", "treatment"))
    lm = compute_statistic(df, "m", "linear_model_mean_no_clip", {})
    dau = compute_statistic(df, "m", "per_client_dau_impact", {}, branches=["control", "treatment"])
    assert set(dau.statistic) == {"per_client_dau_impact"}
    assert dau.comparison.notna().all()
    key = ["branch", "comparison", "comparison_to_branch"]
    joined = dau.merge(lm, on=key, suffixes=("", "_lm"))
    assert len(joined) == 4
    diff = joined[joined.comparison == "difference"]
    np.testing.assert_allclose(diff.point.astype(float), diff.point_lm.astype(float) * len(df), rtol=1e-12)
    rel = joined[joined.comparison == "relative_uplift"]
    np.testing.assert_allclose(rel.upper.astype(float), rel.upper_lm.astype(float), rtol=1e-12)


def test_count_and_sum_exact():
    df = _frame("heavy_tailed", ("control", "a"))
    df.loc[::7, "m"] = np.nan
    count = compute_statistic(df, "m", "count", {})
    total = compute_statistic(df, "m", "sum", {})
    for b in ("control", "a"):
        assert count[count.branch == b].point.iloc[0] == (df.branch == b).sum()
        assert total[total.branch == b].point.iloc[0] == pytest.approx(df[df.branch == b].m.sum(), rel=1e-12)
    assert count.lower.isna().all() and count.ci_width.isna().all()


@pytest.mark.parametrize("log_space", [False, True])
def test_empirical_cdf_exact(log_space):
    df = _frame("mostly_zero", ("control", "a"))
    out = compute_statistic(df, "m", "empirical_cdf", {"log_space": log_space})
    for b in ("control", "a"):
        x = df[df.branch == b].m.to_numpy()
        rows = out[out.branch == b]
        start = np.unique(x)[1] if log_space else x.min()
        grid = np.geomspace(start, x.max(), 256) if log_space else np.linspace(x.min(), x.max(), 256)
        if log_space:  # an extra point at 0 below a geometric grid, as Jetstream
            grid = np.concatenate([[0.0], grid])
        assert len(rows) == len(grid)
        np.testing.assert_allclose(rows.parameter.astype(float), np.round(grid, 6), atol=1e-12)
        np.testing.assert_allclose(rows.point.astype(float), ECDF(x)(grid), atol=1e-9)


def test_kde_gaussian_exact_on_grid():
    """scikit-learn's KernelDensity ('scott' = n^(-1/5), not scaled by the spread), written out with scipy."""
    df = _frame("continuous", ("control", "a"))
    out = compute_statistic(df, "m", "kernel_density_estimate", {})
    for b in ("control", "a"):
        x = df[df.branch == b].m.to_numpy()
        h = len(x) ** (-1 / 5)
        grid = np.linspace(x.min(), x.max(), 256)
        expected = st.norm.pdf((grid[:, None] - x[None, :]) / h).sum(axis=1) / (len(x) * h)
        rows = out[out.branch == b]
        np.testing.assert_allclose(rows.point.astype(float), expected, atol=1e-9)
    tophat = compute_statistic(df, "m", "kernel_density_estimate", {"kernel": "tophat", "bandwidth": 0.5})
    x = df[df.branch == "a"].m.to_numpy()
    grid = np.linspace(x.min(), x.max(), 256)
    expected = (np.abs(grid[:, None] - x[None, :]) < 0.5).sum(axis=1) / (len(x) * 2 * 0.5)
    np.testing.assert_allclose(tophat[tophat.branch == "a"].point.astype(float), expected, atol=1e-9)


def test_compressed_blocks_match_exact_tallies():
    """When a branch has more distinct values than MAX_BLOCKS, block compression keeps the intervals."""
    rng = np.random.default_rng(4)
    x = rng.lognormal(1, 1.5, 5000)
    exact = resampling.compress(x, max_blocks=10**9)
    blocked = resampling.compress(x, max_blocks=128, tail=16)
    assert len(blocked.count) <= 128 + 32 and len(blocked.approximate) > 50
    assert blocked.n == exact.n == len(x)
    a = resampling.bayesian_bootstrap_means(exact, 10000, np.random.default_rng(1))
    b = resampling.bayesian_bootstrap_means(blocked, 10000, np.random.default_rng(2))
    width = np.quantile(a, 0.975) - np.quantile(a, 0.025)
    for q in (0.025, 0.5, 0.975):
        assert abs(np.quantile(a, q) - np.quantile(b, q)) < 0.03 * width
    xy = np.column_stack([x, rng.poisson(5, len(x)) + 1.0])
    ra = resampling.classical_bootstrap_sums(resampling.compress(xy, max_blocks=10**9), 5000, np.random.default_rng(1))
    rb = resampling.classical_bootstrap_sums(resampling.compress(xy, max_blocks=128, tail=16), 5000, np.random.default_rng(2))
    ratio_a, ratio_b = ra[:, 0] / ra[:, 1], rb[:, 0] / rb[:, 1]
    width = np.quantile(ratio_a, 0.975) - np.quantile(ratio_a, 0.025)
    for q in (0.025, 0.5, 0.975):
        assert abs(np.quantile(ratio_a, q) - np.quantile(ratio_b, q)) < 0.04 * width


def test_seeded_results_reproducible_and_seed_sensitive():
    df = _frame("heavy_tailed")
    one = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 2000}, seed=42)
    two = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 2000}, seed=42)
    other = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 2000}, seed=43)
    pd.testing.assert_frame_equal(one, two)
    assert not one.lower.equals(other.lower)


def test_empirical_cdf_with_nulls_counts_them_as_jetstream_and_warns(caplog):
    """Defect: nulls without a pre-treatment were an error; Jetstream (statsmodels' ECDF on the raw column)
    returns rows with the nulls in the denominator. Ours match, and a warning gives the null share."""
    df = _frame("continuous", ("control", "a"))
    df.loc[df.index[::4], "m"] = np.nan
    with caplog.at_level("WARNING"):
        out = compute_statistic(df, "m", "empirical_cdf", {"grid_size": 64})
    for b in ("control", "a"):
        raw = df[df.branch == b].m.to_numpy()
        present = raw[~np.isnan(raw)]
        grid = np.linspace(present.min(), present.max(), 64)
        rows = out[out.branch == b]
        np.testing.assert_allclose(rows.parameter.astype(float), np.round(grid, 6), atol=1e-12)
        np.testing.assert_allclose(rows.point.astype(float), ECDF(raw)(grid), atol=1e-12)
        assert rows.point.max() == pytest.approx(len(present) / len(raw))
    share = f"{np.isnan(df[df.branch == 'a'].m).mean():.1%}"
    assert any("null" in r.getMessage() and share in r.getMessage() for r in caplog.records)
