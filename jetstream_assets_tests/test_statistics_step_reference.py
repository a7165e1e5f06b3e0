"""The statistics step (branches factorised once per metrics table, each statistic's clients found by masks,
rows assembled once per window) gives the rows of the straightforward per-statistic path: pandas' segment
filter and dropna, a left merge of the covariate per statistic, `compute_statistic` on that frame (which
factorises its own branches), the identity counts by a groupby, and a concat. Every statistic of demo-custom,
both bases, every segment, on day, pre-enrollment week and week windows.

Also: the quantiles from one sort equal np.quantile's, and the Bayesian bootstrap's block-by-block weights
have the distribution of the former (resamples x blocks) draw."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jetstream_assets.assets import statistics as step
from jetstream_assets.planner import Cell, Planner
from jetstream_assets.runner import run_experiment
from jetstream_assets.sql import names
from jetstream_assets.sql.queries import bases_for, metrics_for, segments_of
from jetstream_assets.statistics import STATISTIC_COLUMNS, compute_statistic, resampling
from jetstream_assets_tests.worlds import TODAY, build_world

SLUG = "demo-custom"  # enrollment ends 2026-10-31


def reference_window_statistics(cell, window, warehouse) -> pd.DataFrame:
    """The window's statistics the plain way, one pandas frame per statistic."""
    branches = [b.slug for b in cell.experiment.branches]
    frames = []
    for basis in bases_for(cell.resolved, window.period):
        df = warehouse.read_table(names.metrics_table(cell.slug, basis.value, window.period, window.index))
        df = df[df["enrollment_date"].notna() & (df["exposure_date"].notna() if basis.value == "exposures" else True)]
        for segment in ["all", *segments_of(cell.resolved)]:
            seg = df if segment == "all" else df[df[segment].fillna(False).astype(bool)]
            for summary in metrics_for(cell.resolved, window.period, basis):
                metric, statistic = summary.metric.name, summary.statistic.name
                columns = [d.metric.name for d in summary.metric.depends_on or []] or [metric]
                data = seg[["analysis_id", "branch", *columns]].dropna(subset=columns)
                covariate = step._covariate(summary, window)
                if covariate is not None:
                    table = names.metrics_table(cell.slug, "enrollments", covariate[1], 1)
                    pre = warehouse.read_table(table, ["analysis_id", "branch", covariate[0]])
                    data = data.merge(pre.rename(columns={covariate[0]: f"{metric}_pre"}),
                                      on=["analysis_id", "branch"], how="left")
                frames.append(compute_statistic(
                    data.drop(columns=["analysis_id"]), metric, statistic, dict(summary.statistic.params or {}),
                    [(p.name, dict(p.args or {})) for p in summary.pre_treatments], branches,
                    cell.resolved.config.experiment.reference_branch, window.length, segment, basis.value,
                    step._seed(cell.slug, window.period.value, window.index, metric, statistic, segment,
                               basis.value),
                ))
            n = seg.groupby("branch").size()
            frames.append(pd.DataFrame(
                {"metric": "identity", "statistic": "count", "parameter": None, "branch": b, "comparison": None,
                 "comparison_to_branch": None, "ci_width": None, "point": float(n.get(b, 0)), "lower": None,
                 "upper": None, "segment": segment, "analysis_basis": basis.value} for b in branches))
    return pd.concat([f for f in frames if len(f)], ignore_index=True)[STATISTIC_COLUMNS].astype(object)


