"""Statistics rows: the schema every statistic returns and the error every statistic raises.

The row shape is Jetstream's statistics table (and the `mozilla_nimbus_schemas.jetstream.Statistic` model):
one row per (branch, parameter) for a branch on its own, plus `difference` / `relative_uplift` rows for a
branch compared to another. NaN and infinities never leave the engine: they become None, as Jetstream
stores them as null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

STATISTIC_COLUMNS = [
    "metric",
    "statistic",
    "parameter",
    "branch",
    "comparison",
    "comparison_to_branch",
    "ci_width",
    "point",
    "lower",
    "upper",
    "segment",
    "analysis_basis",
]

_FLOAT_COLUMNS = ("parameter", "ci_width", "point", "lower", "upper")


class StatisticError(ValueError):
    """A statistic cannot be computed for a metric: bad configuration or unusable data.

    Carries the metric and statistic so the pipeline can log it against them and go on with the other
    statistics; the message always names both and says what to change.
    """

    def __init__(self, metric: str, statistic: str, problem: str, remedy: str | None = None):
        self.metric = metric
        self.statistic = statistic
        self.problem = problem
        self.remedy = remedy
        message = f"metric '{metric}', statistic '{statistic}': {problem}"
        if remedy:
            message += f". {remedy}"
        super().__init__(message)


@dataclass
class Row:
    """One statistics row before the metric/segment/basis columns are filled in."""

    branch: str
    point: float | None
    lower: float | None = None
    upper: float | None = None
    parameter: float | None = None
    comparison: str | None = None
    comparison_to_branch: str | None = None
    ci_width: float | None = None
    statistic: str | None = None  # overrides the statistic's output name (per_client_dau_impact)


def finite_or_none(value: Any) -> float | None:
    """Jetstream stores NaN and infinities as null; so do we."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def row_records(
    rows: Iterable[Row],
    *,
    metric: str,
    statistic: str,
    segment: str,
    analysis_basis: str,
) -> list[tuple]:
    """The statistics rows as records (tuples in STATISTIC_COLUMNS order), deduplicated on the row key as
    Jetstream's result collection is (the last row of a key wins, in its place). Missing values are None,
    never NaN, all the way to JSON."""
    records = {}  # row key -> values; a later row of the same key replaces the earlier one at its own place
    for r in rows:
        record = (
            metric,
            r.statistic or statistic,
            finite_or_none(r.parameter),
            str(r.branch),
            _text_or_none(r.comparison),
            None if r.comparison_to_branch is None else _text_or_none(str(r.comparison_to_branch)),
            finite_or_none(r.ci_width),
            finite_or_none(r.point),
            finite_or_none(r.lower),
            finite_or_none(r.upper),
            segment,
            analysis_basis,
        )
        key = record[:7]
        records.pop(key, None)
        records[key] = record
    return list(records.values())


def records_frame(records: list[tuple]) -> pd.DataFrame:
    """The statistics frame of records (row_records'): every column holds Python objects."""
    if not records:
        return empty_frame()
    values = np.empty((len(records), len(STATISTIC_COLUMNS)), dtype=object)
    values[:] = records
    return pd.DataFrame(values, columns=STATISTIC_COLUMNS)


def _text_or_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def empty_frame() -> pd.DataFrame:
    return _with_object_nulls(pd.DataFrame({c: pd.Series([], dtype=object) for c in STATISTIC_COLUMNS}))


def _with_object_nulls(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep float columns as object dtype so missing values are None, never NaN, all the way to JSON."""
    for col in _FLOAT_COLUMNS:
        frame[col] = pd.Series(
            [None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v) for v in frame[col]],
            index=frame.index,
            dtype=object,
        )
    for col in ("comparison", "comparison_to_branch"):
        frame[col] = pd.Series(
            [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in frame[col]],
            index=frame.index,
            dtype=object,
        )
    return frame
