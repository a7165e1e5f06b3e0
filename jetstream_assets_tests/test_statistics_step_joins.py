"""The statistics step joins each pre-enrollment covariate once per metrics table (not once per statistic and
segment) and builds its rows without a DataFrame round trip per statistic; the results are the same as
before: a left merge, and pandas' drop_duplicates of the rows. (The whole step against a merge per statistic:
test_statistics_step_reference.py.)"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.assets import statistics as step
from jetstream_assets.planner import Cell, Planner
from jetstream_assets.runner import run_experiment
from jetstream_assets.sql import names
from jetstream_assets.statistics.results import STATISTIC_COLUMNS, Row, records_frame, row_records
from jetstream_assets_tests.worlds import TODAY, build_world

FRAME = pd.DataFrame({"analysis_id": ["a", "b", "c", None, "e"], "branch": ["x", "y", "x", "x", "y"]})
PRE = {
    "some clients missing, one in another branch": pd.DataFrame(
        {"analysis_id": ["b", "a", "d"], "branch": ["y", "z", "x"], "v": [1, 2, 3]}),
    "booleans with a gap": pd.DataFrame(
        {"analysis_id": ["b", "a", "c", "e"], "branch": ["y", "x", "x", "x"], "v": [True, False, True, True]}),
    "every client, integers": pd.DataFrame(
        {"analysis_id": ["e", "a", "b", "c", None], "branch": ["y", "x", "y", "x", "x"], "v": [5, 1, 2, 3, 4]}),
    "empty": pd.DataFrame({"analysis_id": pd.Series([], dtype=object), "branch": pd.Series([], dtype=object),
                           "v": pd.Series([], dtype="float64")}),
}


@pytest.mark.parametrize("case", PRE)
def test_the_covariate_lookup_equals_a_left_merge(case):
    pre = PRE[case]
    merged = FRAME.merge(pre, on=["analysis_id", "branch"], how="left")["v"]
    joined = pd.Series(step._left_join(FRAME, step.CovariateTable(pre, "v")), name="v")
    pd.testing.assert_series_equal(joined, merged.reset_index(drop=True))


def test_a_covariate_table_with_a_client_twice_is_an_error_not_extra_rows():
    pre = pd.DataFrame({"analysis_id": ["a", "a"], "branch": ["x", "y"], "v": [1.0, 2.0]})
    with pytest.raises(ValueError, match="1 duplicated client"):
        step._left_join(FRAME, step.CovariateTable(pre, "v"))


def test_statistics_records_frame_equals_pandas_dedup_of_the_records():
    rows = [
        Row("control", 1.0, 0.5, 1.5, ci_width=0.95),
        Row("treatment", float("nan"), None, float("inf"), ci_width=0.95),
        Row("treatment", 0.2, 0.1, 0.3, comparison="difference", comparison_to_branch="control", ci_width=0.95),
        Row("control", 2.0, 1.5, 2.5, ci_width=0.95),  # replaces the first row, in its own place
        Row("treatment", 3.0, parameter=0.5, statistic="other"),
    ]
    frame = records_frame(row_records(rows, metric="m", statistic="s", segment="all", analysis_basis="enrollments"))
    expected = pd.DataFrame.from_records(
        [{"metric": "m", "statistic": r.statistic or "s", "parameter": r.parameter, "branch": r.branch,
          "comparison": r.comparison, "comparison_to_branch": r.comparison_to_branch, "ci_width": r.ci_width,
          "point": r.point, "lower": r.lower, "upper": r.upper, "segment": "all",
          "analysis_basis": "enrollments"} for r in rows],
        columns=STATISTIC_COLUMNS,
    ).drop_duplicates(subset=STATISTIC_COLUMNS[:7], keep="last").reset_index(drop=True)
    expected = pd.DataFrame({c: pd.Series([None if isinstance(v, float) and not np.isfinite(v) else v
                                           for v in expected[c]], dtype=object) for c in STATISTIC_COLUMNS})
    pd.testing.assert_frame_equal(frame, expected)
    assert frame.loc[0, "point"] is None and frame.loc[0, "upper"] is None  # None, never NaN
