"""The aggregates' input: decoded main pings in a table shaped like BigQuery's
`payload_bytes_decoded.telemetry_telemetry__main_v4`, and `load-pings` that fills it from JSON lines.

Columns (the same names on BigQuery and locally, where the table is Parquet part files):

    submission_timestamp TIMESTAMP, document_id STRING, sample_id INT64, normalized_channel STRING,
    normalized_app_name STRING,
    metadata STRUCT<uri STRUCT<app_name, app_version, app_update_channel, app_build_id STRING>>,
    payload STRING  -- the ping document as Telemetry sends it (JSON text: meta, application,
                       environment, payload...)

`load_pings` reads one decoded ping per line (the shape python_mozaggregator's tests generate), checks each
(a bad one is counted, logged with its file, line, document and reason, and skipped; the others load) and
appends them in chunks. The production filter of the source query (which applications, channels, samples
are aggregated) is `SOURCE_FILTER`, applied by the aggregation's query, never here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jetstream_assets.warehouse.base import Warehouse

logger = logging.getLogger("jetstream_assets.aggregates")

PINGS_DATASET = "payload_bytes_decoded"
PINGS_TABLE = "telemetry_telemetry__main_v4"
COLUMNS = ("submission_timestamp", "document_id", "sample_id", "normalized_channel", "normalized_app_name",
           "metadata", "payload")
CHANNELS = ("release", "beta", "nightly", "aurora", "esr")
# what the aggregates service read: pings of these channels with a sample id (every sample, every application)
SOURCE_FILTER = "sample_id IS NOT NULL AND normalized_channel IN ('nightly', 'aurora', 'beta', 'release')"
MAX_DOCUMENT_BYTES = 8_000_000
MAX_KEYS = 1_000  # per keyed histogram / keyed scalar / histograms object
MAX_BUCKET_INDEX = 2**31 - 1
CHUNK_ROWS = 20_000
_SECTIONS = ("histograms", "keyedHistograms", "scalars", "keyedScalars", "simpleMeasurements")


class PingError(ValueError):
    """One ping cannot be aggregated; the message says why."""


@dataclass
class LoadReport:
    """What `load_pings` did."""

    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> pings
    dates: Counter = field(default_factory=Counter)  # YYYY-MM-DD -> pings loaded

    def lines(self) -> list[str]:
        days = ", ".join(f"{d} ({n:,})" for d, n in sorted(self.dates.items())) or "none"
        out = [f"{self.loaded:,} pings loaded; submission dates: {days}"]
        if self.skipped:
            out.append(f"{sum(self.skipped.values()):,} pings skipped: "
                       + "; ".join(f"{reason} ({n:,})" for reason, n in self.skipped.most_common()))
        return out


def _text(section: dict, name: str, where: str) -> str:
    value = section.get(name)
    if not isinstance(value, str) or not value:
        raise PingError(f"{where}.{name} is missing or not text")
    return value


def _object(parent: dict, name: str, where: str, required: bool = True) -> dict | None:
    value = parent.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise PingError(f"{where}.{name} is {'missing' if value is None else type(value).__name__}, not an object")
    return value


def _check_histograms(section: dict, where: str, keyed: bool) -> None:
    if len(section) > MAX_KEYS * 10:
        raise PingError(f"{where} has {len(section):,} histograms")
    for name, value in section.items():
        histograms = value
        if keyed:
            if not isinstance(value, dict):
                raise PingError(f"{where}.{name} is {type(value).__name__}, not an object of keyed histograms")
            if len(value) > MAX_KEYS:
                raise PingError(f"keyed histogram {where}.{name} has {len(value):,} keys (at most {MAX_KEYS:,})")
            histograms = value.values()
        else:
            histograms = (value,)
        for histogram in histograms:
            values = histogram.get("values") if isinstance(histogram, dict) else None
            if not isinstance(values, dict):
                continue  # skipped by the aggregation, as the service does
            if len(values) > MAX_KEYS * 10:
                raise PingError(f"histogram {where}.{name} has {len(values):,} buckets")
            for key in values:
                try:
                    index = int(key)
                except (TypeError, ValueError):
                    continue  # non-integer bucket keys are skipped, as the service does
                if not 0 <= index <= MAX_BUCKET_INDEX:
                    raise PingError(f"histogram {where}.{name} has an absurd bucket index {str(key)[:30]!r}")


def _check_payload(payload: dict, where: str) -> None:
    for section in _SECTIONS:
        value = payload.get(section)
        if value is not None and not isinstance(value, dict):
            raise PingError(f"{where}.{section} is {type(value).__name__}, not an object")
    for section, keyed in (("histograms", False), ("keyedHistograms", True)):
        if isinstance(payload.get(section), dict):
            _check_histograms(payload[section], f"{where}.{section}", keyed)
    keyed_scalars = payload.get("keyedScalars") or {}
    for name, value in keyed_scalars.items():
        if isinstance(value, dict) and len(value) > MAX_KEYS:
            raise PingError(f"keyed scalar {where}.keyedScalars.{name} has {len(value):,} keys (at most {MAX_KEYS:,})")


def ping_row(document: dict, document_id: str) -> dict:
    """The table row of one decoded ping (its text stored as `payload`), or PingError naming the problem."""
    meta = _object(document, "meta", "ping")
    day = meta.get("submissionDate")
    try:
        submitted = dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        raise PingError("meta.submissionDate is missing or not a YYYYMMDD date") from None
    sample_id = meta.get("sampleId")
    if isinstance(sample_id, bool) or not isinstance(sample_id, (int, float)) or not 0 <= sample_id < 100:
        raise PingError("meta.sampleId is missing or not a number from 0 to 99")
    application = _object(document, "application", "ping")
    fields = {f: _text(application, f, "application") for f in ("channel", "version", "buildId", "name", "architecture")}
    system = _object(_object(document, "environment", "ping"), "system", "environment")
    os_info = _object(system, "os", "environment.system")
    if not isinstance(os_info.get("name"), str) or not isinstance(os_info.get("version"), (str, int, float)):
        raise PingError("environment.system.os.name or .version is missing or not text")
    payload = _object(document, "payload", "ping")
    _check_payload(payload, "payload")
    children = payload.get("childPayloads")
    if children is not None:
        if not isinstance(children, list):
            raise PingError(f"payload.childPayloads is {type(children).__name__}, not a list")
        for index, child in enumerate(children[:100]):
            if not isinstance(child, dict):
                raise PingError(f"payload.childPayloads[{index}] is not an object")
            _check_payload(child, f"payload.childPayloads[{index}]")
    processes = _object(payload, "processes", "payload", required=False) or {}
    for process, section in processes.items():
        if isinstance(section, dict):
            _check_payload(section, f"payload.processes.{process}")
    channel = fields["channel"]
    return {
        "submission_timestamp": submitted,
        "document_id": document_id,
        "sample_id": int(sample_id),
        "normalized_channel": channel if channel in CHANNELS else "Other",
        "normalized_app_name": fields["name"],
        "metadata": {"uri": {"app_name": fields["name"], "app_version": fields["version"],
                             "app_update_channel": channel, "app_build_id": fields["buildId"]}},
    }


def document_id_of(document: dict, line: str) -> str:
    """The ping's own id when it has one (`id`, or `meta.documentId`), else one derived from its text."""
    for value in (document.get("id"), (document.get("meta") or {}).get("documentId")):
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return str(uuid.UUID(hashlib.sha256(line.encode()).hexdigest()[:32]))


