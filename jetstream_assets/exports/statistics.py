"""The statistics export: every row of one statistics view as the JSON array Experimenter reads.

Jetstream exports the view ``statistics_<slug>_<suffix>`` (all windows so far) through BigQuery's JSON
extract, in which ``window_index`` (INT64) arrives as a string and ``parameter`` (NUMERIC) is rounded to six
decimals; the Statistics model of mozilla-nimbus-schemas expects exactly that.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from mozilla_nimbus_schemas.jetstream import Statistics
from pydantic import ValidationError

from jetstream_assets.statistics.results import STATISTIC_COLUMNS

# Column order of Jetstream's statistics tables (the engine's), then the view's window_index.
STATISTICS_COLUMNS = STATISTIC_COLUMNS
EXPORT_COLUMNS = [*STATISTICS_COLUMNS, "window_index"]
REQUIRED_COLUMNS = ["metric", "statistic", "branch"]
FLOAT_COLUMNS = ["ci_width", "point", "lower", "upper"]

# What makes a row unique in Experimenter's eyes (the schema's duplicate rule, minus the estimates).
IDENTITY_COLUMNS = [
    "metric",
    "statistic",
    "branch",
    "parameter",
    "comparison",
    "comparison_to_branch",
    "ci_width",
    "segment",
    "analysis_basis",
    "window_index",
]

PARAMETER_DECIMALS = 6  # Jetstream stores parameter as NUMERIC rounded to 6 places


class StatisticsExportError(ValueError):
    """Rows of a statistics view that cannot become a valid statistics export."""


def _where(slug: str | None, period: str | None) -> str:
    text = f"experiment {slug!r}" if slug else "experiment (slug not given)"
    return f"{text}, period {period!r}" if period else text


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(float(value))
    return False


def _plain(value: Any) -> Any:
    """numpy / pandas scalars as plain Python values, NaN and infinities as None."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _float_or_none(value: Any, column: str, where: str) -> float | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise StatisticsExportError(f"{where}: column {column!r} holds a boolean ({value!r}), not a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StatisticsExportError(
            f"{where}: column {column!r} holds {value!r}, which is not a number."
        ) from None
    return number if math.isfinite(number) else None


def _parameter(value: Any, where: str) -> float | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, Decimal):
        value = float(value)
    number = _float_or_none(value, "parameter", where)
    return None if number is None else round(number, PARAMETER_DECIMALS)


def _window_index(value: Any, where: str) -> str | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise StatisticsExportError(f"{where}: window_index {value!r} is not a window number.")
        return str(int(text))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StatisticsExportError(f"{where}: window_index {value!r} is not a window number.")
    return str(value)


def _text(value: Any) -> Any:
    value = _plain(value)
    # Enum members (e.g. AnalysisBasis) travel as their value.
    return getattr(value, "value", value)


def statistics_export(
    rows: pd.DataFrame, *, slug: str | None = None, period: str | None = None
) -> list[dict[str, Any]]:
    """Turn the rows of a statistics view into the list written to ``statistics_<slug>_<suffix>.json``.

    Raises StatisticsExportError (naming the experiment) when a required column is missing, a value has
    the wrong type, a row fails the Statistics schema, or two rows describe the same estimate.
    """
    where = _where(slug, period)
    if not isinstance(rows, pd.DataFrame):
        raise StatisticsExportError(f"{where}: statistics rows must be a pandas DataFrame, got {type(rows)}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise StatisticsExportError(
            f"{where}: the statistics rows lack column(s) {missing}; pass the rows of the statistics view "
            f"(columns {EXPORT_COLUMNS})."
        )

    records: list[dict[str, Any]] = []
    columns = [c for c in EXPORT_COLUMNS if c in rows.columns]
    for position, raw in enumerate(rows[columns].itertuples(index=False, name=None)):
        values = dict(zip(columns, raw))
        row_where = f"{where}, row {position}"
        record: dict[str, Any] = {}
        for column in EXPORT_COLUMNS:
            value = values.get(column)
            if column == "parameter":
                record[column] = _parameter(value, row_where)
            elif column == "window_index":
                record[column] = _window_index(value, row_where)
            elif column in FLOAT_COLUMNS:
                record[column] = _float_or_none(value, column, row_where)
            else:
                record[column] = _text(value)
        records.append(record)

    try:
        Statistics.model_validate(records)
    except ValidationError as e:
        first = e.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise StatisticsExportError(
            f"{where}: statistics rows do not match the Statistics schema of mozilla-nimbus-schemas "
            f"({e.error_count()} error(s); first at row.field {location}: {first['msg']}, "
            f"got {first.get('input')!r})."
        ) from e

    # The schema's own duplicate check never fires (it tests `"root" in self`), so check here.
    seen: dict[tuple, int] = {}
    for position, record in enumerate(records):
        key = tuple(record[c] for c in IDENTITY_COLUMNS)
        if key in seen:
            described = ", ".join(f"{c}={v!r}" for c, v in zip(IDENTITY_COLUMNS, key) if v is not None)
            raise StatisticsExportError(
                f"{where}: rows {seen[key]} and {position} describe the same estimate ({described}); "
                "a statistics view must hold one row per estimate and window. Was a window written twice?"
            )
        seen[key] = position
    return records
