"""Aggregates of one submission date's main pings, in the two families the aggregates service serves.

For each (date, channel, version, metric, application, architecture, os, osVersion, label, child):
`count` (histograms or values aggregated), `sum` (sum of their sums) and `histogram` (bucket counts, one
per bucket label of the metric's definition). The `date` is the submission date in the
`submission_date` family and the build date (first 8 digits of the build id) in the `build_id` family.

Storage: dataset `telemetry_aggregates`, one table per family and submission date,
`submission_date_<YYYYMMDD>` and `build_id_<YYYYMMDD>`, each replaced whole. Re-running a date replaces
exactly its two tables, so a rerun gives the same result and never double counts. A build date's
aggregates are spread over the tables of the submission dates its pings arrived on; readers add them up.

The heavy part is one BigQuery-dialect query through the `Warehouse` (it runs untouched on BigQuery and
transpiled on DuckDB): it groups the day's ping entries by build date and dimensions and adds up their
buckets (or, for scalars and count histograms, counts pings per value). Python then lays each metric's
buckets out densely from the probe definitions and rolls build dates up into the submission-date family.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jetstream_assets.aggregates.pings import PINGS_DATASET, PINGS_TABLE
from jetstream_assets.aggregates.probes import CHILD_OF_PROCESS, DEMO_REGISTRY, SCALAR_PREFIX, ProbeRegistry
from jetstream_assets.warehouse.base import Warehouse

AGGREGATES_DATASET = "telemetry_aggregates"
FAMILIES = ("submission_date", "build_id")
DIMENSIONS = ("application", "architecture", "os", "osVersion", "label", "child")
KEY_COLUMNS = ("date", "channel", "version", "metric", *DIMENSIONS)
COLUMNS = (*KEY_COLUMNS, "count", "sum", "histogram")
# dimensions of a group in the day's query, build date first
_GROUP_COLUMNS = ("build_date", "channel", "version", "metric", *DIMENSIONS)
_TABLE = re.compile(r"(submission_date|build_id)_([0-9]{8})")


class AggregatesError(ValueError):
    """Bad input to the aggregation (a family or date); the message says which and what to do."""


def table_name(family: str, day: dt.date) -> str:
    """The table holding one family's aggregates of the pings submitted on `day`."""
    if family not in FAMILIES:
        raise AggregatesError(f"Unknown aggregates family {family!r}; use one of {', '.join(FAMILIES)}.")
    return f"{family}_{day:%Y%m%d}"


def parse_table_name(name: str) -> tuple[str, str] | None:
    """(family, YYYYMMDD) of an aggregates table name, or None for any other table."""
    match = _TABLE.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def bq_string(value: str) -> str:
    """A BigQuery string literal (backslash escapes); refuses control characters rather than encode them."""
    if any(ord(c) < 32 for c in value):
        raise AggregatesError(f"Control characters are not allowed in SQL values: {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def day_sql(warehouse: Warehouse, day: dt.date, registry: ProbeRegistry = DEMO_REGISTRY) -> str:
    """BigQuery SQL: one row per group (row_kind 'group': dimensions, count, sum) and one per non-empty
    bucket of a group (row_kind 'cell': gid, bucket lower bound or per-ping value, n)."""
    pings = warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)
    counted = sorted(p.name for p in registry if p.kind == "count" and not p.is_scalar)
    count_histograms = f"probe IN ({', '.join(bq_string(n) for n in counted)})" if counted else "FALSE"
    child = " ".join(f"WHEN {bq_string(p)} THEN {bq_string(c)}" for p, c in CHILD_OF_PROCESS.items())
    keys = ", ".join(_GROUP_COLUMNS)
    return f"""
WITH entries AS (
  SELECT
    SUBSTR(app_build_id, 1, 8) AS build_date,
    normalized_channel AS channel,
    REGEXP_EXTRACT(app_version, r'^[0-9]+') AS version,
    CASE WHEN probe_type IN ('scalar', 'keyed_scalar') THEN CONCAT({bq_string(SCALAR_PREFIX)}, UPPER(probe))
      ELSE probe END AS metric,
    app_name AS application,
    architecture,
    os,
    os_version AS osVersion,
    COALESCE(key, '') AS label,
    CASE process {child} ELSE process END AS child,
    (probe_type IN ('scalar', 'keyed_scalar') OR {count_histograms}) AS value_bucketed,
    `sum` AS value,
    hist_values
  FROM `{pings}`
  WHERE submission_date = DATE '{day.isoformat()}'
    AND REGEXP_CONTAINS(app_build_id, r'^[0-9]{{8}}')
    AND REGEXP_CONTAINS(app_version, r'^[0-9]+')
    AND normalized_channel IS NOT NULL AND probe IS NOT NULL AND process IS NOT NULL
    AND app_name IS NOT NULL AND architecture IS NOT NULL AND os IS NOT NULL AND os_version IS NOT NULL
),
groups AS (
  SELECT {keys}, COUNT(*) AS n_entries, SUM(COALESCE(value, 0)) AS total,
    ROW_NUMBER() OVER (ORDER BY {keys}) - 1 AS gid
  FROM entries
  GROUP BY {keys}
),
cells AS (
  SELECT g.gid, v.key AS bucket, SUM(v.value) AS n
  FROM entries AS e
  JOIN groups AS g USING ({keys})
  CROSS JOIN UNNEST(e.hist_values) AS v
  WHERE NOT e.value_bucketed
  GROUP BY g.gid, bucket
  UNION ALL
  SELECT g.gid, COALESCE(e.value, 0) AS bucket, COUNT(*) AS n
  FROM entries AS e
  JOIN groups AS g USING ({keys})
  WHERE e.value_bucketed
  GROUP BY g.gid, bucket
)
SELECT 'group' AS row_kind, gid, {keys}, n_entries, total, CAST(NULL AS INT64) AS bucket, CAST(NULL AS INT64) AS n
FROM groups
UNION ALL
SELECT 'cell' AS row_kind, gid, {", ".join(f"CAST(NULL AS STRING) AS {k}" for k in _GROUP_COLUMNS)},
  CAST(NULL AS INT64) AS n_entries, CAST(NULL AS INT64) AS total, bucket, n
FROM cells
"""


