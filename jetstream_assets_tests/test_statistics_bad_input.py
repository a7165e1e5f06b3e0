"""Bad input: a clear StatisticError or an explicit empty result, naming metric and statistic; nothing else breaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jetstream_assets.statistics import (
    STATISTIC_COLUMNS,
    StatisticError,
    compute_statistic,
    known_pre_treatments,
    known_statistics,
)

CI_STATISTICS = ["bootstrap_mean", "deciles", "linear_model_mean", "binomial"]


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "branch": np.repeat(["control", "treatment"], n),
            "m": rng.lognormal(0, 1, 2 * n),
            "flag": (rng.random(2 * n) < 0.4),
            "num": rng.poisson(2, 2 * n).astype(float),
            "den": rng.poisson(4, 2 * n) + 1.0,
        }
    )


def _metric_for(statistic: str) -> str:
    return "flag" if statistic == "binomial" else "m"


def _no_nan(frame: pd.DataFrame) -> None:
    for col in ("point", "lower", "upper", "ci_width", "parameter"):
        for v in frame[col]:
            assert v is None or np.isfinite(v), (col, v)


def test_names_known():
    assert set(known_statistics()) >= {
        "bootstrap_mean", "binomial", "deciles", "linear_model_mean", "per_client_dau_impact", "count", "sum",
        "kernel_density_estimate", "empirical_cdf", "population_ratio",
    }
    assert set(known_pre_treatments()) == {
        "remove_nulls", "remove_indefinites", "censor_highest_values", "censor_lowest_values",
        "censor_values_below_threshold", "censor_values_above_threshold", "normalize_over_analysis_period",
        "log", "zero_fill",
    }


def test_unknown_statistic():
    with pytest.raises(StatisticError) as e:
        compute_statistic(_frame(), "m", "bootstrap_median")
    assert e.value.metric == "m" and e.value.statistic == "bootstrap_median"
    assert "bootstrap_mean" in str(e.value)  # says what to use


def test_unknown_parameter_and_bad_values():
    with pytest.raises(StatisticError, match="num_sample"):
        compute_statistic(_frame(), "m", "bootstrap_mean", {"num_sample": 100})
    with pytest.raises(StatisticError, match="drop_highest"):
        compute_statistic(_frame(), "m", "bootstrap_mean", {"drop_highest": 0.9})
    with pytest.raises(StatisticError, match="covariate_adjustment"):
        compute_statistic(_frame(), "m", "linear_model_mean", {"covariate_adjustment": {"period": "week"}})


def test_population_ratio_without_numerator():
    with pytest.raises(StatisticError) as e:
        compute_statistic(_frame(), "ratio", "population_ratio", {"denominator": "den"})
    assert "numerator" in str(e.value) and "'ratio'" in str(e.value) and "population_ratio" in str(e.value)
    with pytest.raises(StatisticError, match="nope"):
        compute_statistic(_frame(), "ratio", "population_ratio", {"numerator": "nope", "denominator": "den"})


def test_population_ratio_pre_treatments_apply_to_numerator_and_denominator():
    df = _frame()
    df.loc[::5, "num"] = np.nan
    with pytest.raises(StatisticError, match="remove_nulls"):
        compute_statistic(df, "ratio", "population_ratio", {"numerator": "num", "denominator": "den"})
    out = compute_statistic(
        df, "ratio", "population_ratio", {"numerator": "num", "denominator": "den", "num_samples": 500},
        pre_treatments=[("remove_nulls", {})], seed=1,
    )
    assert len(out) == 6


@pytest.mark.parametrize("statistic", CI_STATISTICS + ["kernel_density_estimate"])
def test_null_values_need_a_pre_treatment(statistic):
    """(empirical_cdf counts nulls as Jetstream does: test_statistics_parity)"""
    df = _frame()
    metric = _metric_for(statistic)
    df[metric] = df[metric].astype(float)
    df.loc[::3, metric] = np.nan
    if statistic == "linear_model_mean":  # like Jetstream's linear model, it models clients with a value
        out = compute_statistic(df, metric, statistic)
        assert len(out) == 6
        return
    with pytest.raises(StatisticError) as e:
        compute_statistic(df, metric, statistic, {"num_samples": 200} if "num_samples" in _defaults(statistic) else {})
    assert e.value.metric == metric and e.value.statistic == statistic
    assert "remove_nulls" in str(e.value)
    # the remedy works
    out = compute_statistic(
        df, metric, statistic, {"num_samples": 200} if "num_samples" in _defaults(statistic) else {},
        pre_treatments=[("remove_nulls", {})], seed=1,
    )
    assert len(out) > 0
    _no_nan(out)


def _defaults(statistic: str) -> dict:
    from jetstream_assets.statistics import STATISTICS

    return STATISTICS[statistic].defaults


@pytest.mark.parametrize("statistic", ["bootstrap_mean", "deciles", "linear_model_mean", "empirical_cdf"])
def test_infinities(statistic):
    df = _frame()
    df.loc[[3, 500], "m"] = [np.inf, -np.inf]
    with pytest.raises(StatisticError, match="remove_indefinites"):
        compute_statistic(df, "m", statistic, {})
    out = compute_statistic(df, "m", statistic, {}, pre_treatments=[("remove_indefinites", {})], seed=1)
    assert len(out) > 0
    _no_nan(out)


def test_all_null_metric():
    df = _frame()
    df["m"] = np.nan
    with pytest.raises(StatisticError, match="no value"):
        compute_statistic(df, "m", "bootstrap_mean")
    with pytest.raises(StatisticError, match="no clients left"):
        compute_statistic(df, "m", "bootstrap_mean", pre_treatments=[("remove_nulls", {})])
    # counting clients still works
    assert compute_statistic(df, "m", "count").point.tolist() == [400.0, 400.0]


def test_constant_metric():
    df = _frame()
    df["m"] = 0.0
    lm = compute_statistic(df, "m", "linear_model_mean")
    assert lm.empty and list(lm.columns) == STATISTIC_COLUMNS
    assert any("no variation" in n for n in lm.attrs["notes"])
    mean = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 200}, seed=1)
    assert mean[mean.comparison.isna()].point.tolist() == [0.0, 0.0]
    # relative uplift over a zero mean is undefined: null, never NaN or inf
    assert mean[mean.comparison == "relative_uplift"].point.isna().all()
    _no_nan(mean)
    for statistic in ("deciles", "kernel_density_estimate", "empirical_cdf", "sum"):
        _no_nan(compute_statistic(df, "m", statistic, {"num_samples": 200} if statistic == "deciles" else {}, seed=1))


def test_linear_model_zero_reference_branch_skips_only_that_reference():
    df = _frame()
    df.loc[df.branch == "control", "m"] = 0.0
    out = compute_statistic(df, "m", "linear_model_mean")
    assert not (out.comparison_to_branch == "control").any()
    assert ((out.branch == "control") & (out.comparison_to_branch == "treatment")).sum() == 2
    assert any("all zero" in n for n in out.attrs["notes"])


def test_empty_branch_is_left_out_and_named():
    df = _frame()
    out = compute_statistic(
        df, "m", "bootstrap_mean", {"num_samples": 200}, branches=["control", "treatment", "treatment-b"], seed=1
    )
    assert set(out.branch) == {"control", "treatment"}
    assert any("treatment-b" in n for n in out.attrs["notes"])


def test_single_branch_gives_branch_rows_only():
    df = _frame()
    df = df[df.branch == "control"]
    for statistic in CI_STATISTICS:
        out = compute_statistic(df, _metric_for(statistic), statistic, {"num_samples": 200} if "num_samples" in _defaults(statistic) else {}, seed=1)
        assert len(out) > 0 and out.comparison.isna().all(), statistic
        assert any("only one branch" in n for n in out.attrs["notes"])


def test_binomial_rejects_non_binary():
    with pytest.raises(StatisticError, match="0 or 1"):
        compute_statistic(_frame(), "m", "binomial")


def test_negative_values_under_log():
    df = _frame()
    df.loc[7, "m"] = -2.0
    with pytest.raises(StatisticError) as e:
        compute_statistic(df, "m", "bootstrap_mean", pre_treatments=[("log", {})])
    assert "negative" in str(e.value) and "censor_values_below_threshold" in str(e.value)
    out = compute_statistic(
        df, "m", "bootstrap_mean", {"num_samples": 200},
        pre_treatments=[("censor_values_below_threshold", {"threshold": 0}), ("log", {"base": 10})], seed=1,
    )
    assert len(out) == 6


def test_pre_treatment_errors():
    with pytest.raises(StatisticError, match="unknown pre-treatment"):
        compute_statistic(_frame(), "m", "sum", pre_treatments=[("winsorize", {})])
    with pytest.raises(StatisticError, match="threshold"):
        compute_statistic(_frame(), "m", "sum", pre_treatments=[("censor_values_above_threshold", {})])
    with pytest.raises(StatisticError, match="no argument"):
        compute_statistic(_frame(), "m", "sum", pre_treatments=[("log", {"bass": 2})])


def test_pre_treatments_semantics():
    df = pd.DataFrame({"branch": ["control"] * 6, "m": [np.nan, 1.0, 10.0, 100.0, np.inf, 1000.0]})
    total = lambda pts, **kw: compute_statistic(df, "m", "sum", pre_treatments=pts, **kw).point.iloc[0]  # noqa: E731
    assert total([("zero_fill", {}), ("remove_indefinites", {})]) == 1111.0
    assert total([("remove_indefinites", {}), ("log", {})]) == pytest.approx(0 + 1 + 2 + 3)
    assert total([("remove_indefinites", {}), ("log", {"base": None})]) == pytest.approx(np.log(1e6))
    assert total([("remove_indefinites", {}), ("censor_values_above_threshold", {"threshold": 100})]) == 11.0
    assert total([("remove_indefinites", {}), ("censor_values_below_threshold", {"threshold": 1})]) == 1110.0
    assert total([("remove_indefinites", {}), ("censor_highest_values", {"fraction": 0.9})]) == 111.0
    assert total([("remove_indefinites", {}), ("censor_lowest_values", {"fraction": 0.1})]) == 1110.0
    assert total([("remove_indefinites", {}), ("normalize_over_analysis_period", {})], analysis_length_dates=7) == pytest.approx(1111 / 7)
    counts = compute_statistic(df, "m", "count", pre_treatments=[("remove_nulls", {})])
    assert counts.point.iloc[0] == 5


def test_input_frame_not_modified_and_other_statistics_still_run():
    df = _frame()
    df.loc[3, "m"] = -1.0
    before = df.copy()
    with pytest.raises(StatisticError):
        compute_statistic(df, "m", "bootstrap_mean", pre_treatments=[("log", {})])
    compute_statistic(df, "m", "sum", pre_treatments=[("zero_fill", {}), ("normalize_over_analysis_period", {})], analysis_length_dates=7)
    pd.testing.assert_frame_equal(df, before)
    out = compute_statistic(df, "m", "bootstrap_mean", {"num_samples": 300}, seed=2)
    assert len(out) == 6


def test_schema_and_labels():
    out = compute_statistic(_frame(), "m", "deciles", {"num_samples": 300}, segment="new_users", analysis_basis="exposures", seed=1)
    assert list(out.columns) == STATISTIC_COLUMNS
    assert set(out.segment) == {"new_users"} and set(out.analysis_basis) == {"exposures"}
    assert set(out.comparison.dropna()) == {"difference", "relative_uplift"}
    _no_nan(out)
    from mozilla_nimbus_schemas.jetstream import Statistics

    Statistics.model_validate(out.to_dict(orient="records"))
