"""The `statistics` subcommand: one statistic on a per-client Parquet file."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from jetstream_assets.statistics import STATISTIC_COLUMNS
from jetstream_assets.statistics.cli import add_arguments, run


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _parquet(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "branch": np.repeat(["control", "treatment"], 500),
            "m": rng.lognormal(0, 1, 1000),
            "m_pre": rng.lognormal(0, 1, 1000),
            "clicks": rng.poisson(2, 1000),
            "visits": rng.poisson(5, 1000) + 1,
        }
    )
    path = tmp_path / "clients.parquet"
    df.to_parquet(path)
    return path


def test_cli_writes_rows(tmp_path):
    path = _parquet(tmp_path)
    out = tmp_path / "rows.json"
    code = run(_args([
        "--input", str(path), "--metric", "m", "--statistic", "bootstrap_mean",
        "--param", "num_samples=500", "--pre-treatment", "remove_nulls", "--pre-treatment", "log:base=2",
        "--seed", "3", "--output", str(out), "--segment", "new", "--reference-branch", "treatment",
    ]))
    assert code == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 6 and list(rows[0]) == STATISTIC_COLUMNS
    assert rows[0]["segment"] == "new" and rows[0]["branch"] == "treatment"
    again = tmp_path / "again.json"
    run(_args(["--input", str(path), "--metric", "m", "--statistic", "bootstrap_mean", "--param", "num_samples=500",
               "--pre-treatment", "remove_nulls", "--pre-treatment", "log:base=2", "--seed", "3",
               "--segment", "new", "--reference-branch", "treatment", "--output", str(again)]))
    assert json.loads(again.read_text()) == rows


def test_cli_nested_params_and_ratio(tmp_path, capsys):
    path = _parquet(tmp_path)
    assert run(_args(["--input", str(path), "--metric", "m", "--statistic", "linear_model_mean",
                      "--param", "covariate_adjustment.period=preenrollment_week"])) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6
    assert run(_args(["--input", str(path), "--metric", "ctr", "--statistic", "population_ratio",
                      "--param", "numerator=clicks", "--param", "denominator=visits", "--param", "num_samples=300"])) == 0
    assert {r["statistic"] for r in json.loads(capsys.readouterr().out)} == {"population_ratio"}


def test_cli_errors_are_clear(tmp_path, capsys):
    path = _parquet(tmp_path)
    assert run(_args(["--input", str(path), "--metric", "ctr", "--statistic", "population_ratio"])) == 2
    err = capsys.readouterr().err
    assert "numerator" in err and "ctr" in err and "population_ratio" in err
    assert run(_args(["--input", str(tmp_path / "nope.parquet"), "--metric", "m", "--statistic", "sum"])) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run(_args(["--input", str(path), "--metric", "m", "--statistic", "mode"])) == 2
    assert "unknown statistic" in capsys.readouterr().err


def test_cli_without_branches_names_branch_values_right_when_the_reference_is_not_first(tmp_path):
    """Defect: without --branches, moving the reference branch first renamed the per-branch values (control
    reported treatment's mean). Each branch's row must carry that branch's own numbers."""
    df = pd.DataFrame({
        "branch": ["treatment", "control"] * 200,
        "m": [2.0, 1.0] * 200,
        "flag": [1.0, 0.0] * 200,
    })
    path = tmp_path / "treatment_first.parquet"
    df.to_parquet(path)
    expected = df.groupby("branch")["m"].mean().to_dict()
    for statistic, metric in [("bootstrap_mean", "m"), ("binomial", "flag"), ("deciles", "m"),
                              ("empirical_cdf", "m"), ("kernel_density_estimate", "m")]:
        out = tmp_path / f"{statistic}.json"
        assert run(_args(["--input", str(path), "--metric", metric, "--statistic", statistic,
                          "--seed", "1", "--output", str(out)] +
                         (["--param", "num_samples=200"] if statistic in ("bootstrap_mean", "deciles") else []))) == 0
        rows = [r for r in json.loads(out.read_text()) if r["comparison"] is None]
        assert rows[0]["branch"] == "control", statistic  # the reference branch comes first
        for branch in ("control", "treatment"):
            mine = [r for r in rows if r["branch"] == branch]
            if statistic == "bootstrap_mean":
                assert mine[0]["point"] == expected[branch]
            elif statistic == "binomial":
                assert mine[0]["point"] < 0.5 if branch == "control" else mine[0]["point"] > 0.5
            elif statistic == "deciles":
                assert {r["point"] for r in mine} == {expected[branch]}
            elif statistic == "empirical_cdf":  # the step sits at the branch's only value
                assert min(r["parameter"] for r in mine) == expected[branch]
            else:
                assert mine and all(r["point"] is not None for r in mine)
