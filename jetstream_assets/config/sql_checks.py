"""SQL from a config (after Jinja) must be one read-only query over tables: the enrollment query, the exposure
signal, segments and metrics (with their data sources) are checked with `sql.safety.check_sql` while an
experiment resolves. An unsafe enrollment query or exposure signal makes the experiment unanalysable; an
unsafe segment or metric is dropped with an error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metric_config_parser.experiment import ExperimentConfiguration
from metric_config_parser.metric import AnalysisPeriod, Metric, Summary

from jetstream_assets.sql.safety import EXPRESSION, FROM, QUERY, UnsafeSQLError, check_sql

from .errors import ConfigError

if TYPE_CHECKING:
    from .resolve import _Resolver


def refuse_unsafe_sql(
    r: _Resolver, conf: ExperimentConfiguration, metrics: dict[AnalysisPeriod, list[Summary]]
) -> None:
    """Refuse SQL (after Jinja) that is not one read-only query over tables: the enrollment query or
    exposure signal make the experiment unanalysable; a segment or metric is dropped with an error."""
    hint = ("write one read-only SELECT over tables (`project.dataset.table`): no `;`, COPY, SET, DDL, "
            "DML or function that reads files or URLs")
    if conf.experiment_spec.enrollment_query and (problem := _unsafe(conf.enrollment_query, QUERY)):
        _refuse(r, "experiment.enrollment_query", ["experiment", "enrollment_query"], problem, hint)
    signal = conf.exposure_signal
    if signal is not None:
        if problem := _unsafe(signal.select_expression, EXPRESSION):
            _refuse(r, "experiment.exposure_signal.select_expression",
                    ["experiment", "exposure_signal", "select_expression"], problem, hint)
        if problem := _unsafe(signal.data_source.from_expression, FROM):
            ds = signal.data_source.name
            _refuse(r, f"data_sources.{ds}.from_expression", ["data_sources", ds], problem, hint)
    for segment in list(conf.segments):
        ds = segment.data_source.name
        for field_path, where, sql, kind in (
            (f"segments.{segment.name}.select_expression", ["segments", segment.name],
             segment.select_expression, EXPRESSION),
            (f"segments.data_sources.{ds}.from_expression", ["segments", "data_sources", ds],
             segment.data_source.from_expression, FROM),
        ):
            if problem := _unsafe(sql, kind):
                conf.segments.remove(segment)
                r.error(f"segment {segment.name!r} is refused ({field_path.rsplit('.', 1)[1]}): {problem}",
                        file=r.locate(where), field=field_path, key=True,
                        hint=hint + "; results are computed without this segment")
                break
    verdicts: dict[int, bool] = {}  # by metric: its summaries (a statistic each) share the resolved metric
    for period, summaries in metrics.items():
        kept = []
        for s in summaries:
            ok = verdicts.get(id(s.metric))
            if ok is None:
                ok = verdicts[id(s.metric)] = _metric_sql_ok(r, s.metric, hint)
            if ok:
                kept.append(s)
        metrics[period] = kept


def _metric_sql_ok(r: _Resolver, metric: Metric, hint: str) -> bool:
    for m in [metric, *(d.metric for d in metric.depends_on or [])]:
        checks = [(f"metrics.{m.name}.select_expression", ["metrics", m.name], m.select_expression,
                   EXPRESSION)]
        if m.data_source is not None:
            ds = m.data_source.name
            checks.append((f"data_sources.{ds}.from_expression", ["data_sources", ds],
                           m.data_source.from_expression, FROM))
        for field_path, where, sql, kind in checks:
            if sql is not None and (problem := _unsafe(sql, kind)):
                what = f"metric {metric.name!r}" + (f" (through {m.name!r})" if m is not metric else "")
                r.error(f"{what} is refused ({field_path.rsplit('.', 1)[1]}): {problem}",
                        file=r.locate(where), field=field_path, key=True,
                        hint=hint + "; other metrics are analysed")
                return False
    return True


def _refuse(r: _Resolver, field_path: str, where: list[str], problem: str, hint: str) -> None:
    file = r.locate(where)
    raise ConfigError(
        r.slug, f"{field_path.rsplit('.', 1)[1]} is refused: {problem}", file=file, field=field_path,
        line=r.line(file, field_path, key=True), commit=r.loaded.commit,
        hint=hint + "; the experiment is not analysed until then",
    )


def _unsafe(sql: str | None, kind: str) -> str | None:
    if not sql:
        return None
    try:
        check_sql(sql, kind)
    except UnsafeSQLError as e:
        return str(e)
    return None
