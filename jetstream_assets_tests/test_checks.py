"""Asset checks, pure logic: the sample ratio mismatch test, the enrolled-clients rule and export validation."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import dagster as dg
import pytest
from scipy import stats

from jetstream_assets.planner import Cell, NoOp
from jetstream_assets.checks import (
    EXPORTED_PATHS,
    SRM_P_THRESHOLD,
    enrolled_clients_result,
    enrollments_checks,
    exports_valid_result,
    sample_ratio_mismatch,
    sample_ratio_mismatch_result,
    validation_error,
)
from jetstream_assets.checks.enrollments import BRANCH_CLIENTS, NO_BRANCH
from jetstream_assets.experimenter.models import Branch, Experiment
from jetstream_assets.exports.store import LocalExportStore, metadata_path, statistics_path

START = dt.date(2026, 1, 1)


# --- sample ratio mismatch -----------------------------------------------------------------------


def test_balanced_counts_pass():
    result = sample_ratio_mismatch({"control": 50_120, "treatment": 49_880}, {"control": 1, "treatment": 1})
    assert result.passed and result.tested
    assert result.expected == {"control": 50_000, "treatment": 50_000}
    assert result.p_value > SRM_P_THRESHOLD
    assert "No sample ratio mismatch" in result.description


def test_52_48_split_at_100k_clients_fails_and_says_what_to_do():
    result = sample_ratio_mismatch({"control": 52_000, "treatment": 48_000}, {"control": 1, "treatment": 1})
    assert not result.passed
    assert result.chi_square == pytest.approx(160.0)
    assert result.p_value < 1e-30
    assert "Sample ratio mismatch" in result.description
    assert "52,000" in result.description and "50,000 expected" in result.description
    assert "biased" in result.description and "Experimenter" in result.description


def test_unequal_ratios_are_honoured():
    ratios = {"control": 1, "treatment": 2}
    assert sample_ratio_mismatch({"control": 10_000, "treatment": 20_000}, ratios).passed
    # the same counts against equal ratios are a gross mismatch
    equal = {"control": 1, "treatment": 1}
    assert not sample_ratio_mismatch({"control": 10_000, "treatment": 20_000}, equal).passed
    # and an even split against 1:2 ratios too
    assert not sample_ratio_mismatch({"control": 15_000, "treatment": 15_000}, ratios).passed


@pytest.mark.parametrize(
    "observed, ratios",
    [
        ({"a": 520, "b": 480}, {"a": 1, "b": 1}),
        ({"a": 1_010, "b": 1_950}, {"a": 1, "b": 2}),
        ({"a": 3_000, "b": 3_100, "c": 2_870}, {"a": 1, "b": 1, "c": 1}),
        ({"a": 100, "b": 260, "c": 650}, {"a": 10, "b": 25, "c": 65}),
    ],
)
def test_agrees_with_scipy_chisquare(observed, ratios):
    result = sample_ratio_mismatch(observed, ratios)
    counts = [observed[b] for b in ratios]
    expected = [sum(counts) * ratios[b] / sum(ratios.values()) for b in ratios]
    reference = stats.chisquare(counts, expected)
    assert result.chi_square == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.degrees_of_freedom == len(ratios) - 1
    assert result.passed == (reference.pvalue >= SRM_P_THRESHOLD)


def test_branch_without_clients_counts_zero():
    result = sample_ratio_mismatch({"control": 1_000}, {"control": 1, "treatment": 1})
    assert result.observed == {"control": 1_000, "treatment": 0}
    assert not result.passed


def test_ratio_zero_branch_left_out_unless_it_got_clients():
    ratios = {"control": 1, "treatment": 1, "holdback": 0}
    empty = sample_ratio_mismatch({"control": 500, "treatment": 510}, ratios)
    assert empty.passed and empty.degrees_of_freedom == 1
    assert empty.expected["holdback"] == 0 and "ratio 0" in empty.description
    stray = sample_ratio_mismatch({"control": 500, "treatment": 510, "holdback": 3}, ratios)
    assert not stray.passed and stray.stray_clients == {"holdback": 3}
    assert "should get none" in stray.description


def test_clients_in_an_unconfigured_branch_fail():
    ratios = {"control": 1, "treatment": 1}
    result = sample_ratio_mismatch({"control": 500, "treatment": 505, "treatmnet": 4}, ratios)
    assert not result.passed
    assert "'treatmnet' is not a branch" in result.description
    no_branch = sample_ratio_mismatch({"control": 500, "treatment": 505, NO_BRANCH: 2}, ratios)
    assert not no_branch.passed and "name no branch" in no_branch.description


def test_missing_ratio_counts_as_experimenter_default():
    result = sample_ratio_mismatch({"a": 500, "b": 490}, {"a": None, "b": 1})
    assert result.passed and result.ratios == {"a": 1.0, "b": 1.0}
    assert "no ratio" in result.description


def test_nothing_to_test_passes_with_reason():
    rollout = sample_ratio_mismatch({"enabled": 800}, {"enabled": 1})
    assert rollout.passed and not rollout.tested and "Fewer than two branches" in rollout.description
    empty = sample_ratio_mismatch({}, {"control": 1, "treatment": 1})
    assert empty.passed and not empty.tested and "enrolled_clients" in empty.description


@pytest.mark.parametrize("ratios", [{"a": -1, "b": 1}, {"a": float("nan"), "b": 1}])
def test_bad_ratio_is_a_clear_error(ratios):
    with pytest.raises(ValueError, match=r"Branch 'a' has ratio .*branches\[\]\.ratio"):
        sample_ratio_mismatch({"a": 1, "b": 1}, ratios)


# --- aggregation over the cells of a step ---------------------------------------------------------


def _cell(slug: str, branches: dict[str, int], day: dt.date = START + dt.timedelta(days=7)) -> Cell:
    experiment = Experiment(
        slug=slug,
        branches=[Branch(slug=b, ratio=r) for b, r in branches.items()],
        start_date=START,
        end_date=None,
        proposed_enrollment=7,
        enrollment_end_date=START + dt.timedelta(days=6),
        reference_branch=next(iter(branches)),
    )
    # the slice of a resolved config a Cell reads its start date from
    spec = SimpleNamespace(start_date=dt.datetime(START.year, START.month, START.day))
    resolved = SimpleNamespace(config=SimpleNamespace(experiment=spec))
    return Cell(slug, day, experiment, resolved, 7)


def _computed(slug: str, ratios: dict[str, int], counts: dict[str, int]):
    metadata = {"status": "computed", BRANCH_CLIENTS: dg.MetadataValue.json(counts)}
    return _cell(slug, ratios), metadata


def test_step_result_fails_when_any_experiment_fails_and_names_it():
    outcomes = [
        _computed("exp-good", {"control": 1, "treatment": 1}, {"control": 5_010, "treatment": 4_990}),
        _computed("exp-srm", {"control": 1, "treatment": 1}, {"control": 5_600, "treatment": 4_400}),
        (NoOp("exp-later", START, "not_due", "nothing due"), {"status": "no-op"}),
    ]
    result = sample_ratio_mismatch_result(outcomes)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["experiment"].value == "exp-srm"
    assert result.metadata["experiments_failed"].data == ["exp-srm"]
    figures = result.metadata["figures"].data
    assert set(figures) == {"exp-good", "exp-srm"}
    assert figures["exp-srm"]["observed"] == {"control": 5_600, "treatment": 4_400}
    assert figures["exp-srm"]["expected"] == {"control": 5_000, "treatment": 5_000}
    assert figures["exp-good"]["passed"] and not figures["exp-srm"]["passed"]
    assert result.metadata["p_value"].value == figures["exp-srm"]["p_value"] < SRM_P_THRESHOLD
    assert result.description.startswith("exp-srm: Sample ratio mismatch")


def test_every_declared_check_gets_a_result_even_with_nothing_to_check():
    outcomes = [(NoOp("exp", START, "enrollment_not_complete", "still enrolling"), {"status": "no-op"})]
    results = enrollments_checks(outcomes[0])
    assert [r.check_name for r in results] == ["sample_ratio_mismatch", "enrolled_clients"]
    assert all(r.passed and r.description.startswith("Nothing to check") for r in results)


def test_experiment_without_enrolled_clients_fails_with_likely_causes():
    outcomes = [
        _computed("exp-empty", {"control": 1, "treatment": 1}, {}),
        _computed("exp-full", {"control": 1, "treatment": 1}, {"control": 10, "treatment": 12}),
    ]
    result = enrolled_clients_result(outcomes)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["experiments_without_clients"].data == ["exp-empty"]
    assert result.metadata["clients"].data == {"exp-empty": 0, "exp-full": 22}
    for cause in ("slug", "enrollment_query", "not complete"):
        assert cause in result.description
    assert enrolled_clients_result(outcomes[1:]).passed


def test_a_check_that_breaks_reports_a_failed_result_instead_of_failing_the_step():
    outcomes = [_computed("exp-broken", {"control": -1, "treatment": 1}, {"control": 10, "treatment": 10})]
    srm = enrollments_checks(outcomes[0])[0]
    assert not srm.passed and "could not run" in srm.description and "exp-broken" in srm.description


# --- exports --------------------------------------------------------------------------------------


def _row(**extra):
    row = dict(metric="active_hours", statistic="mean", branch="control", parameter=None, comparison=None)
    row.update(comparison_to_branch=None, ci_width=0.95, point=1.0, lower=0.9, upper=1.1, segment="all")
    return {**row, "analysis_basis": "enrollments", "window_index": "1", **extra}


@pytest.fixture
def store(tmp_path):
    return LocalExportStore(root=str(tmp_path / "exports"))


def test_valid_statistics_export_passes(store):
    path = statistics_path("exp", "weekly")
    store.write_json(path, [_row(), _row(branch="treatment")])
    assert validation_error(store, path) is None


@pytest.mark.parametrize(
    "payload, expected",
    [
        ([_row(), _row(branch="treatment", ci_width=5)], "at 1.ci_width"),
        ([_row(), _row()], "describe the same estimate"),
        ({"not": "a list"}, "does not match the Statistics schema"),
    ],
)
def test_invalid_statistics_export_names_the_first_error(store, payload, expected):
    path = statistics_path("exp", "weekly")
    store.write_json(path, payload)
    assert expected in validation_error(store, path)


def test_unreadable_or_missing_files_fail(store, tmp_path):
    path = statistics_path("exp", "daily")
    (tmp_path / "exports" / "statistics").mkdir(parents=True)
    (tmp_path / "exports" / path).write_text('[{"metric": "active_ho')
    assert "not valid JSON" in validation_error(store, path)
    assert "missing" in validation_error(store, statistics_path("exp", "overall"))


def test_metadata_export_validated_with_the_metadata_model(store):
    path = metadata_path("exp")
    store.write_json(path, {"metrics": {}, "outcomes": {}, "schema_version": 4})
    assert validation_error(store, path) is None
    store.write_json(path, {"metrics": {"m": {"friendly_name": "M"}}, "outcomes": {}, "schema_version": 4})
    error = validation_error(store, path)
    assert "Metadata schema" in error and "metrics.m.analysis_bases" in error


def test_step_result_names_the_corrupted_file(store, tmp_path):
    good, bad = statistics_path("exp", "daily"), statistics_path("exp", "weekly")
    store.write_json(good, [_row()])
    store.write_json(bad, [_row()])
    (tmp_path / "exports" / bad).write_text("[{]")  # corrupted after writing
    cell, _ = _computed("exp", {"control": 1}, {})
    written = {"status": "computed", EXPORTED_PATHS: dg.MetadataValue.json([good, bad])}
    result = exports_valid_result(store, [(cell, written)])
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["file"].value == bad
    assert result.metadata["experiment"].value == "exp"
    assert "not valid JSON" in result.metadata["error"].value
    assert [f["file"] for f in result.metadata["invalid_files"].data] == [bad]
    assert bad in result.description
    nothing = exports_valid_result(store, [(cell, {"status": "no-op"})])
    assert nothing.passed and nothing.description.startswith("Nothing to check")
