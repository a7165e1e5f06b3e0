"""bench/rerun.py compares the results of the two sides and says loudly when they differ."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rerun.py"


@pytest.fixture(scope="module")
def rerun():
    spec = importlib.util.spec_from_file_location("bench_rerun", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _statistics(point_shift: float = 0.0, count: float = 100.0) -> pd.DataFrame:
    rows = []
    for basis in ("enrollments", "exposures"):
        rows.append({"metric": "active_hours", "statistic": "mean", "branch": "treatment", "segment": "all",
                     "analysis_basis": basis, "point": 1.0 + point_shift, "lower": 0.9, "upper": 1.1})
        rows.append({"metric": "identity", "statistic": "count", "branch": "treatment", "segment": "all",
                     "analysis_basis": basis, "point": count if basis == "exposures" else 100.0, "lower": None,
                     "upper": None})
    return pd.DataFrame(rows)


def _dataset(root: Path, statistics: pd.DataFrame, clients: int = 3) -> Path:
    root.mkdir(parents=True)
    pd.DataFrame({"analysis_id": [f"c{i}" for i in range(clients)], "branch": "control"}).to_parquet(
        root / "demo_custom_enrollments.parquet")
    statistics.to_parquet(root / "statistics_demo_custom_week_1.parquet")
    return root


def test_equal_results_pass(rerun, tmp_path):
    a, b = _dataset(tmp_path / "a", _statistics()), _dataset(tmp_path / "b", _statistics(point_shift=1e-6))
    assert rerun.compare(a, b) == []


def test_a_statistic_beyond_monte_carlo_error_and_a_different_table_are_reported(rerun, tmp_path):
    a = _dataset(tmp_path / "a", _statistics(point_shift=0.05, count=90.0), clients=4)
    b = _dataset(tmp_path / "b", _statistics())
    problems = rerun.compare(a, b)
    assert any(p.startswith("demo_custom_enrollments.parquet") for p in problems)
    [statistics] = [p for p in problems if p.startswith("statistics differ")]
    assert "active_hours/mean/enrollments (1 rows)" in statistics
    assert "identity/count/exposures (1 rows)" in statistics


def test_a_known_difference_is_reported_but_not_counted(rerun, tmp_path, capsys):
    a, b = _dataset(tmp_path / "a", _statistics(count=90.0)), _dataset(tmp_path / "b", _statistics())
    assert rerun.compare(a, b, {("identity", "count", "exposures")}) == []
    assert "known differences (--known-difference, not counted): identity/count/exposures (1 rows)" in (
        capsys.readouterr().out)


def test_the_largest_difference_printed_leaves_out_the_known_ones(rerun, tmp_path, capsys):
    a = _dataset(tmp_path / "a", _statistics(point_shift=0.002, count=90.0))
    b = _dataset(tmp_path / "b", _statistics())
    assert rerun.compare(a, b, {("identity", "count", "exposures")}) == []
    assert "largest difference 1.00e-02 of an interval width (apart from the known differences)" in (
        capsys.readouterr().out)
