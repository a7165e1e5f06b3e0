"""The errors export: one experiment's log rows, as Experimenter shows them under the results.

Like Jetstream, the file leaves out the expected skips (ended, enrollment not complete), lists rows
oldest first, and carries only the fields of the AnalysisErrors model.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from mozilla_nimbus_schemas.jetstream import AnalysisErrors
from pydantic import ValidationError

# Columns of the monitoring logs table.
LOG_COLUMNS = [
    "timestamp",
    "source",
    "experiment",
    "metric",
    "statistic",
    "analysis_basis",
    "segment",
    "analysis_period",
    "message",
    "log_level",
    "exception",
    "filename",
    "func_name",
    "exception_type",
]

# Validation skips that are part of an experiment's normal life, not errors worth showing.
SKIPPED_EXCEPTION_TYPES = frozenset({"EndedException", "EnrollmentNotCompleteException"})


class ErrorsExportError(ValueError):
    """Log rows that cannot become a valid errors export."""


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)) and math.isnan(float(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def errors_window_start(
    analysis_start_time: dt.datetime | None, enrollment_end: dt.datetime | dt.date | None
) -> dt.datetime | None:
    """Start of the current weekly analysis cycle: the export shows errors from there on.

    Weekly cycles begin the day after enrollment ends and every 7 days after; errors older than the
    latest cycle start before ``analysis_start_time`` belong to an earlier cycle. The result (UTC) is
    floored to the minute, as Jetstream does; None (keep every row) without an analysis start time.
    """
    if analysis_start_time is None:
        return None
    analysis_start_time = _as_utc(analysis_start_time)
    start = analysis_start_time
    if enrollment_end is not None:
        if not isinstance(enrollment_end, dt.datetime):
            enrollment_end = dt.datetime.combine(enrollment_end, dt.time())
        cycle = _as_utc(enrollment_end) + dt.timedelta(days=1)
        while cycle < analysis_start_time:
            start = cycle
            cycle += dt.timedelta(weeks=1)
    return start.replace(second=0, microsecond=0)


def _records(log_rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(log_rows, pd.DataFrame):
        raw = log_rows.to_dict("records")
    else:
        raw = [dict(row) for row in log_rows]
    return [{key: _plain(value) for key, value in row.items()} for row in raw]


def errors_export(
    log_rows: pd.DataFrame | list[dict[str, Any]],
    *,
    experiment: str | None = None,
    since: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The content of ``errors/errors_<slug>.json``: validated with AnalysisErrors, JSON-ready.

    ``experiment`` keeps only that experiment's rows (and names it in errors); ``since`` drops rows
    logged before it (see ``errors_window_start``).
    """
    where = f"experiment {experiment!r}" if experiment else "experiment (slug not given)"
    try:
        records = _records(log_rows)
    except (TypeError, ValueError) as e:
        raise ErrorsExportError(f"{where}: log rows must be a DataFrame or a list of dicts ({e}).") from e

    if experiment is not None:
        records = [r for r in records if r.get("experiment") == experiment]
    records = [r for r in records if r.get("exception_type") not in SKIPPED_EXCEPTION_TYPES]

    for position, record in enumerate(records):
        stamp = record.get("timestamp")
        if isinstance(stamp, str):
            try:
                stamp = dt.datetime.fromisoformat(stamp)
            except ValueError:
                raise ErrorsExportError(
                    f"{where}: log row {position} has timestamp {stamp!r}, not an ISO date-time."
                ) from None
        if not isinstance(stamp, dt.datetime):
            raise ErrorsExportError(
                f"{where}: log row {position} has no timestamp ({stamp!r}); every log row needs one."
            )
        record["timestamp"] = _as_utc(stamp)

    if since is not None:
        since = _as_utc(since)
        records = [r for r in records if r["timestamp"] >= since]
    records.sort(key=lambda r: r["timestamp"])

    try:
        validated = AnalysisErrors.model_validate(records)
    except ValidationError as e:
        first = e.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise ErrorsExportError(
            f"{where}: log rows do not match the AnalysisErrors schema of mozilla-nimbus-schemas "
            f"({e.error_count()} error(s); first at row.field {location}: {first['msg']}, "
            f"got {first.get('input')!r}). Log rows need timestamp, filename, func_name, log_level and "
            "message; source is one of jetstream, sizing, jetstream-preview."
        ) from e
    return validated.model_dump(mode="json")