def test_the_statistics_step_equals_the_per_statistic_path(tmp_path_factory):
    dates = [dt.date(2026, 11, 2), dt.date(2026, 11, 7)]
    with build_world(tmp_path_factory.mktemp("reference"), 3_000) as world:
        summary = run_experiment(world.instance, world.defs, SLUG, dates)
        assert summary.success, summary.errors
        planner = Planner(world.resources["experimenter"], world.resources["metric_hub"], TODAY)
        windows = [(c, w) for c in (planner.plan(SLUG, d) for d in dates) if isinstance(c, Cell) for w in c.windows]
        assert {w.period.value for _, w in windows} == {"day", "preenrollment_week", "week"}
        tables: dict = {}  # shared by the windows, as in a step
        seen = set()
        for cell, window in windows:
            rows, errors = step.compute_window_statistics(cell, window, world.warehouse, tables)
            assert not errors
            expected = reference_window_statistics(cell, window, world.warehouse)
            pd.testing.assert_frame_equal(rows, expected, check_exact=True)
            seen |= set(zip(rows["statistic"], rows["segment"], rows["analysis_basis"]))
        assert len(tables) == 2  # uri_count and active_hours of the pre-enrollment week, read once each
    statistics = {s for s, _, _ in seen}
    assert statistics == {"binomial", "mean", "deciles", "mean_lm", "count"}  # every statistic demo-custom asks for
    assert {(g, b) for _, g, b in seen} == {(g, b) for g in ("all", "regular_users_v3", "windows_users")
                                           for b in ("enrollments", "exposures")}


RNG = np.random.default_rng(14)


@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (10_000,), (10_000, 9), (50, 3)])
@pytest.mark.parametrize("special", ["none", "nan", "inf", "ties"])
def test_quantiles_from_one_sort_equal_numpy(shape, special):
    x = RNG.lognormal(0, 2, shape) * RNG.choice([-1, 1], shape)
    if special == "nan":
        x[RNG.integers(0, shape[0])] = np.nan
    elif special == "inf":
        x[RNG.integers(0, shape[0])] = np.inf
        x[RNG.integers(0, shape[0])] = -np.inf
    elif special == "ties":
        x = np.round(x)
    with np.errstate(invalid="ignore"):
        for q in ([0.025, 0.975], [0.0, 0.5, 1.0], RNG.random(3), 0.995, 1.0):
            expected, got = np.quantile(x, q, axis=0), resampling.quantiles(x, q)
            assert np.shape(got) == np.shape(expected)
            np.testing.assert_array_equal(got, expected)  # -0.0 and 0.0 may swap places: equal numbers


def _former_bayesian_bootstrap_means(blocks, num_samples, rng):
    """The former draw: one (resamples x blocks) Gamma draw with a shape per column."""
    m, mu = blocks.count, blocks.mean[:, 0]
    approx = blocks.approximate
    sd = blocks.chol[approx, 0, 0] / np.sqrt(m[approx] + 1.0)
    g = rng.standard_gamma(m, size=(num_samples, len(m)))
    weighted = g @ mu
    if len(approx):
        weighted += (g[:, approx] * rng.standard_normal((num_samples, len(approx)))) @ sd
    return weighted / g.sum(axis=1)


@pytest.mark.parametrize("values", ["few distinct", "many distinct"])
def test_block_by_block_bootstrap_draws_have_the_former_distribution(values):
    n = 4_000
    x = RNG.poisson(2, n) * 1.0 if values == "few distinct" else RNG.lognormal(1, 1.5, n)
    blocks = resampling.compress(x)
    assert (len(blocks.approximate) > 0) == (values == "many distinct")
    draws = 100_000
    new = resampling.bayesian_bootstrap_means(blocks, draws, np.random.default_rng(1))
    old = _former_bayesian_bootstrap_means(blocks, draws, np.random.default_rng(2))
    sd = old.std()
    tolerance = 5 * sd * np.sqrt(2 / draws)  # five standard errors of a difference of two sample means
    assert abs(new.mean() - old.mean()) < tolerance
    assert abs(new.std() / sd - 1) < 5 * np.sqrt(1 / draws)  # the sd's relative standard error is ~1/sqrt(2N)
    for q in (0.025, 0.975):  # interval ends: within a few standard errors of a quantile (~ sd / sqrt(N))
        assert abs(np.quantile(new, q) - np.quantile(old, q)) < 10 * sd / np.sqrt(draws)
    # reproducible at a seed
    np.testing.assert_array_equal(new, resampling.bayesian_bootstrap_means(blocks, draws, np.random.default_rng(1)))