def read_pings(path: Path, report: LoadReport) -> Iterator[dict]:
    """Rows of the good pings of a JSON-lines file; bad ones are counted in `report` and logged."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path.name}:{number}"
            if len(raw) > MAX_DOCUMENT_BYTES:
                _skip(report, where, "?", f"larger than {MAX_DOCUMENT_BYTES:,} bytes")
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                document = json.loads(line)
            except (ValueError, RecursionError) as e:
                _skip(report, where, "?", f"invalid JSON ({str(e)[:80]})")
                continue
            if not isinstance(document, dict):
                _skip(report, where, "?", "not a JSON object")
                continue
            document_id = document_id_of(document, line)
            try:
                row = ping_row(document, document_id)
            except PingError as e:
                _skip(report, where, document_id, str(e))
                continue
            except RecursionError:
                _skip(report, where, document_id, "nested too deeply")
                continue
            row["payload"] = line
            report.loaded += 1
            report.dates[row["submission_timestamp"].date().isoformat()] += 1
            yield row


def _skip(report: LoadReport, where: str, document_id: str, reason: str) -> None:
    kind = reason.split(" (")[0] if reason.startswith("invalid JSON") else reason
    report.skipped[kind] += 1
    logger.warning("%s document %s skipped: %s", where, document_id, reason)


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))


def append_pings(warehouse: Warehouse, rows: Iterable[dict], chunk_rows: int = CHUNK_ROWS) -> int:
    """Append rows (dicts of COLUMNS) to the ping table, creating it when needed; returns rows written."""
    prepare = getattr(warehouse, "ensure_main_ping_table", None)
    if prepare is not None:  # BigQuery: the table's nested schema cannot be inferred from a DataFrame
        prepare(PINGS_TABLE, PINGS_DATASET)
    written = 0
    for chunk in _chunks(rows, chunk_rows):
        warehouse.append_rows(PINGS_TABLE, frame(chunk), dataset=PINGS_DATASET)
        written += len(chunk)
    return written


def load_pings(warehouse: Warehouse, path: str | os.PathLike, chunk_rows: int = CHUNK_ROWS) -> LoadReport:
    """`jetstream-assets aggregates load-pings FILE.jsonl`: append the file's good pings to the ping table."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such ping file: {path} (one decoded main ping per line, JSON).")
    report = LoadReport()
    append_pings(warehouse, read_pings(path, report), chunk_rows)
    return report
