"""Calibration: over simulated experiments, 95% intervals cover the true branch difference about 95% of the time.

A/A experiments (no effect) must contain 0; A/B experiments with a known additive effect must contain it.
Coverage is checked with a two-sided binomial test against 0.95, so a miscalibrated engine (e.g. intervals
from the wrong quantiles, branches mixed up, pairs compared the wrong way round) fails.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from jetstream_assets.statistics import compute_statistic

EXPERIMENTS = 160
CLIENTS = 300


def _experiment(rng: np.random.Generator, kind: str, effect: float) -> pd.DataFrame:
    if kind == "binary":
        control = (rng.random(CLIENTS) < 0.3).astype(float)
        treatment = (rng.random(CLIENTS) < 0.3 + effect).astype(float)
    else:  # skewed continuous
        control = rng.gamma(2.0, 2.0, CLIENTS)
        treatment = rng.gamma(2.0, 2.0, CLIENTS) + effect
    return pd.DataFrame(
        {"branch": np.repeat(["control", "treatment"], CLIENTS), "m": np.concatenate([control, treatment])}
    )


def _coverage(statistic: str, kind: str, effect: float, params: dict, parameter=None) -> tuple[int, int]:
    rng = np.random.default_rng(zlib.crc32(f"{statistic}/{kind}/{effect}".encode()))
    covered = 0
    for i in range(EXPERIMENTS):
        df = _experiment(rng, kind, effect)
        out = compute_statistic(df, "m", statistic, params, seed=i)
        row = out[(out.branch == "treatment") & (out.comparison == "difference") & (out.comparison_to_branch == "control")]
        if parameter is not None:
            row = row[row.parameter == parameter]
        lower, upper = float(row.lower.iloc[0]), float(row.upper.iloc[0])
        # the reverse comparison is the mirror image
        mirror = out[(out.branch == "control") & (out.comparison == "difference") & (out.comparison_to_branch == "treatment")]
        if parameter is not None:
            mirror = mirror[mirror.parameter == parameter]
        assert float(mirror.lower.iloc[0]) == pytest.approx(-upper, rel=0.2, abs=0.05 * (upper - lower))
        covered += lower <= effect <= upper
    return covered, EXPERIMENTS


CASES = [
    ("bootstrap_mean", "continuous", {"num_samples": 1000}, None),
    ("linear_model_mean", "continuous", {}, None),
    ("binomial", "binary", {}, None),
    ("deciles", "continuous", {"num_samples": 1000}, 0.5),
]


@pytest.mark.parametrize("statistic,kind,params,parameter", CASES)
@pytest.mark.parametrize("effect_kind", ["aa", "ab"])
def test_interval_coverage_is_95_percent(statistic, kind, params, parameter, effect_kind):
    effect = 0.0 if effect_kind == "aa" else (0.08 if kind == "binary" else 1.0)
    covered, total = _coverage(statistic, kind, effect, params, parameter)
    p = st.binomtest(covered, total, 0.95).pvalue
    assert p > 0.001, f"{statistic} {effect_kind}: {covered}/{total} intervals cover the true difference"


def test_population_ratio_aa_coverage():
    rng = np.random.default_rng(99)
    covered, experiments = 0, 100
    for i in range(experiments):
        df = _experiment(rng, "continuous", 0.0)
        df["den"] = rng.poisson(3, len(df)) + 1.0
        truth = 4.0 / 4.0  # E[gamma(2, 2)] / E[poisson(3) + 1]
        out = compute_statistic(
            df, "r", "population_ratio", {"numerator": "m", "denominator": "den", "num_samples": 500, "drop_highest": 0.0}, seed=i
        )
        row = out[(out.branch == "treatment") & out.comparison.isna()]
        covered += float(row.lower.iloc[0]) <= truth <= float(row.upper.iloc[0])
    assert st.binomtest(covered, experiments, 0.95).pvalue > 0.001, covered
