"""Synthetic main pings: what the telemetry aggregates are computed from in the demo and the tests.

A main ping carries histograms, keyed histograms, scalars and keyed scalars for each process (parent,
content, gpu). The table `telemetry.main_pings` holds them flattened, one row per (ping, process, probe,
key), with the ping's environment on every row:

    submission_date DATE, document_id, client_id, app_name, app_version, app_build_id, normalized_channel,
    architecture, os, os_version, process, probe, probe_type, key (NULL unless keyed),
    sum INT64, hist_values ARRAY<STRUCT<key INT64, value INT64>>

`hist_values` is the ping's histogram as Firefox sends it (bucket lower bound -> samples, non-empty buckets
only); a count histogram sends `[(0, n)]`; a scalar has no `hist_values` and its value in `sum`.

The world: clients keep their channel, application, OS, OS version and architecture; release trains move
every 28 days (nightly = release + 2, beta = release + 1), nightly builds twice a day, beta every other day,
release every 14 days, and a ping comes from a build a few days old (older on release). The GPU process
exists on Windows only and Fennec (Android) has no GPU process. All of it is numpy over all pings of a day,
drawn from one seeded generator, so the same arguments always give the same pings.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jetstream_assets.aggregates.probes import DEMO_REGISTRY, Probe, ProbeRegistry
from jetstream_assets.warehouse.base import Warehouse
from jetstream_assets.warehouse.local import LocalWarehouse

PINGS_DATASET = "telemetry"
PINGS_TABLE = "main_pings"
MAX_PINGS_PER_DAY = 1_000_000
MAX_DAYS = 400

HIST_VALUES_TYPE = pa.list_(pa.struct([("key", pa.int64()), ("value", pa.int64())]))
PING_SCHEMA = pa.schema(
    [
        ("submission_date", pa.date32()),
        ("document_id", pa.string()),
        ("client_id", pa.string()),
        ("app_name", pa.string()),
        ("app_version", pa.string()),
        ("app_build_id", pa.string()),
        ("normalized_channel", pa.string()),
        ("architecture", pa.string()),
        ("os", pa.string()),
        ("os_version", pa.string()),
        ("process", pa.string()),
        ("probe", pa.string()),
        ("probe_type", pa.string()),
        ("key", pa.string()),
        ("sum", pa.int64()),
        ("hist_values", HIST_VALUES_TYPE),
    ]
)

CHANNELS = ("nightly", "beta", "release")
_CHANNEL_P = (0.12, 0.18, 0.70)
_TRAIN_EPOCH = dt.date(2024, 1, 23)
_RELEASE_AT_EPOCH = 122
_TRAIN_DAYS = 28
# build cadence (days between builds, offset) and mean build age of a ping, per channel
_BUILD_EVERY = {"nightly": 1, "beta": 2, "release": 14}
_BUILD_TIMES = {"nightly": ("093012", "214301"), "beta": ("181203",), "release": ("100512",)}
_MEAN_BUILD_AGE = {"nightly": 1.5, "beta": 4.0, "release": 10.0}

# (application, os, weight, os versions with weights, architectures with weights)
_PLATFORMS = (
    ("Firefox", "Windows_NT", 0.62, (("10.0", 0.82), ("6.1", 0.12), ("6.3", 0.06)),
     (("x86-64", 0.80), ("x86", 0.15), ("aarch64", 0.05))),
    ("Firefox", "Darwin", 0.18, (("24.1.0", 0.45), ("23.6.0", 0.35), ("22.6.0", 0.20)),
     (("aarch64", 0.60), ("x86-64", 0.40))),
    ("Firefox", "Linux", 0.10, (("6.8", 0.50), ("6.1", 0.30), ("5.15", 0.20)), (("x86-64", 1.0),)),
    ("Fennec", "Android", 0.10, (("34", 0.50), ("33", 0.30), ("30", 0.20)), (("aarch64", 0.80), ("arm", 0.20))),
)


class PingsError(ValueError):
    """The arguments given to the ping generator cannot produce pings; the message says which and why."""


def release_version(on: dt.date) -> int:
    """The release train's major version on a date (a new one every 28 days)."""
    return _RELEASE_AT_EPOCH + (on - _TRAIN_EPOCH).days // _TRAIN_DAYS


