"""The demo's telemetry tables: their schemas (the columns of Mozilla's tables the demo metrics and
mozanalysis read), how simulated clients become Arrow columns (UUID strings, dictionary-decoded strings, the
`experiments` map, Normandy events) and how a table is written (row group by row group to a temporary file,
renamed into place). `telemetry.py` simulates the clients and calls these."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .experiments import AD_CLICKS, ACTIVE_HOURS, SEARCH_COUNT, SEARCH_WITH_ADS, TAB_OPEN, URI_COUNT

if TYPE_CHECKING:
    from .telemetry import _Experiment

#: the desktop URI count over normal and private windows (a demo metric of metric-hub's defaults reads it)
URI_COUNT_ALL = "scalar_parent_browser_engagement_total_uri_count_normal_and_private_mode_sum"


def uuid_strings(raw: np.ndarray) -> pa.Array:
    """UUID-formatted strings from (n, 16) random bytes, built without a per-client loop."""
    n = raw.shape[0]
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = hexdigits[raw >> 4]
    nibbles[:, 1::2] = hexdigits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8] = nibbles[:, 0:8]
    out[:, 9:13] = nibbles[:, 8:12]
    out[:, 14:18] = nibbles[:, 12:16]
    out[:, 19:23] = nibbles[:, 16:20]
    out[:, 24:36] = nibbles[:, 20:32]
    out[:, 14] = ord("4")  # version 4
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.tobytes())]
    )


def coded_strings(codes: np.ndarray, values: Iterable[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(list(values), pa.string())
    ).dictionary_decode()


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """pyarrow hands back a ChunkedArray for very large inputs (millions of clients enrolling in a day);
    MapArray.from_arrays needs one array."""
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


class AtomicParquet:
    """A Parquet file written row group by row group to a temporary name, renamed into place at the end."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table)
            self.rows += table.num_rows

    def commit(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


_SIMPLE_MAP = pa.map_(pa.string(), pa.string())
_NATIVE_MAP = pa.map_(pa.string(), pa.struct([("branch", pa.string())]))

CLIENTS_DAILY_SCHEMA = pa.schema(
    [
        ("submission_date", pa.date32()),
        ("client_id", pa.string()),
        ("sample_id", pa.int64()),
        ("normalized_channel", pa.string()),
        ("country", pa.string()),
        ("os", pa.string()),
        ("os_version", pa.string()),
        ("app_version", pa.string()),
        ("first_seen_date", pa.date32()),
        ("is_default_browser", pa.bool_()),
        ("fxa_configured", pa.bool_()),
        ("pings_aggregated_by_this_row", pa.int64()),
        (ACTIVE_HOURS, pa.float64()),
        ("subsession_hours_sum", pa.float64()),
        (URI_COUNT, pa.int64()),
        (URI_COUNT_ALL, pa.int64()),
        (TAB_OPEN, pa.int64()),
        (SEARCH_COUNT, pa.int64()),
        (SEARCH_WITH_ADS, pa.int64()),
        (AD_CLICKS, pa.int64()),
        ("experiments", _SIMPLE_MAP),
    ]
)

CLIENTS_LAST_SEEN_SCHEMA = pa.schema(
    [
        ("submission_date", pa.date32()),
        ("client_id", pa.string()),
        ("sample_id", pa.int64()),
        ("normalized_channel", pa.string()),
        ("country", pa.string()),
        ("os", pa.string()),
        ("first_seen_date", pa.date32()),
        ("days_seen_bits", pa.int64()),
        ("days_active_bits", pa.int64()),
        ("is_regular_user_v3", pa.bool_()),
        ("is_new_or_resurrected_v3", pa.bool_()),
        ("activity_segments_v1", pa.string()),
        ("experiments", _SIMPLE_MAP),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        ("submission_date", pa.date32()),
        ("timestamp", pa.timestamp("us")),
        ("client_id", pa.string()),
        ("sample_id", pa.int64()),
        ("normalized_channel", pa.string()),
        ("country", pa.string()),
        ("os", pa.string()),
        ("app_version", pa.string()),
        ("event_process", pa.string()),
        ("event_timestamp", pa.int64()),
        ("event_category", pa.string()),
        ("event_method", pa.string()),
        ("event_object", pa.string()),
        ("event_string_value", pa.string()),
        ("event_map_values", pa.map_(pa.string(), pa.string())),
        ("experiments", _NATIVE_MAP),
    ]
)


def experiments_map(
    idx: np.ndarray,
    d: int,
    enroll_day: np.ndarray,
    branch_global: np.ndarray,
    slugs: list[str],
    branch_names: list[str],
    *,
    native: bool,
) -> pa.Array:
    """The `experiments` column: each listed client's experiments (slug -> branch) enrolled by day `d`."""
    ed = enroll_day[:, idx]
    member = (ed >= 0) & (ed <= d)  # (experiments, clients)
    rows, exps = np.nonzero(member.T)  # row-major: grouped by client, in experiment order
    counts = np.bincount(rows, minlength=idx.size) if rows.size else np.zeros(idx.size, dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    keys = coded_strings(exps, slugs) if rows.size else pa.array([], pa.string())
    codes = branch_global[exps, idx[rows]] if rows.size else np.array([], dtype=np.int32)
    items = coded_strings(codes, branch_names) if rows.size else pa.array([], pa.string())
    if native:
        items = pa.StructArray.from_arrays([items], names=["branch"])
        return pa.MapArray.from_arrays(offsets, keys, items, type=_NATIVE_MAP)
    return pa.MapArray.from_arrays(offsets, keys, items, type=_SIMPLE_MAP)


def events_table(
    idx: np.ndarray,
    method: str,
    exp: _Experiment,
    branch_codes: np.ndarray,
    branch_names: list[str],
    day: date,
    d: int,
    rng: np.random.Generator,
    *,
    client_id: pa.Array,
    sample_id: np.ndarray,
    channel: pa.Array,
    country: pa.Array,
    os_arr: pa.Array,
    version: pa.Array,
    experiments: pa.Array,
) -> pa.Table:
    m = idx.size
    take = pa.array(idx)
    branch = coded_strings(branch_codes, branch_names)
    if method == "expose":
        second_key, second_value = "featureId", "demo-feature"
        branch_key = "branchSlug"
    elif method == "enroll":
        second_key, second_value = "experimentType", exp.experiment_type
        branch_key = "branch"
    else:
        second_key, second_value = "reason", "studies-opt-out"
        branch_key = "branch"
    keys = pa.array(np.tile([branch_key, second_key], m), pa.string())
    values = np.empty(2 * m, dtype=object)
    values[0::2] = np.asarray(branch.to_numpy(zero_copy_only=False), dtype=object)
    values[1::2] = second_value
    event_map = pa.MapArray.from_arrays(
        pa.array(np.arange(0, 2 * m + 1, 2, dtype=np.int32)), _flat(keys), _flat(pa.array(values, pa.string()))
    )
    seconds = rng.integers(0, 86_400, size=m)
    ts = np.datetime64(datetime(day.year, day.month, day.day), "us") + (seconds * 1_000_000).astype(
        "timedelta64[us]"
    )
    return pa.table(
        {
            "submission_date": pa.array(np.full(m, np.datetime64(day, "D"))),
            "timestamp": pa.array(ts),
            "client_id": client_id.take(take),
            "sample_id": pa.array(sample_id[idx]),
            "normalized_channel": channel.take(take),
            "country": country.take(take),
            "os": os_arr.take(take),
            "app_version": version.take(take),
            "event_process": pa.array(np.full(m, "parent", dtype=object), pa.string()),
            "event_timestamp": pa.array(rng.integers(1_000, 5_000_000, size=m)),
            "event_category": pa.array(np.full(m, "normandy", dtype=object), pa.string()),
            "event_method": pa.array(np.full(m, method, dtype=object), pa.string()),
            "event_object": pa.array(np.full(m, "nimbus_experiment", dtype=object), pa.string()),
            "event_string_value": pa.array(np.full(m, exp.slug, dtype=object), pa.string()),
            "event_map_values": event_map,
            "experiments": experiments,
        },
        schema=EVENTS_SCHEMA,
    )
