"""linear_model_mean's covariate grid: one sort and an interpolation instead of pandas' 10,000 quantiles."""

import numpy as np
import pandas as pd
import pytest

from jetstream_assets.statistics import compute_statistic
from jetstream_assets.statistics.linear_model import GRID_QUANTILES, quantile_grid


def _pandas_grid(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).quantile(np.arange(0, 1, 1e-4)).to_numpy()


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(1).lognormal(0, 1.2, 30_000),
        np.random.default_rng(2).poisson(3, 5_000).astype(float),  # ties
        np.random.default_rng(3).normal(size=7),  # fewer clients than grid points
        np.array([4.0]),
        np.array([2.0, np.nan, 1.0, 5.0, np.nan]),  # pandas ignores missing values
        np.concatenate([np.zeros(9_000), np.random.default_rng(4).exponential(1e6, 1_000)]),
    ],
    ids=["lognormal", "poisson", "small", "one", "nan", "zeros-and-huge"],
)
def test_grid_equals_pandas_quantiles(x):
    old = _pandas_grid(x)
    new = quantile_grid(x, GRID_QUANTILES)
    # each quantile to rounding (pandas and numpy themselves differ by an ulp or two here)
    np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-14 * float(np.nanmax(np.abs(x))))
    # and the grid mean linear_model_mean uses, to 1e-14
    assert abs(new.mean() - old.mean()) <= 1e-14 * max(1.0, abs(old.mean()))


def test_adjusted_linear_model_unchanged_by_grid():
    """The statistic with the new grid equals the one computed with pandas' grid (patched back in)."""
    rng = np.random.default_rng(5)
    n = 4_000
    pre = rng.lognormal(0, 1, n)
    data = pd.DataFrame({
        "branch": rng.choice(["control", "treatment"], n),
        "m": pre * 0.8 + rng.lognormal(0, 1, n),
        "m_pre": pre,
    })
    params = {"covariate_adjustment": {"period": "preenrollment_week"}, "period": "week"}
    new = compute_statistic(data, "m", "linear_model_mean", params)

    import jetstream_assets.statistics.linear_model as est

    original = est.quantile_grid
    try:
        est.quantile_grid = lambda x, q: pd.Series(x).quantile(q).to_numpy()
        old = compute_statistic(data, "m", "linear_model_mean", params)
    finally:
        est.quantile_grid = original
    pd.testing.assert_frame_equal(new, old, rtol=1e-12)
