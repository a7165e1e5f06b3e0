"""Dry runs of a file's SQL through the `Warehouse` (DuckDB EXPLAIN locally, a dry run on BigQuery), and
the isolation of a failing query to the metric, segment or enrollment setting that breaks it (halving).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Protocol

import attr
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config.limits import check_deadline
from jetstream_assets.sql.queries import enrollments_sql, mozanalysis_experiment, to_data_source
from jetstream_assets.validation.report import LOCAL_FUNCTION, MISSING_TABLE, SQL, Problem
from jetstream_assets.validation.sql import Query, data_source_queries, metrics_query
from jetstream_assets.validation.targets import Target, locate, own_line
from jetstream_assets.warehouse.errors import WarehouseError

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


class Engine(Protocol):
    def dry_run(self, sql: str) -> None: ...


class DryRuns:
    """Dry runs through an engine (a Warehouse, or the synthetic engine), each distinct SQL once per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._seen: dict[str, str | None] = {}

    def __call__(self, sql: str) -> str | None:
        """The engine's error for `sql`, None when it compiles."""
        check_deadline()  # a file whose isolation needs endless dry runs stops here (LimitExceeded)
        if sql not in self._seen:
            try:
                self.engine.dry_run(sql)
                self._seen[sql] = None
            except WarehouseError as e:
                self._seen[sql] = str(e)
            except Exception as e:  # noqa: BLE001 - any engine error is a finding, not a crash
                self._seen[sql] = f"{type(e).__name__}: {e}"
        return self._seen[sql]


def dry_run_target(target: Target, dry_run: DryRuns) -> None:
    queries = list(target.queries)
    while queries:
        query = queries.pop(0)
        target.report.dry_runs += 1
        error = dry_run(query.sql)
        if error is None:
            continue
        if query.parts:  # a bundle of data sources: each on its own says which one fails
            queries[:0] = data_source_queries(target, query.basis, dict(query.parts), shared=query.shared)
        elif query.label == "enrollments":
            target.report.problems += _isolate_enrollments(target, dry_run, error)
        else:
            target.report.problems += _isolate_metrics(target, dry_run, query, error)


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


def _data_source_problem(target: Target, dry_run: DryRuns, query: Query) -> Problem | None:
    """A data source whose own SQL does not compile (e.g. a function missing in an experiment's
    `[data_sources.x]` override) is blamed once, on its definition, not on every metric reading it."""
    source = next(
        (m.data_source for s in query.names for m in _metrics_named(target, s)
         if m.data_source is not None and m.data_source.name == query.data_source),
        None,
    )
    if source is None:
        return None
    try:
        dataset = mozanalysis_experiment(target.resolved).app_id
        from_expr = to_data_source(source).from_expr_for(dataset)
    except Exception:  # noqa: BLE001 - mozanalysis renders it while building the metrics query anyway
        return None
    target.report.dry_runs += 1
    error = dry_run(f"SELECT * FROM {from_expr} AS ds")
    if error is None:
        return None
    kind, cause = _classify(error)
    file, line = locate(target, ["data_sources", source.name])
    return Problem(file, f"data_sources.{source.name}", f"data source {source.name!r}: {cause}", kind, line)


def _metrics_named(target: Target, name: str):
    for summaries in target.resolved.config.metrics.values():
        for summary in summaries:
            if summary.metric.name == name:
                yield summary.metric
                yield from (d.metric for d in summary.metric.depends_on or [])


def _isolate_metrics(target: Target, dry_run: DryRuns, query: Query, error: str) -> list[Problem]:
    """Blame a failing metrics query (one data source) on that data source's definition, or on the
    metrics that break it (halving the metric list).

    A metric or data source already blamed for the other basis is left out (it breaks both the same way)."""
    resolved, basis = target.resolved, query.basis
    blamed = {p.field for p in target.report.problems if p.kind in (SQL, LOCAL_FUNCTION, MISSING_TABLE)}
    if f"data_sources.{query.data_source}" in blamed:
        return []
    if (problem := _data_source_problem(target, dry_run, query)) is not None:
        return [problem]
    names = list(query.names)
    known = [n for n in names if f"metrics.{n}" in blamed]
    rest = [n for n in names if n not in known]

    def trial(subset: list[str]) -> str | None:
        sql = metrics_query(resolved, target.limits, basis, subset)
        if sql is None:
            return None
        target.report.dry_runs += 1
        return dry_run(sql)

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


def _isolate_enrollments(target: Target, dry_run: DryRuns, error: str) -> list[Problem]:
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
        return dry_run(sql)

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
