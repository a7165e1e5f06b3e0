"""Rows a run read from each telemetry table, from the local warehouse's scan log (JETSTREAM_SCAN_LOG),
against one scan of the days the run needs. Parquet is read a row group at a time and the demo telemetry
has one row group per submission date, so both sides are counted in whole row groups (days)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pyarrow.parquet as pq


def _row_groups(path: Path) -> list[tuple[dt.date, dt.date, int]]:
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.to_arrow_schema().get_field_index("submission_date")
    out = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(column).statistics
        out.append((stats.min, stats.max, group.num_rows))
    return out


def rows_read(telemetry: Path, scan_log: Path, first: dt.date, last: dt.date, runs: int = 1) -> list[str]:
    groups_read: dict[str, int] = {}
    for line in scan_log.read_text().splitlines():
        for files, groups in json.loads(line)["row_groups"].items():
            for name in re.findall(r"telemetry/(\w+)\.parquet", files):
                groups_read[name] = groups_read.get(name, 0) + groups
    lines = []
    for table, read in sorted(groups_read.items()):
        groups = _row_groups(telemetry / f"{table}.parquet")
        needed = [rows for lo, hi, rows in groups if hi >= first and lo <= last]
        per_group = sum(needed) / max(len(needed), 1)
        once = sum(needed) * runs
        approx = read * per_group
        lines.append(
            f"  {table:<18} {read:>5} row groups (~{approx:>11,.0f} rows) read; one scan of {first}..{last}"
            f"{f' x {runs} runs' if runs > 1 else ''}: {len(needed) * runs:>5} row groups ({once:>11,} rows); "
            f"ratio {read / max(len(needed) * runs, 1):.2f}x"
        )
    return lines
