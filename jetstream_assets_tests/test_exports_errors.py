"""The errors export: one experiment's log rows, validated with mozilla-nimbus-schemas' AnalysisErrors."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from mozilla_nimbus_schemas.jetstream import AnalysisError, AnalysisErrors

from jetstream_assets.exports import LOG_COLUMNS, errors_export, errors_window_start
from jetstream_assets.exports.errors import ErrorsExportError

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def log_row(minutes: int, **fields) -> dict:
    row = {column: None for column in LOG_COLUMNS}
    row.update(
        timestamp=T0 + dt.timedelta(minutes=minutes),
        source="jetstream",
        experiment="my-exp",
        message="something failed",
        log_level="ERROR",
        filename="statistics.py",
        func_name="apply",
        analysis_period="week",
    )
    row.update(fields)
    return row


def logs_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            log_row(5, metric="active_hours", statistic="bootstrap_mean", analysis_basis="enrollments",
                    segment="all", exception="Traceback ...", exception_type="StatisticComputationException"),
            log_row(1, log_level="WARNING", message="few clients"),
            log_row(2, exception_type="EndedException", message="ended"),  # an expected skip
            log_row(3, experiment="other-exp"),
        ]
    )


def test_rows_of_one_experiment_oldest_first_without_expected_skips():
    exported = errors_export(logs_frame(), experiment="my-exp")
    assert [r["message"] for r in exported] == ["few clients", "something failed"]
    AnalysisErrors.model_validate_json(json.dumps(exported))
    first, second = exported
    assert second["timestamp"] == "2024-03-01T12:05:00Z"
    assert second["metric"] == "active_hours" and second["analysis_basis"] == "enrollments"
    assert second["exception_type"] == "StatisticComputationException"
    # Only the model's fields are published (analysis_period is not one); NaN became null.
    assert "analysis_period" not in first and first["metric"] is None
    assert set(first) == set(AnalysisError.model_fields)


def test_list_of_dicts_with_naive_and_string_timestamps():
    rows = [
        log_row(0, timestamp="2024-03-01T12:00:00"),
        log_row(0, timestamp=dt.datetime(2024, 3, 1, 11, 0)),  # naive: UTC, as the logs table stores it
        log_row(0, timestamp=np.datetime64("2024-03-01T13:00:00")),
    ]
    exported = errors_export(rows)
    assert [r["timestamp"] for r in exported] == [
        "2024-03-01T11:00:00Z",
        "2024-03-01T12:00:00Z",
        "2024-03-01T13:00:00Z",
    ]


def test_since_drops_older_rows():
    exported = errors_export(logs_frame(), experiment="my-exp", since=T0 + dt.timedelta(minutes=2))
    assert [r["message"] for r in exported] == ["something failed"]


def test_no_rows_exports_an_empty_array():
    assert errors_export(pd.DataFrame(columns=LOG_COLUMNS), experiment="my-exp") == []


def test_rows_violating_the_schema_are_rejected_naming_the_experiment():
    with pytest.raises(ErrorsExportError, match=r"'my-exp'.*AnalysisErrors.*0\.source"):
        errors_export([log_row(0, source="somewhere-else")], experiment="my-exp")
    with pytest.raises(ErrorsExportError, match=r"'my-exp'.*func_name"):
        errors_export([log_row(0, func_name=None)], experiment="my-exp")
    with pytest.raises(ErrorsExportError, match=r"'my-exp'.*row 0 has no timestamp"):
        errors_export([log_row(0, timestamp=None)], experiment="my-exp")


def test_window_starts_at_the_latest_weekly_cycle_before_the_analysis():
    enrollment_end = dt.date(2024, 3, 1)  # weekly cycles start 03-02, 03-09, 03-16, ...
    start = errors_window_start(dt.datetime(2024, 3, 12, 9, 30, 45, tzinfo=dt.UTC), enrollment_end)
    assert start == dt.datetime(2024, 3, 9, tzinfo=dt.UTC)
    # Before the first cycle, the analysis start itself (floored to the minute).
    start = errors_window_start(dt.datetime(2024, 3, 1, 9, 30, 45), enrollment_end)
    assert start == dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.UTC)
    assert errors_window_start(None, enrollment_end) is None
