"""One submission date's aggregates, in the two families the aggregates service serves.

For each (date, channel, version, metric, application, architecture, os, osVersion, label, child):
`count` (histograms or values aggregated), `sum` (sum of their sums or values) and `histogram` (bucket
counts, one per bucket label), with the metric's `kind` and `buckets` (JSON text) on every row so a reader
never needs the probe definitions to lay a row out. The `date` is the submission date in the
`submission_date` family and the build date (first 8 digits of the build id) in the `build_id` family.

Storage: dataset `telemetry_aggregates`, one table per family and submission date,
`submission_date_<YYYYMMDD>` and `build_id_<YYYYMMDD>`, each replaced whole; a rerun of a date replaces
exactly its two tables. A build date's aggregates are spread over the tables of the submission dates its
pings arrived on; readers add them up.

The work is warehouse SQL in four stages (`extract.py`): the day's pings with their dimensions -> their
process sections -> one row per histogram or value (the flattened form) -> groups and their non-empty
buckets; the first three are scratch tables removed at the end. Python then lays each metric's buckets out densely (probe registry, else what the
histograms carried) and rolls build dates up into the submission-date family.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jetstream_assets.aggregates import extract
from jetstream_assets.aggregates.probes import Layout, ProbeRegistry, fallback_layout
from jetstream_assets.aggregates.source import PINGS_DATASET, PINGS_TABLE, SOURCE_FILTER
from jetstream_assets.warehouse.base import Warehouse
from jetstream_assets.warehouse.local import LocalWarehouse

logger = logging.getLogger("jetstream_assets.aggregates")

AGGREGATES_DATASET = "telemetry_aggregates"
FAMILIES = ("submission_date", "build_id")
DIMENSIONS = ("application", "architecture", "os", "osVersion", "label", "child")
KEY_COLUMNS = ("date", "channel", "version", "metric", *DIMENSIONS)
COLUMNS = (*KEY_COLUMNS, "count", "sum", "histogram", "kind", "buckets")
_GROUP = list(extract.GROUP_COLUMNS)
_TABLE = re.compile(r"(submission_date|build_id)_([0-9]{8})")
_SCRATCH = "aggregates_scratch_"


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


@dataclass
class DayAggregates:
    """Both families' aggregates of one submission date, ready to store."""

    day: dt.date
    entries: int  # histograms and values aggregated
    frames: dict[str, pd.DataFrame]
    unknown_metrics: list[str] = field(default_factory=list)  # no definition and no layout in the pings
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> pings the aggregation dropped


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in KEY_COLUMNS})
    frame["count"] = pd.Series(dtype="int64")
    frame["sum"] = pd.Series(dtype="int64")
    frame["histogram"] = pd.Series(dtype="object")
    frame["kind"] = pd.Series(dtype="object")
    frame["buckets"] = pd.Series(dtype="object")
    return frame


def _rollup(keys: pd.DataFrame, counts: np.ndarray, sums: np.ndarray, matrix: np.ndarray):
    """Add up rows with equal keys: (unique keys, counts, sums, matrix)."""
    codes, uniques = pd.MultiIndex.from_frame(keys).factorize()
    n = len(uniques)
    rolled = np.zeros((n, matrix.shape[1]), dtype=np.int64)
    np.add.at(rolled, codes, matrix)
    frame = uniques.to_frame(index=False, name=list(keys.columns))
    return (frame, np.bincount(codes, weights=counts, minlength=n).astype(np.int64),
            np.bincount(codes, weights=sums, minlength=n), rolled)


def _carried(sample: str) -> tuple | None:
    """(histogram_type, low, high, bucket_count) a ping's histogram (JSON text) carries."""
    try:
        histogram = json.loads(sample)
        low, high = histogram.get("range") or (None, None)
        carried = (histogram.get("histogram_type"), low, high, histogram.get("bucket_count"))
    except (ValueError, TypeError, AttributeError):
        return None
    return carried if all(v is None or isinstance(v, int) for v in carried) else None


def _layout(metric: str, groups: pd.DataFrame, registry: ProbeRegistry) -> Layout | None:
    """The registry's layout, else the one most of the metric's histograms (a sample of them) carried."""
    layout = registry.layout(metric)
    if layout is not None:
        return layout
    carried = [c for s in groups["sample"].dropna().head(100) if (c := _carried(s)) is not None]
    for candidate, _ in Counter(carried).most_common():
        layout = fallback_layout(*candidate)
        if layout is not None:
            return layout
    return None


