"""The statistics step's per-statistic bookkeeping without pandas' per-call overhead gives what the pandas
calls gave: the segment filter and dropna of a statistic's frame, the identity counts (a groupby), the linear
model's pooled cap (Series.quantile) and branch coding, and the binomial's frozen Beta posterior."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from jetstream_assets.assets import statistics as step
from jetstream_assets.statistics.engine import compute_statistic
from jetstream_assets.statistics.linear_model import _pooled_cap
from jetstream_assets.statistics.results import records_frame

RNG = np.random.default_rng(14)
FRAMES = {
    "nothing missing": pd.DataFrame({"branch": ["a", "b", "a"], "m": [1.0, 2.0, 3.0], "n": [1, 2, 3]}),
    "gaps in each column": pd.DataFrame({"branch": ["a", "b", "a", "b"], "m": [1.0, np.nan, 3.0, 4.0],
                                         "n": [1.0, 2.0, None, 4.0]}),
    "objects and booleans": pd.DataFrame({"branch": ["a", "b", "a"], "m": [True, None, False],
                                          "n": pd.array([1, None, 3], dtype="Int64")}),
    "empty": pd.DataFrame({"branch": pd.Series([], dtype=object), "m": pd.Series([], dtype=float),
                           "n": pd.Series([], dtype=float)}),
}


@pytest.mark.parametrize("case", FRAMES)
@pytest.mark.parametrize("columns", [["m"], ["m", "n"]])
@pytest.mark.parametrize("segment", [None, [True, False, True, True]])
def test_a_statistics_frame_equals_dropna_of_the_segment(case, columns, segment):
    """The frame a statistic gets from the metrics table (its clients found by masks, its columns taken at
    their positions) equals pandas' segment filter and dropna, dtypes included."""
    frame = FRAMES[case]
    in_segment = None if segment is None else np.array(segment[: len(frame)], dtype=bool)
    table = step.MetricsTable(frame)
    keep = np.logical_and.reduce([table.present(c) for c in columns])
    if in_segment is not None:
        keep &= in_segment
    got = table.frame_of({"branch": "branch", **{c: c for c in columns}}, np.flatnonzero(keep))
    expected = (frame if in_segment is None else frame[in_segment])[["branch", *columns]].dropna(subset=columns)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))


@pytest.mark.parametrize("branches", [["a", "b"], ["b", "a", "nobody"], []])
@pytest.mark.parametrize("segment", [None, [True, True, False, True, False, True]])
def test_identity_counts_equal_a_groupby(branches, segment):
    analysed = pd.DataFrame({"branch": ["a", "b", "a", None, "c", "a"]})
    rows = None if segment is None else np.flatnonzero(segment)
    n = (analysed if rows is None else analysed.iloc[rows]).groupby("branch").size()
    expected = pd.DataFrame(
        {"metric": "identity", "statistic": "count", "parameter": None, "branch": b, "comparison": None,
         "comparison_to_branch": None, "ci_width": None, "point": float(n.get(b, 0)), "lower": None,
         "upper": None, "segment": "all", "analysis_basis": "exposures"}
        for b in branches
    )
    counts = records_frame(step._count_records(step.MetricsTable(analysed), rows, branches, "all", "exposures"))
    if not branches:
        assert counts.empty
    else:
        pd.testing.assert_frame_equal(counts, expected.astype(object))


@pytest.mark.parametrize("kind", ["float with gaps", "integers", "all missing", "booleans", "nullable"])
@pytest.mark.parametrize("quantile", [0.5, 0.99, 0.995, 0.999, 1.0])
def test_the_pooled_cap_equals_pandas_quantile(kind, quantile):
    x = RNG.exponential(3, size=400)
    series = {
        "float with gaps": pd.Series(np.where(RNG.random(400) < 0.2, np.nan, x)),
        "integers": pd.Series(np.floor(x).astype(np.int64)),
        "all missing": pd.Series([np.nan, np.nan]),
        "booleans": pd.Series(x > 3),
        "nullable": pd.Series(pd.array(np.floor(x).astype(int), dtype="Int64")),
    }[kind]
    try:
        expected = float(series.quantile(quantile))
    except TypeError:  # pandas cannot take a quantile of booleans: neither can the cap
        with pytest.raises(TypeError):
            _pooled_cap(series, quantile)
        return
    if pd.api.types.is_integer_dtype(series.dtype):
        expected = float(math.ceil(expected))
    got = _pooled_cap(series, quantile)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_a_linear_model_leaves_out_a_branch_without_values_as_if_it_had_no_clients():
    n = 3000
    data = pd.DataFrame({"branch": RNG.choice(["control", "treatment", "other", "gone"], n),
                         "m": RNG.exponential(2, n), "m_pre": RNG.poisson(3, n).astype(float)})
    data.loc[data["branch"] == "gone", "m"] = np.nan
    data.loc[RNG.random(n) < 0.05, "m_pre"] = np.nan
    params = {"covariate_adjustment": {"period": "preenrollment_week"}}
    common = dict(metric="m", statistic="linear_model_mean", params=params, reference_branch="control", seed=3)
    full = compute_statistic(data, branches=["control", "treatment", "gone"], **common)
    without = compute_statistic(data[data["branch"] != "gone"], branches=["control", "treatment"], **common)
    pd.testing.assert_frame_equal(full.reset_index(drop=True), without.reset_index(drop=True))
    assert "branch 'gone' has no clients with a value: left out" in full.attrs["notes"]
    assert set(full["branch"]) == {"control", "treatment", "other"}


@pytest.mark.parametrize("ci", [0.95, 0.8])
def test_binomial_branch_rows_are_the_beta_posterior(ci):
    data = pd.DataFrame({"branch": ["control"] * 50 + ["treatment"] * 70,
                         "m": np.r_[RNG.random(50) < 0.3, RNG.random(70) < 0.5]})
    rows = compute_statistic(data, "m", "binomial", params={"confidence_interval": ci},
                             branches=["control", "treatment"], seed=1)
    for branch, x in data.groupby("branch")["m"]:
        posterior = st.beta(x.sum() + 1, len(x) - x.sum() + 1)
        row = rows[(rows["branch"] == branch) & rows["comparison"].isna()].iloc[0]
        assert (row["point"], row["lower"], row["upper"]) == (
            posterior.mean(), *posterior.ppf([(1 - ci) / 2, 1 - (1 - ci) / 2]))
