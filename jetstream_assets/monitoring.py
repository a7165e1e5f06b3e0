"""Monitoring of every analysis step: the `logs` and `query_cost` tables and `errors/errors_<slug>.json`.

Jetstream writes its WARNING and ERROR log records to a logs table (with the experiment, metric,
statistic, basis, segment and period they concern), keeps the cost of its queries, and after each
analysis exports an experiment's recent log rows for Experimenter to show beside the results. Here
`collect` does the same around one asset step: while it is open, records of the "jetstream_assets"
logger and every `Warehouse.run_query` of the step are kept in memory; on exit (also when the step
raises) they are appended to the monitoring dataset, one append per table, and the errors export of
every experiment of the step is rewritten from the logs table.

Monitoring never breaks an analysis: a failure to write it is reported on the Python logger
"jetstream_monitoring" (and the step's Dagster log when given) and swallowed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jetstream_assets.exports.errors import LOG_COLUMNS, errors_export, errors_window_start
from jetstream_assets.exports.store import ExportStore, errors_path
from jetstream_assets.warehouse.base import QueryResult, Warehouse, query_listener

LOGS_TABLE = "logs"
QUERY_COST_TABLE = "query_cost"
LOG_SOURCE = "jetstream"
QUERY_COST_COLUMNS = [
    "submission_timestamp",
    "destination_table",
    "query",
    "total_bytes_processed",
    "duration_seconds",
    "cost_usd",
]
# the logger every analysis module logs to (children such as jetstream_assets.experimenter propagate)
ANALYSIS_LOGGER = "jetstream_assets"
# where monitoring reports its own trouble: outside ANALYSIS_LOGGER, so it never records itself
problems_logger = logging.getLogger("jetstream_monitoring")

# Jetstream's exception names for the validation skips, so the errors export filters the expected ones
# (ended, enrollment not complete) as Jetstream does.
SKIP_EXCEPTION_TYPES = {
    "no_slug": "NoSlugException",
    "skip": "ExplicitSkipException",
    "no_enrollment_period": "NoEnrollmentPeriodException",
    "no_start_date": "NoStartDateException",
    "ended": "EndedException",
    "rollout": "RolloutSkipException",
    "unsupported_app": "UnsupportedApplicationException",
    "enrollment_not_complete": "EnrollmentNotCompleteException",
}
_EXTRA_FIELDS = ("experiment", "metric", "statistic", "analysis_basis", "segment", "analysis_period")
_MAX_EXCEPTION_CHARS = 10_000
_MAX_QUERY_CHARS = 100_000


def skip_exception_type(code: str) -> str | None:
    """Jetstream's exception name for a validation skip code of `runnable.check_runnable`."""
    return SKIP_EXCEPTION_TYPES.get(code)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = getattr(value, "value", value)  # enums such as AnalysisBasis / AnalysisPeriod
    return str(value)


# Fields for records that do not carry them (code that knows no experiment, e.g. the statistics engine).
_log_context: ContextVar[dict[str, Any]] = ContextVar("jetstream_log_context", default={})


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within this block, log rows lacking experiment, metric, statistic, analysis_basis, segment or
    analysis_period take them from `fields` (a record's own `extra` wins)."""
    unknown = set(fields) - set(_EXTRA_FIELDS)
    if unknown:
        raise TypeError(f"log_context() takes only {', '.join(_EXTRA_FIELDS)}; got {sorted(unknown)}")
    token = _log_context.set({**_log_context.get(), **fields})
    try:
        yield
    finally:
        _log_context.reset(token)


def log_row(record: logging.LogRecord, source: str = LOG_SOURCE) -> dict[str, Any]:
    """One logs-table row: the fields from the record's `extra` (else the current `log_context`),
    exception text and type from exc_info (or an explicit `exception_type` extra, used for validation
    skips that raise nothing)."""
    defaults = _log_context.get()
    exception = exception_type = None
    if record.exc_info and record.exc_info[0] is not None:
        exception = "".join(traceback.format_exception(*record.exc_info))[-_MAX_EXCEPTION_CHARS:]
        exception_type = record.exc_info[0].__name__
    row = {
        "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC),
        "source": getattr(record, "source", None) or source,
        **{
            name: _text(_first(getattr(record, name, None), defaults.get(name)))
            for name in _EXTRA_FIELDS
        },
        "message": record.getMessage(),
        "log_level": record.levelname,
        "exception": exception,
        "filename": record.filename,
        "func_name": record.funcName,
        "exception_type": exception_type or _text(getattr(record, "exception_type", None)),
    }
    return row


def logs_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Log rows with the logs table's column types (text columns stay text even when all empty)."""
    df = pd.DataFrame(list(rows), columns=LOG_COLUMNS)
    for column in LOG_COLUMNS:
        if column == "timestamp":
            df[column] = pd.to_datetime(df[column], utc=True)
        else:
            df[column] = df[column].astype("string")
    return df


def query_cost_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=QUERY_COST_COLUMNS)
    df["submission_timestamp"] = pd.to_datetime(df["submission_timestamp"], utc=True)
    df["destination_table"] = df["destination_table"].astype("string")
    df["query"] = df["query"].astype("string")
    df["total_bytes_processed"] = df["total_bytes_processed"].astype("Int64")
    df["duration_seconds"] = df["duration_seconds"].astype("float64")
    df["cost_usd"] = df["cost_usd"].astype("float64")
    return df


