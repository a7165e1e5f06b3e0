"""Dry runs of a file's SQL through the `Warehouse` (DuckDB EXPLAIN locally, a dry run on BigQuery), and
the isolation of a failing query to the metric, segment or enrollment setting that breaks it (halving).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import tempfile

import attr
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.sql.queries import enrollments_sql
from jetstream_assets.validation.report import LOCAL_FUNCTION, MISSING_TABLE, SQL, Problem
from jetstream_assets.validation.sql import metrics_query, unique_summaries
from jetstream_assets.validation.synthetic_schemas import table_schemas
from jetstream_assets.validation.synthetic_tables import write_sample_tables
from jetstream_assets.validation.targets import Target, locate, own_line
from jetstream_assets.warehouse.base import Warehouse, WarehouseError

_MISSING_TABLE = re.compile(r"does not exist in the local warehouse|Not found: Table", re.I)
_MISSING_FUNCTION = re.compile(r"(?:Scalar |Table )?Function with name (\w+) does not exist", re.I)


def _bigquery_name(macro: str) -> str:
    """`mozfun_map_get_key` -> `mozfun.map.get_key`, `udf_x_y` -> `udf.x_y`."""
    return macro.replace("_", ".", 2 if macro.startswith("mozfun_") else 1)


def _classify(error: str) -> tuple[str, str]:
    """(kind, one-line cause) of a dry-run error."""
    first = error.strip().splitlines()[0] if error.strip() else error
    m = _MISSING_FUNCTION.search(error)
    if m and m.group(1).lower().startswith(("mozfun_", "udf_")):
        return LOCAL_FUNCTION, (
            f"the local engine has no {m.group(1)} (BigQuery function {_bigquery_name(m.group(1).lower())}): "
            "add a macro to jetstream_assets/sql/mozfun.py or validate on BigQuery"
        )
    if _MISSING_TABLE.search(error):
        if "local warehouse" in error:
            first += " (or dry-run with --synthetic: tables derived from the SQL)"
        return MISSING_TABLE, first
    return SQL, first


def _dry_run(warehouse: Warehouse, sql: str) -> str | None:
    try:
        warehouse.dry_run(sql)
    except WarehouseError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any engine error is a finding, not a crash
        return f"{type(e).__name__}: {e}"
    return None


def dry_run_target(target: Target, warehouse: Warehouse) -> None:
    for label, sql in target.queries:
        target.report.dry_runs += 1
        error = _dry_run(warehouse, sql)
        if error is None:
            continue
        if label == "enrollments":
            target.report.problems += _isolate_enrollments(target, warehouse, error)
        else:
            basis = AnalysisBasis(label.split("/", 1)[1])
            target.report.problems += _isolate_metrics(target, warehouse, basis, error)


def _culprits(items: list, error: str | None, trial) -> list[tuple[object, str]]:
    """The items that fail `trial` on their own, by halving: `trial(subset)` dry-runs a query made of
    `subset` and returns its error (None when it compiles). `error` is the known error of all items."""
    if error is None:
        return []
    if len(items) == 1:
        return [(items[0], error)]
    half = len(items) // 2
    out = []
    for part in (items[:half], items[half:]):
        out += _culprits(part, trial(part), trial)
    return out


def _isolate_metrics(
    target: Target, warehouse: Warehouse, basis: AnalysisBasis, error: str
) -> list[Problem]:
    """Blame the metrics that break a failing metrics query (halving the metric list).

    A metric already blamed for the other basis is left out (it breaks both the same way)."""

    resolved = target.resolved
    blamed = {p.field for p in target.report.problems if p.kind in (SQL, LOCAL_FUNCTION, MISSING_TABLE)}
    names = list(dict.fromkeys(
        s.metric.name for s in unique_summaries(resolved)
        if basis in s.metric.analysis_bases and s.metric.select_expression
    ))
    known = [n for n in names if f"metrics.{n}" in blamed]
    rest = [n for n in names if n not in known]

    def trial(subset: list[str]) -> str | None:
        sql = metrics_query(resolved, target.limits, basis, subset)
        if sql is None:
            return None
        target.report.dry_runs += 1
        return _dry_run(warehouse, sql)

    if known and rest:
        error = trial(rest)  # None when the blamed metrics explain this basis too
    culprits = _culprits(rest, error, trial) if rest else []
    out = []
    for name, single in culprits:
        kind, cause = _classify(single)
        file, line = locate(target, ["metrics", name])
        if basis != AnalysisBasis.ENROLLMENTS:
            cause = f"{basis.value} basis: {cause}"
        out.append(Problem(file, f"metrics.{name}", cause, kind, line))
    if not out and not known:
        kind, cause = _classify(error)
        out.append(Problem(target.display, "metrics", f"{basis.value} metrics query: {cause}", kind))
    return out


def _isolate_enrollments(target: Target, warehouse: Warehouse, error: str) -> list[Problem]:
    """Blame a failing enrollments query on segments, the exposure signal or the enrollment setup."""
    resolved = target.resolved
    conf = resolved.config.experiment

    def variant(segments, signal) -> str | None:
        trial_conf = copy.copy(conf)
        trial_conf.segments = list(segments)
        trial_conf.exposure_signal = signal
        alt = dataclasses.replace(resolved, config=attr.evolve(resolved.config, experiment=trial_conf))
        try:
            sql = enrollments_sql(alt, target.limits)
        except Exception as e:  # noqa: BLE001
            return str(e)
        target.report.dry_runs += 1
        return _dry_run(warehouse, sql)

    base_error = variant([], None)
    if base_error is not None:
        kind, cause = _classify(base_error)
        fld = "experiment.enrollment_query" if conf.enrollment_query else "experiment"
        if conf.enrollment_query and "analysis_id" in cause and "analysis_id" not in conf.enrollment_query:
            cause += (
                "; a custom enrollment_query must return `analysis_id` (mozanalysis no longer reads "
                "`client_id`): select `client_id AS analysis_id`"
            )
        return [Problem(target.display, fld, f"enrollments query: {cause}", kind, own_line(target, fld))]
    out = []
    segments = list(conf.segments)
    if segments:
        for segment, seg_error in _culprits(segments, variant(segments, None), lambda s: variant(s, None)):
            kind, cause = _classify(seg_error)
            file, line = locate(target, ["segments", segment.name])
            out.append(Problem(file, f"segments.{segment.name}", cause, kind, line))
    if conf.exposure_signal is not None and (signal_error := variant([], conf.exposure_signal)):
        kind, cause = _classify(signal_error)
        out.append(Problem(target.display, "experiment.exposure_signal", cause, kind,
                           own_line(target, "experiment.exposure_signal")))
    if not out:
        kind, cause = _classify(error)
        out.append(Problem(target.display, "experiment", f"enrollments query: {cause}", kind))
    return out



def synthetic_warehouse(targets: list[Target], folder, stack: contextlib.ExitStack) -> Warehouse:
    """A local warehouse of empty tables derived from the SQL to dry-run (a dry run needs schemas only).

    A metrics query that does not parse is replaced, for deriving tables, by its metrics one at a time:
    the parsable ones still need their tables for the dry runs that single out the broken one."""
    from jetstream_assets.warehouse.local import LocalWarehouse

    if folder is None:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="validate-config-tables-"))
    sqls = [sql for target in targets for _, sql in target.queries]
    unparsable: list[str] = []
    schemas = table_schemas(sqls, unparsable=unparsable)
    if unparsable:
        bad = set(unparsable)
        extra = []
        for target in targets:
            for label, sql in target.queries:
                if sql in bad and label.startswith("metrics/"):
                    extra += _single_metric_queries(target, AnalysisBasis(label.split("/", 1)[1]))
        schemas = table_schemas([s for s in sqls if s not in bad] + extra, unparsable=[])
    write_sample_tables(folder, [], [], clients=0, schemas=schemas)
    return LocalWarehouse(root=str(folder))


def _single_metric_queries(target: Target, basis: AnalysisBasis) -> list[str]:
    out = []
    for summary in unique_summaries(target.resolved):
        if summary.metric.select_expression and basis in summary.metric.analysis_bases:
            with contextlib.suppress(Exception):
                if sql := metrics_query(target.resolved, target.limits, basis, [summary.metric.name]):
                    out.append(sql)
    return out