def channel_version(channel: str, on: dt.date) -> int:
    return release_version(on) + {"release": 0, "beta": 1, "nightly": 2}[channel]


def app_version_string(channel: str, major: int) -> str:
    return f"{major}.0a1" if channel == "nightly" else f"{major}.0"


@dataclass(frozen=True)
class _Clients:
    """Fixed attributes of each client (indices into the value tables below)."""

    client_id: pa.Array
    channel: np.ndarray
    app: np.ndarray
    os: np.ndarray
    os_version: np.ndarray
    arch: np.ndarray


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    """UUID-looking strings, built without a per-row Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = hexdigits[raw >> 4]
    nibbles[:, 1::2] = hexdigits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((slice(0, 8), slice(0, 8)), (slice(9, 13), slice(8, 12)), (slice(14, 18), slice(12, 16)),
                     (slice(19, 23), slice(16, 20)), (slice(24, 36), slice(20, 32))):
        out[:, dst] = nibbles[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.tobytes())])


_OS_NAMES = [p[1] for p in _PLATFORMS]
_APP_NAMES = ["Firefox", "Fennec"]
_OS_VERSIONS = sorted({v for p in _PLATFORMS for v, _ in p[3]})
_ARCHS = sorted({a for p in _PLATFORMS for a, _ in p[4]})


def _clients(n: int, seed: int) -> _Clients:
    rng = np.random.default_rng([seed, 1])
    channel = rng.choice(len(CHANNELS), size=n, p=_CHANNEL_P)
    weights = np.array([p[2] for p in _PLATFORMS])
    platform = rng.choice(len(_PLATFORMS), size=n, p=weights / weights.sum())
    app = np.empty(n, dtype=np.int32)
    os_version = np.empty(n, dtype=np.int32)
    arch = np.empty(n, dtype=np.int32)
    for index, (app_name, _, _, versions, archs) in enumerate(_PLATFORMS):
        mask = platform == index
        count = int(mask.sum())
        app[mask] = _APP_NAMES.index(app_name)
        vp = np.array([w for _, w in versions])
        os_version[mask] = np.array([_OS_VERSIONS.index(v) for v, _ in versions])[
            rng.choice(len(versions), size=count, p=vp / vp.sum())]
        ap = np.array([w for _, w in archs])
        arch[mask] = np.array([_ARCHS.index(a) for a, _ in archs])[rng.choice(len(archs), size=count, p=ap / ap.sum())]
    return _Clients(_uuids(rng, n), channel, app, platform.astype(np.int32), os_version, arch)


def _builds(channel: str, day: dt.date, ages: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
    """(build ids, app versions, index per ping) for pings of a channel submitted on `day`, `ages` days old."""
    every = _BUILD_EVERY[channel]
    times = _BUILD_TIMES[channel]
    ordinal = day.toordinal() - ages
    build_ordinal = ordinal - (ordinal % every)
    slot = (ages % len(times)) if len(times) > 1 else np.zeros_like(ages)
    keys = build_ordinal * 10 + slot
    unique, inverse = np.unique(keys, return_inverse=True)
    build_ids, versions = [], []
    for key in unique:
        built = dt.date.fromordinal(int(key // 10))
        build_ids.append(built.strftime("%Y%m%d") + times[int(key % 10)])
        versions.append(app_version_string(channel, channel_version(channel, built)))
    return build_ids, versions, inverse


def _string_column(codes: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(values, pa.string())
    ).dictionary_decode()


def _histogram_samples(probe: Probe, n: int, rng: np.random.Generator) -> np.ndarray:
    sim = probe.sim
    if probe.kind in ("exponential", "linear"):
        values = rng.lognormal(np.log(sim["median"]), sim["spread"], size=n)
        return np.rint(values).astype(np.int64)
    if probe.kind == "enumerated":
        p = np.array(sim["p"], dtype=float)
        return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)
    if probe.kind == "boolean":
        return (rng.random(n) < sim["p"]).astype(np.int64)
    raise PingsError(f"Probe {probe.name}: kind {probe.kind!r} has no sample generator")


def _entries(probe: Probe, n_entries: int, rng: np.random.Generator) -> tuple[np.ndarray, pa.Array | None]:
    """(sum per entry, hist_values per entry or None) for `n_entries` (ping, process, key) entries."""
    sim = probe.sim
    if probe.is_scalar:
        if probe.kind == "boolean":
            return (rng.random(n_entries) < sim["p"]).astype(np.int64), None
        mean = float(sim["mean"])
        return rng.negative_binomial(2, 2.0 / (2.0 + mean), size=n_entries).astype(np.int64), None
    if probe.kind == "count":
        counts = 1 + rng.poisson(max(float(sim["mean"]) - 1.0, 0.0), size=n_entries).astype(np.int64)
        offsets = np.arange(n_entries + 1, dtype=np.int32)
        structs = pa.StructArray.from_arrays(
            [pa.array(np.zeros(n_entries, dtype=np.int64)), pa.array(counts)], names=["key", "value"])
        return counts, pa.ListArray.from_arrays(pa.array(offsets), structs, type=HIST_VALUES_TYPE)
    per_entry = 1 + rng.poisson(max(float(sim["samples"]) - 1.0, 0.0), size=n_entries)
    owner = np.repeat(np.arange(n_entries, dtype=np.int64), per_entry)
    samples = _histogram_samples(probe, len(owner), rng)
    sums = np.bincount(owner, weights=samples, minlength=n_entries).astype(np.int64)
    bounds = np.asarray(probe.buckets, dtype=np.int64)
    n_buckets = len(bounds)
    cells, counts = np.unique(owner * n_buckets + probe.bucket_index(samples), return_counts=True)
    entry_of_cell = cells // n_buckets
    offsets = np.concatenate([[0], np.cumsum(np.bincount(entry_of_cell, minlength=n_entries))]).astype(np.int32)
    structs = pa.StructArray.from_arrays(
        [pa.array(bounds[cells % n_buckets]), pa.array(counts.astype(np.int64))], names=["key", "value"])
    return sums, pa.ListArray.from_arrays(pa.array(offsets), structs, type=HIST_VALUES_TYPE)


def generate_day(
    day: dt.date, n_pings: int, seed: int = 0, registry: ProbeRegistry = DEMO_REGISTRY, clients: int | None = None
) -> pa.Table:
    """The main pings submitted on `day`, flattened (see the module docstring); deterministic per (day, seed)."""
    if not 1 <= n_pings <= MAX_PINGS_PER_DAY:
        raise PingsError(f"pings per day must be between 1 and {MAX_PINGS_PER_DAY:,} (got {n_pings}).")
    pool = _clients(clients or max(2 * n_pings, 50), seed)
    rng = np.random.default_rng([seed, day.toordinal()])
    who = rng.integers(0, len(pool.channel), size=n_pings)
    channel = pool.channel[who]
    # one entry per build seen today, per channel: its build id and the version it was built as
    build_code = np.zeros(n_pings, dtype=np.int32)
    build_values: list[str] = []
    version_values: list[str] = []
    for index, name in enumerate(CHANNELS):
        mask = channel == index
        ages = rng.geometric(1.0 / (1.0 + _MEAN_BUILD_AGE[name]), size=int(mask.sum())) - 1
        ids, versions, inverse = _builds(name, day, ages)
        build_code[mask] = inverse + len(build_values)
        build_values.extend(ids)
        version_values.extend(versions)
    ping_columns = {
        "document_id": _uuids(rng, n_pings),
        "client_id": pa.array(pool.client_id).take(pa.array(who)),
        "app_name": _string_column(pool.app[who], _APP_NAMES),
        "app_version": _string_column(build_code, version_values),
        "app_build_id": _string_column(build_code, build_values),
        "normalized_channel": _string_column(channel, list(CHANNELS)),
        "architecture": _string_column(pool.arch[who], _ARCHS),
        "os": _string_column(pool.os[who], _OS_NAMES),
        "os_version": _string_column(pool.os_version[who], _OS_VERSIONS),
    }
    windows = pool.os[who] == _OS_NAMES.index("Windows_NT")
    chunks = []
    for probe in registry:
        for process in probe.processes:
            has_process = windows if process == "gpu" else np.ones(n_pings, dtype=bool)
            for key in probe.keys or (None,):
                carries = has_process & (rng.random(n_pings) < probe.sim["presence"])
                pings = np.flatnonzero(carries)
                if not len(pings):
                    continue
                sums, hist = _entries(probe, len(pings), rng)
                take = pa.array(pings)
                columns = {name: column.take(take) for name, column in ping_columns.items()}
                n = len(pings)
                columns.update(
                    submission_date=pa.array(np.full(n, day), pa.date32()),
                    process=_string_column(np.zeros(n), [process]),
                    probe=_string_column(np.zeros(n), [probe.name]),
                    probe_type=_string_column(np.zeros(n), [probe.probe_type]),
                    key=pa.nulls(n, pa.string()) if key is None else _string_column(np.zeros(n), [key]),
                    sum=pa.array(sums),
                    hist_values=hist if hist is not None else pa.nulls(n, HIST_VALUES_TYPE),
                )
                chunks.append(pa.table([columns[f.name] for f in PING_SCHEMA], schema=PING_SCHEMA))
    return pa.concat_tables(chunks) if chunks else PING_SCHEMA.empty_table()


def pings_path(warehouse: Warehouse) -> Path:
    if not isinstance(warehouse, LocalWarehouse):
        raise PingsError(
            "Synthetic pings are written to the local warehouse only; in production the aggregates read "
            f"the real {PINGS_DATASET}.{PINGS_TABLE} table. Unset JETSTREAM_BIGQUERY_PROJECT to use the demo."
        )
    return warehouse.table_path(PINGS_TABLE, PINGS_DATASET)


def write_pings(
    warehouse: Warehouse,
    start: dt.date,
    end: dt.date,
    pings_per_day: int = 2_000,
    seed: int = 0,
    registry: ProbeRegistry = DEMO_REGISTRY,
) -> int:
    """Replace `telemetry.main_pings` with the pings submitted from `start` to `end` (inclusive).

    The file is written beside its final name and renamed at the end, so a pipeline reading the old
    pings never sees half a table. Returns the number of rows (one per ping, process, probe and key).
    """
    days = (end - start).days + 1
    if days < 1:
        raise PingsError(f"The ping date range is empty: start {start} is after end {end}.")
    if days > MAX_DAYS:
        raise PingsError(f"At most {MAX_DAYS} days of pings at once (asked for {days}).")
    if not 1 <= pings_per_day <= MAX_PINGS_PER_DAY:
        raise PingsError(f"pings_per_day must be between 1 and {MAX_PINGS_PER_DAY:,} (got {pings_per_day}).")
    target = pings_path(warehouse)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, PING_SCHEMA, compression="zstd") as writer:
            for offset in range(days):
                table = generate_day(start + dt.timedelta(days=offset), pings_per_day, seed, registry)
                writer.write_table(table, row_group_size=256 * 1024)
                rows += table.num_rows
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def write_demo_pings(
    home: str | os.PathLike | None = None,
    today: dt.date | None = None,
    days: int = 14,
    pings_per_day: int = 2_000,
    seed: int = 0,
) -> dict:
    """The demo's pings: the `days` days before `today` into the home's local warehouse.

    Returns what was written (dates, rows, file) for the demo to print; the aggregates job then
    materializes those dates (`jetstream_assets.assets.aggregates.materialize_aggregates`).
    """
    from jetstream_assets.resources import home_dir
    from jetstream_assets.warehouse.local import LocalWarehouse as _Local

    today = today or dt.date.today()
    warehouse = _Local(root=str(home_dir(home) / "warehouse"))
    start, end = today - dt.timedelta(days=days), today - dt.timedelta(days=1)
    rows = write_pings(warehouse, start, end, pings_per_day=pings_per_day, seed=seed)
    return {"start": start, "end": end, "rows": rows, "path": str(pings_path(warehouse))}