@dataclass
class Collector:
    """What one step logged and queried, and, after it closed, what monitoring wrote."""

    warehouse: Warehouse
    export_store: ExportStore | None
    experiments: list[str]
    analysis_start_time: dt.datetime
    enrollment_end: Callable[[str], dt.date | None] | None = None
    source: str = LOG_SOURCE
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    query_rows: list[dict[str, Any]] = field(default_factory=list)
    errors_files: dict[str, str] = field(default_factory=dict)  # slug -> URI of its errors export
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_experiments(self, slugs: Iterable[str]) -> None:
        for slug in slugs:
            if slug not in self.experiments:
                self.experiments.append(slug)

    def record_log(self, record: logging.LogRecord) -> None:
        row = log_row(record, self.source)
        with self._lock:
            self.log_rows.append(row)

    def record_query(
        self, warehouse: Warehouse, sql: str, result: QueryResult, submitted: dt.datetime
    ) -> None:
        destination = warehouse.table_ref(result.destination) if result.destination else None
        row = {
            "submission_timestamp": submitted,
            "destination_table": destination,
            "query": sql[:_MAX_QUERY_CHARS],
            "total_bytes_processed": int(result.bytes_processed),
            "duration_seconds": float(result.seconds),
            "cost_usd": float(result.cost_usd),
        }
        with self._lock:
            self.query_rows.append(row)

    @property
    def metadata(self) -> dict[str, Any]:
        """A summary for the step's materialization metadata."""
        found = {
            "monitoring_log_rows": len(self.log_rows),
            "monitoring_queries": len(self.query_rows),
            "monitoring_bytes_processed": sum(r["total_bytes_processed"] for r in self.query_rows),
        }
        if self.problems:
            found["monitoring_problems"] = "\n".join(self.problems)
        return found

    # -- flushing ---------------------------------------------------------------------------------
    def flush(self, log: Any = None) -> None:
        """Append the step's rows (one append per table) and rewrite the experiments' errors exports."""
        dataset = self.warehouse.monitoring_dataset
        with self._lock:
            log_rows, query_rows = list(self.log_rows), list(self.query_rows)
        appended: dict[str, bool] = {}
        for table, rows, frame in (
            (LOGS_TABLE, log_rows, logs_frame),
            (QUERY_COST_TABLE, query_rows, query_cost_frame),
        ):
            if rows:
                where = self.warehouse.table_ref(table, dataset)
                appended[table] = self._guard(
                    log, f"appending {len(rows)} row(s) to {where}",
                    lambda t=table, f=frame, r=rows: self.warehouse.append_rows(t, f(r), dataset),
                )
        if self.export_store is None or not appended.get(LOGS_TABLE, True):
            return  # an errors export without this step's rows would hide them
        for slug in self.experiments:
            self._guard(log, f"writing the errors export of {slug!r}", lambda s=slug: self._export_errors(s))

    def _export_errors(self, slug: str) -> None:
        rows = experiment_log_rows(self.warehouse, slug)
        enrollment_end = None
        if self.enrollment_end is not None:
            try:
                enrollment_end = self.enrollment_end(slug)
            except Exception:  # an experiment that cannot be read has no weekly cycle: keep the run's rows
                enrollment_end = None
        since = errors_window_start(self.analysis_start_time, enrollment_end)
        payload = errors_export(rows, experiment=slug, since=since)
        self.errors_files[slug] = self.export_store.write_json(errors_path(slug), payload)

    def _guard(self, log: Any, what: str, action: Callable[[], Any]) -> bool:
        try:
            action()
            return True
        except Exception as e:  # monitoring never breaks the analysis
            message = f"Monitoring: failed {what}: {type(e).__name__}: {e}"
            self.problems.append(message)
            problems_logger.warning(message, exc_info=True)
            if log is not None:
                with contextlib.suppress(Exception):
                    log.warning(message)
            return False