def assemble(day: dt.date, result: pd.DataFrame, registry: ProbeRegistry) -> DayAggregates:
    """Dense per-metric buckets from the day query's rows, in both families."""
    if result.empty:
        return DayAggregates(day, 0, {f: _empty_frame() for f in FAMILIES})
    groups = result[result["row_kind"] == "group"].reset_index(drop=True)
    cells = result[result["row_kind"] == "cell"]
    if not len(groups):
        return DayAggregates(day, 0, {f: _empty_frame() for f in FAMILIES})
    for column in _GROUP:
        groups[column] = groups[column].astype(str)
    index = pd.MultiIndex.from_frame(groups[_GROUP])
    cell_keys = pd.MultiIndex.from_frame(cells[_GROUP].astype(str))
    cell_gid = index.get_indexer(cell_keys)
    if (cell_gid < 0).any():
        raise AggregatesError(f"Aggregating {day}: bucket rows without their group; the pings changed mid-run, rerun.")
    cell_bucket = cells["bucket"].to_numpy(dtype=np.float64)
    cell_n = cells["n"].to_numpy(dtype=np.int64)
    metric_code, metrics = pd.factorize(groups["metric"])
    cell_metric = metric_code[cell_gid]
    counts_all = groups["n_entries"].to_numpy(dtype=np.int64)
    sums_all = groups["total"].to_numpy(dtype=np.float64)
    parts: dict[str, list[pd.DataFrame]] = {f: [] for f in FAMILIES}
    unknown = []
    stamp = f"{day:%Y%m%d}"
    for code, metric in enumerate(metrics):
        rows = np.flatnonzero(metric_code == code)
        layout = _layout(str(metric), groups.iloc[rows], registry)
        if layout is None:
            unknown.append(str(metric))
            continue
        local = np.full(len(groups), -1, dtype=np.int64)
        local[rows] = np.arange(len(rows))
        mask = cell_metric == code
        matrix = np.zeros((len(rows), len(layout.buckets)), dtype=np.int64)
        np.add.at(matrix, (local[cell_gid[mask]], layout.positions(cell_bucket[mask])), cell_n[mask])
        extra = {"kind": layout.kind, "buckets": json.dumps(list(layout.buckets), separators=(",", ":"))}
        keys = groups.iloc[rows][_GROUP].reset_index(drop=True)
        build = keys.rename(columns={"build_date": "date"})
        parts["build_id"].append(build.assign(count=counts_all[rows], sum=np.rint(sums_all[rows]).astype(np.int64),
                                              histogram=list(matrix), **extra))
        frame, counts, sums, rolled = _rollup(keys.drop(columns=["build_date"]), counts_all[rows], sums_all[rows], matrix)
        frame.insert(0, "date", stamp)
        parts["submission_date"].append(frame.assign(count=counts, sum=np.rint(sums).astype(np.int64),
                                                     histogram=list(rolled), **extra))
    frames = {}
    for family, pieces in parts.items():
        frame = pd.concat(pieces, ignore_index=True) if pieces else _empty_frame()
        frame = frame[list(COLUMNS)].sort_values(["channel", "version", "metric", "date", *DIMENSIONS])
        frames[family] = frame.reset_index(drop=True)
    return DayAggregates(day, int(counts_all.sum()), frames, sorted(unknown))


def _sql(warehouse: Warehouse, sql: str) -> str:
    """BigQuery gets the JSON helpers inlined; the local engine has them as macros."""
    return sql if isinstance(warehouse, LocalWarehouse) else extract.for_bigquery(sql)


def aggregate_day(warehouse: Warehouse, day: dt.date, registry: ProbeRegistry | None = None,
                  source_filter: str = SOURCE_FILTER) -> DayAggregates:
    """Both families' aggregates of the pings submitted on `day` (nothing is stored; scratch tables are
    written and removed)."""
    registry = registry if registry is not None else ProbeRegistry()
    pings = warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)
    scratch = f"{_SCRATCH}{day:%Y%m%d}_{uuid.uuid4().hex[:8]}"
    stages = [f"{scratch}_{name}" for name in ("pings", "sections", "entries")]
    refs = [warehouse.table_ref(t) for t in stages]
    try:
        warehouse.run_query(_sql(warehouse, extract.pings_stage_sql(pings, day, source_filter)), stages[0])
        warehouse.run_query(_sql(warehouse, extract.sections_sql(refs[0])), stages[1])
        warehouse.run_query(_sql(warehouse, extract.entries_sql(refs[1])), stages[2])
        result = warehouse.query(_sql(warehouse, extract.aggregates_sql(refs[2])))
        rejects = warehouse.query(extract.rejects_sql(refs[0]))
    finally:
        warehouse.delete_tables(stages)
    aggregates = assemble(day, result, registry)
    for row in rejects.itertuples():
        examples = ", ".join(map(str, list(row.examples)[:5]))
        logger.warning("%s: %d ping(s) skipped: %s (documents %s)", day, row.pings, row.reason, examples)
        aggregates.rejected[str(row.reason)] = int(row.pings)
    return aggregates


def submission_dates(warehouse: Warehouse) -> list[dt.date]:
    """Every submission date in the ping table (none when the table does not exist)."""
    if not warehouse.table_exists(PINGS_TABLE, PINGS_DATASET):
        return []
    frame = warehouse.query(extract.dates_sql(warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)))
    return [dt.date.fromisoformat(str(d)) for d in frame["day"]]


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


def aggregate_and_store(warehouse: Warehouse, day: dt.date, families: tuple[str, ...] = FAMILIES,
                        registry: ProbeRegistry | None = None) -> tuple[DayAggregates, dict[str, int]]:
    """What a partition run does: aggregate one submission date and replace its tables."""
    result = aggregate_day(warehouse, day, registry)
    return result, store_day(warehouse, result, families)
