"""`jetstream-assets statistics`: one statistic on a per-client Parquet file, rows in the statistics schema.

    jetstream-assets statistics --input clients.parquet --metric active_hours --statistic bootstrap_mean \
        --param num_samples=2000 --pre-treatment remove_nulls --pre-treatment log:base=2 --output rows.json

--param values are read as JSON when they parse (numbers, true/false, null, {"period": ...}), else as text;
a dotted key sets a nested value (covariate_adjustment.period=preenrollment_week).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .engine import compute_statistic, known_statistics
from .pre_treatments import known_pre_treatments
from .results import StatisticError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="Parquet file: one row per client, a 'branch' column and metric columns.")
    parser.add_argument("--metric", required=True, help="Metric column (the metric's name for population_ratio).")
    parser.add_argument("--statistic", required=True, help=f"One of: {', '.join(known_statistics())}.")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="Statistic parameter, e.g. num_samples=2000, numerator=clicks, covariate_adjustment.period=preenrollment_week.",
    )
    parser.add_argument(
        "--pre-treatment", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
        help=f"Pre-treatment, in order (repeatable). One of: {', '.join(known_pre_treatments())}.",
    )
    parser.add_argument("--reference-branch", default=None, help="Branch whose comparisons come first (default control).")
    parser.add_argument("--branches", default=None, help="Comma-separated branch slugs in Experimenter order.")
    parser.add_argument("--analysis-length-dates", type=int, default=1, help="Window length in days (normalize_over_analysis_period).")
    parser.add_argument("--segment", default="all")
    parser.add_argument("--analysis-basis", default="enrollments", choices=["enrollments", "exposures"])
    parser.add_argument("--seed", type=int, default=None, help="Seed for reproducible resampling.")
    parser.add_argument("--output", default=None, help="Write the rows as a JSON array here (default: stdout).")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE")
        key, text = item.split("=", 1)
        target = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = _value(text)
    return out


def _pre_treatment(text: str) -> tuple[str, dict[str, Any]]:
    name, _, args = text.partition(":")
    return name.strip(), _key_values([a for a in args.split(",") if a], f"pre-treatment {name} argument")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    try:
        params = _key_values(args.param, "--param")
        pre_treatments = [_pre_treatment(t) for t in args.pre_treatment]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = Path(args.input)
    if not path.exists():
        print(f"error: input file {path} does not exist", file=sys.stderr)
        return 2
    try:
        data = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same answer
        print(f"error: cannot read {path} as Parquet: {e}", file=sys.stderr)
        return 2
    try:
        frame = compute_statistic(
            data,
            args.metric,
            args.statistic,
            params,
            pre_treatments,
            branches=args.branches.split(",") if args.branches else None,
            reference_branch=args.reference_branch,
            analysis_length_dates=args.analysis_length_dates,
            segment=args.segment,
            analysis_basis=args.analysis_basis,
            seed=args.seed,
        )
    except StatisticError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    for note in frame.attrs.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    text = json.dumps(frame.to_dict(orient="records"), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"{len(frame)} rows -> {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