def experiment_log_rows(warehouse: Warehouse, slug: str) -> pd.DataFrame:
    """Every row of the logs table about one experiment (empty when nothing was logged yet)."""
    dataset = warehouse.monitoring_dataset
    if not warehouse.table_exists(LOGS_TABLE, dataset):
        return logs_frame([])
    literal = "'" + slug.replace("\\", "\\\\").replace("'", "\\'") + "'"  # BigQuery string literal
    return warehouse.query(
        f"SELECT * FROM `{warehouse.table_ref(LOGS_TABLE, dataset)}` WHERE experiment = {literal}"
    )


class MonitoringHandler(logging.Handler):
    """Hands WARNING-and-above records to the collector of the current step (if any).

    Installed once on the analysis logger; the collector is found through a context variable, so steps
    running in parallel threads of one process each keep their own rows.
    """

    def emit(self, record: logging.LogRecord) -> None:
        collector = _current.get()
        if collector is None:
            return
        try:
            collector.record_log(record)
        except Exception:
            self.handleError(record)


_current: ContextVar[Collector | None] = ContextVar("jetstream_monitoring_collector", default=None)
_handler_lock = threading.Lock()


def install_handler(logger_name: str = ANALYSIS_LOGGER) -> MonitoringHandler:
    """The monitoring handler of `logger_name`, added once (at WARNING) and reused by every step."""
    logger = logging.getLogger(logger_name)
    with _handler_lock:
        for handler in logger.handlers:
            if isinstance(handler, MonitoringHandler):
                return handler
        handler = MonitoringHandler(level=logging.WARNING)
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.WARNING:  # records below it never reach a handler
            logger.setLevel(logging.WARNING)
        return handler


@contextlib.contextmanager
def collect(
    warehouse: Warehouse,
    export_store: ExportStore | None = None,
    experiments: Iterable[str] = (),
    *,
    analysis_start_time: dt.datetime | None = None,
    enrollment_end: Callable[[str], dt.date | None] | None = None,
    log: Any = None,
    source: str = LOG_SOURCE,
) -> Iterator[Collector]:
    """Monitor one analysis step (see the module docstring).

    `experiments` are the slugs whose errors export is rewritten on exit (more can be added with
    `Collector.add_experiments`); `analysis_start_time` (default now) and `enrollment_end(slug)` choose
    which rows the export keeps, as Jetstream does (`errors_window_start`); `log` is the step's Dagster
    log, told when monitoring itself fails. Without an export store only the tables are written.
    """
    install_handler()
    collector = Collector(
        warehouse=warehouse,
        export_store=export_store,
        experiments=list(dict.fromkeys(experiments)),
        analysis_start_time=analysis_start_time or dt.datetime.now(dt.UTC),
        enrollment_end=enrollment_end,
        source=source,
    )
    collector_token = _current.set(collector)
    listener_token = query_listener.set(collector.record_query)
    try:
        yield collector
    finally:
        query_listener.reset(listener_token)
        _current.reset(collector_token)
        try:
            collector.flush(log)
        except Exception as e:  # belt and braces: flush guards each part already
            problems_logger.warning("Monitoring: flush failed: %s", e, exc_info=True)