@dataclass
class DayAggregates:
    """Both families' aggregates of one submission date, ready to store."""

    day: dt.date
    entries: int  # ping entries (ping x process x probe x key) aggregated
    frames: dict[str, pd.DataFrame]
    unknown_metrics: list[str] = field(default_factory=list)  # in the pings but without a definition


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in KEY_COLUMNS})
    frame["count"] = pd.Series(dtype="int64")
    frame["sum"] = pd.Series(dtype="int64")
    frame["histogram"] = pd.Series(dtype="object")
    return frame


def _rollup(keys: pd.DataFrame, counts: np.ndarray, sums: np.ndarray, matrix: np.ndarray):
    """Add up rows with equal keys: (unique keys, counts, sums, matrix)."""
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    n = len(uniques)
    rolled = np.zeros((n, matrix.shape[1]), dtype=np.int64)
    np.add.at(rolled, codes, matrix)
    frame = uniques.to_frame(index=False, name=list(keys.columns))
    return (frame, np.bincount(codes, weights=counts, minlength=n).astype(np.int64),
            np.bincount(codes, weights=sums, minlength=n).astype(np.int64), rolled)


def assemble(day: dt.date, result: pd.DataFrame, registry: ProbeRegistry = DEMO_REGISTRY) -> DayAggregates:
    """Dense per-metric buckets from the day query's rows, in both families."""
    groups = result[result["row_kind"] == "group"].sort_values("gid").reset_index(drop=True)
    cells = result[result["row_kind"] == "cell"]
    if not len(groups):
        return DayAggregates(day, 0, {f: _empty_frame() for f in FAMILIES})
    gid = groups["gid"].to_numpy(dtype=np.int64)
    if not np.array_equal(gid, np.arange(len(groups))):
        raise AggregatesError(f"Aggregating {day}: group ids are not 0..n-1; the pings changed mid-query, rerun.")
    cell_gid = cells["gid"].to_numpy(dtype=np.int64)
    cell_bucket = cells["bucket"].to_numpy(dtype=np.int64)
    cell_n = cells["n"].to_numpy(dtype=np.int64)
    metric_code, metrics = pd.factorize(groups["metric"])
    cell_metric = metric_code[cell_gid]
    counts_all = groups["n_entries"].to_numpy(dtype=np.int64)
    sums_all = groups["total"].to_numpy(dtype=np.int64)
    parts: dict[str, list[pd.DataFrame]] = {f: [] for f in FAMILIES}
    unknown = []
    stamp = f"{day:%Y%m%d}"
    for code, metric in enumerate(metrics):
        probe = registry.get(metric)
        if probe is None:
            unknown.append(str(metric))
            continue
        rows = np.flatnonzero(metric_code == code)
        local = np.full(len(groups), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        mask = cell_metric == code
        matrix = np.zeros((len(rows), len(probe.buckets)), dtype=np.int64)
        np.add.at(matrix, (local[cell_gid[mask]], probe.bucket_index(cell_bucket[mask])), cell_n[mask])
        keys = groups.iloc[rows][list(_GROUP_COLUMNS)].reset_index(drop=True)
        build = keys.rename(columns={"build_date": "date"})
        build = build.assign(count=counts_all[rows], sum=sums_all[rows], histogram=list(matrix))
        parts["build_id"].append(build)
        frame, counts, sums, rolled = _rollup(
            keys.drop(columns=["build_date"]), counts_all[rows], sums_all[rows], matrix)
        frame.insert(0, "date", stamp)
        parts["submission_date"].append(frame.assign(count=counts, sum=sums, histogram=list(rolled)))
    frames = {}
    for family, pieces in parts.items():
        frame = pd.concat(pieces, ignore_index=True) if pieces else _empty_frame()
        frame = frame[list(COLUMNS)].sort_values(["channel", "version", "metric", "date", *DIMENSIONS])
        frames[family] = frame.reset_index(drop=True)
    return DayAggregates(day, int(counts_all.sum()), frames, sorted(unknown))


def aggregate_day(warehouse: Warehouse, day: dt.date, registry: ProbeRegistry = DEMO_REGISTRY) -> DayAggregates:
    """Both families' aggregates of the pings submitted on `day` (nothing is written)."""
    return assemble(day, warehouse.query(day_sql(warehouse, day, registry)), registry)


def store_day(warehouse: Warehouse, result: DayAggregates, families: tuple[str, ...] = FAMILIES) -> dict[str, int]:
    """Replace the day's table of each family; a family with no rows loses its table (no stale rows)."""
    written = {}
    for family in families:
        table = table_name(family, result.day)
        frame = result.frames[family]
        if len(frame):
            warehouse.write_dataframe(frame, table, dataset=AGGREGATES_DATASET)
        else:
            warehouse.delete_tables([table], dataset=AGGREGATES_DATASET)
        written[family] = len(frame)
    return written


def aggregate_and_store(
    warehouse: Warehouse, day: dt.date, families: tuple[str, ...] = FAMILIES, registry: ProbeRegistry = DEMO_REGISTRY
) -> tuple[DayAggregates, dict[str, int]]:
    """What a partition run does: aggregate one submission date and replace its tables."""
    result = aggregate_day(warehouse, day, registry)
    return result, store_day(warehouse, result, families)
