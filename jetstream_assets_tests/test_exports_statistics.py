"""The statistics export: JSON-ready rows that validate against mozilla-nimbus-schemas' Statistics."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from mozilla_nimbus_schemas.jetstream import Statistics

from jetstream_assets.exports import EXPORT_COLUMNS, LocalExportStore, statistics_export, statistics_path
from jetstream_assets.exports.statistics import StatisticsExportError


def view_rows() -> pd.DataFrame:
    """Rows as the statistics view returns them: two windows, a comparison row, a decile with parameter."""
    return pd.DataFrame(
        {
            "metric": ["active_hours", "active_hours", "active_hours", "days_of_use"],
            "statistic": ["mean", "mean", "mean", "deciles"],
            "parameter": [np.nan, np.nan, np.nan, 0.1000000004],
            "branch": ["control", "treatment", "treatment", "control"],
            "comparison": [None, "relative_uplift", None, None],
            "comparison_to_branch": [None, "control", None, None],
            "ci_width": [0.95, 0.95, 0.95, 0.95],
            "point": [1.5, np.inf, 2.0, 3.0],
            "lower": [1.0, -np.inf, np.nan, 2.0],
            "upper": [2.0, 0.4, 3.0, 4.0],
            "segment": ["all", "all", "all", "regular_users"],
            "analysis_basis": ["enrollments", "enrollments", "exposures", "enrollments"],
            "window_index": np.array([1, 1, 2, 1], dtype="int64"),
        }
    )


def test_rows_become_schema_valid_json_with_nulls_for_nan_and_infinities():
    exported = statistics_export(view_rows(), slug="my-exp", period="weekly")
    assert [list(r) for r in exported] == [EXPORT_COLUMNS] * 4
    assert exported[1]["point"] is None and exported[1]["lower"] is None  # inf, -inf
    assert exported[2]["lower"] is None  # NaN
    assert exported[0]["parameter"] is None and exported[0]["comparison"] is None
    assert exported[3]["parameter"] == 0.1  # NUMERIC(6 places), as in Jetstream's table
    # INT64 window_index travels as a string, as BigQuery's JSON extract writes it and the schema expects.
    assert [r["window_index"] for r in exported] == ["1", "1", "2", "1"]
    assert exported[0]["point"] == 1.5 and type(exported[0]["point"]) is float
    # Serialisable strictly (no NaN tokens) and valid for Experimenter.
    text = json.dumps(exported, allow_nan=False)
    parsed = Statistics.model_validate_json(text)
    assert len(parsed.root) == 4 and parsed.root[3].segment == "regular_users"


def test_missing_optional_columns_become_null_and_extra_columns_are_dropped():
    rows = view_rows().drop(columns=["parameter", "window_index"]).assign(analysis_window_start=0)
    exported = statistics_export(rows.iloc[[0]], slug="my-exp")
    assert exported[0]["parameter"] is None and exported[0]["window_index"] is None
    assert "analysis_window_start" not in exported[0]


def test_duplicate_estimates_are_rejected_naming_the_experiment():
    rows = view_rows()
    duplicated = pd.concat([rows, rows.iloc[[2]].assign(point=9.0)], ignore_index=True)
    with pytest.raises(StatisticsExportError, match=r"'my-exp'.*rows 2 and 4.*same estimate"):
        statistics_export(duplicated, slug="my-exp", period="weekly")


def test_same_estimate_in_another_window_is_not_a_duplicate():
    rows = view_rows()
    other_window = rows.iloc[[0]].assign(window_index=2)
    assert len(statistics_export(pd.concat([rows, other_window]), slug="my-exp")) == 5


def test_rows_violating_the_schema_are_rejected_naming_the_experiment():
    rows = view_rows()
    rows.loc[0, "ci_width"] = 95.0  # a percentage instead of a fraction
    with pytest.raises(StatisticsExportError, match=r"'my-exp'.*Statistics schema.*0\.ci_width"):
        statistics_export(rows, slug="my-exp")
    rows = view_rows()
    rows.loc[0, "analysis_basis"] = "clients"
    with pytest.raises(StatisticsExportError, match=r"'my-exp'.*analysis_basis"):
        statistics_export(rows, slug="my-exp")


def test_missing_required_column_and_bad_values_are_explained():
    with pytest.raises(StatisticsExportError, match=r"'my-exp'.*lack column.*branch"):
        statistics_export(view_rows().drop(columns=["branch"]), slug="my-exp")
    rows = view_rows().astype({"point": object})
    rows.loc[0, "point"] = "high"
    with pytest.raises(StatisticsExportError, match=r"'my-exp'.*row 0.*point.*'high'"):
        statistics_export(rows, slug="my-exp")
    rows = view_rows().astype({"window_index": object})
    rows.loc[0, "window_index"] = "week-1"
    with pytest.raises(StatisticsExportError, match=r"window_index 'week-1'"):
        statistics_export(rows, slug="my-exp")


def test_nullable_dtypes_from_parquet_are_handled():
    rows = view_rows().replace([np.inf, -np.inf], np.nan).convert_dtypes()  # Int64 / Float64 / string with pd.NA, as read back from Parquet
    exported = statistics_export(rows, slug="my-exp")
    assert exported[2]["lower"] is None and exported[0]["window_index"] == "1"
    assert all(not (isinstance(v, float) and math.isnan(v)) for r in exported for v in r.values())


def test_an_empty_view_exports_an_empty_array(tmp_path):
    empty = view_rows().iloc[0:0]
    assert statistics_export(empty, slug="my-exp") == []


def test_round_trip_through_the_store_validates(tmp_path):
    store = LocalExportStore(root=str(tmp_path))
    path = statistics_path("my-exp", "weekly")
    store.write_json(path, statistics_export(view_rows(), slug="my-exp"))
    Statistics.model_validate_json((tmp_path / path).read_text())
