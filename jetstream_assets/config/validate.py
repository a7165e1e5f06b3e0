"""Jetstream's `validate-config`: check metric-hub files before they are merged.

For each file (experiment config, outcome, platform or experiment-type defaults, definitions) this
parses it, resolves it the way the analysis will (against the platform's defaults and definitions of
the metric-hub the file lives in), builds the enrollments and metrics SQL with mozanalysis and dry-runs
that SQL through the `Warehouse` interface (DuckDB EXPLAIN locally, a dry run on BigQuery). Unlike
metric-config-parser alone it also reports unknown metrics, unknown statistics and pre-treatments, and
SQL errors, each isolated to the metric, segment or enrollment setting that causes it.

What Jetstream reads from Experimenter (dates, platform) is not looked up: an experiment config's own
`[experiment]` dates are used when it has them, a recent window otherwise, and its platform is
`--platform` or inferred: the first of the platforms its slug names (`...-android-...` is fenix), then
firefox_desktop, then the others, that resolves it without problems (else the one with fewest).

Local dry runs need the tables the SQL reads. With `synthetic=True` they are derived from the SQL
itself (`demo.sample_tables`), which checks syntax, functions and types but cannot catch a misspelled
column or table (the derived table has it); dry runs against BigQuery or real Parquet data catch those.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import attr
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import Config
from metric_config_parser.experiment import Branch, BucketConfig, Experiment
from metric_config_parser.metric import AnalysisPeriod
from mozanalysis.experiment import TimeLimits
from mozilla_nimbus_schemas.jetstream import AnalysisBasis

from jetstream_assets.config.metric_hub import (
    DEFINITIONS_DIR,
    FUNCTIONS_FILE,
    JETSTREAM_DIR,
    LoadedConfigs,
    MetricHubError,
    _field_line,
    load_metric_hub,
)
from jetstream_assets.config.resolve import PLATFORMS, ConfigError, ResolvedConfig, resolve_config
from jetstream_assets.sql.queries import enrollments_sql
from jetstream_assets.warehouse.base import Warehouse, WarehouseError

# Problem kinds (the `kind` of a Problem), from the config itself to the SQL it generates.
PARSE = "parse"  # TOML or metric-config-parser cannot read the file or an entry of it
CONFIG = "config"  # resolves with an error (bad reference, template, missing dates...)
UNKNOWN_METRIC = "unknown_metric"
UNKNOWN_STATISTIC = "unknown_statistic"
NO_STATISTICS = "no_statistics"
UNKNOWN_OUTCOME = "unknown_outcome"
UNKNOWN_DATA_SOURCE = "unknown_data_source"
TEMPLATE = "template"  # a Jinja template (select_expression, parameters) does not render
SEGMENT = "segment"
PRE_TREATMENT = "pre_treatment"
SQL = "sql"  # the generated SQL does not compile (dry run)
MISSING_TABLE = "missing_table"  # the dry run's warehouse has no such table
LOCAL_FUNCTION = "local_function"  # a BigQuery function the local engine does not provide
PLATFORM = "platform"  # the file's platform is not one Jetstream analyses

ENROLLMENTS_CTE = "validation_enrollments"
DEFAULT_ENROLLMENT_DAYS = 7
DEFAULT_ANALYSIS_DAYS = 21  # Jetstream validates an open-ended experiment over 21 days too


@dataclass(frozen=True)
class Problem:
    """One reason a file is invalid: where (file, line, field) and why."""

    file: str
    field: str | None
    cause: str
    kind: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(file)'}: {self.cause}"


@dataclass
class FileReport:
    """The outcome of validating one file."""

    path: str
    kind: str  # experiment, outcome, defaults, definitions, functions, skipped
    platform: str | None = None
    problems: list[Problem] = field(default_factory=list)
    dry_runs: int = 0
    note: str | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def summary(self) -> str:
        state = "OK" if self.valid else f"{len(self.problems)} problem(s)"
        extra = [f"platform {self.platform}"] if self.platform else []
        if self.dry_runs:
            extra.append(f"{self.dry_runs} dry run(s)")
        if self.note:
            extra.append(self.note)
        return f"{self.path}: {state}" + (f" ({'; '.join(extra)})" if extra else "")


# ----------------------------------------------------------------------------------------------
# which file is what


@dataclass
class _Target:
    path: Path  # as given
    display: str
    kind: str
    hub: Path | None = None
    rel: str | None = None  # path inside the (possibly overlaid) hub
    platform: str | None = None
    loaded: LoadedConfigs | None = None
    resolved: ResolvedConfig | None = None
    limits: TimeLimits | None = None
    report: FileReport | None = None
    #: (label, sql) to dry-run; label "enrollments" or "metrics/<basis>"
    queries: list[tuple[str, str]] = field(default_factory=list)


def file_kind(path: Path) -> str:
    """What a metric-hub file is, from where it sits."""
    if ".example" in path.suffixes or path.suffix != ".toml":
        return "skipped"
    parent = path.parent.name
    if parent == DEFINITIONS_DIR:
        return "functions" if path.name == FUNCTIONS_FILE else "definitions"
    if parent == "defaults":
        return "defaults"
    if path.parent.parent.name == "outcomes":
        return "outcome"
    return "experiment"


def _hub_root(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / JETSTREAM_DIR).is_dir():
            return parent
    return None


def _hub_rel(path: Path, kind: str) -> str:
    """Where a file of `kind` lives in a metric-hub."""
    if kind == "definitions" or kind == "functions":
        return f"{DEFINITIONS_DIR}/{path.name}"
    if kind == "defaults":
        return f"{JETSTREAM_DIR}/defaults/{path.name}"
    if kind == "outcome":
        return f"{JETSTREAM_DIR}/outcomes/{path.parent.name}/{path.name}"
    return f"{JETSTREAM_DIR}/{path.name}"


# ----------------------------------------------------------------------------------------------
# resolution


def _experiment(
    slug: str, platform: str, today: dt.date, *, outcomes=(), segments=(), type_="v6",
    group_randomized: bool = False,
) -> Experiment:
    """What Experimenter would say about an experiment it is not asked about."""
    start = today - dt.timedelta(days=DEFAULT_ANALYSIS_DAYS + DEFAULT_ENROLLMENT_DAYS + 1)
    return Experiment(
        experimenter_slug=slug,
        normandy_slug=slug,
        type=type_,
        status="Live",
        branches=[Branch(slug="control", ratio=1), Branch(slug="treatment", ratio=1)],
        start_date=dt.datetime.combine(start, dt.time(), dt.UTC),
        end_date=None,
        proposed_enrollment=DEFAULT_ENROLLMENT_DAYS,
        enrollment_end_date=None,
        reference_branch="control",
        is_high_population=False,
        app_name=platform,
        app_id=PLATFORMS[platform].app_id,
        outcomes=list(outcomes),
        segments=list(segments),
        # profile-group randomisation is what Experimenter says for desktop experiments whose
        # custom enrollment query yields profile group ids
        bucket_config=BucketConfig(
            randomization_unit="group_id" if group_randomized else "normandy_id",
            namespace=slug, start=0, count=100, total=10000,
        ),
    )


def _display(target: _Target, rel: str | None) -> str:
    """How a metric-hub file is named in problems: the validated file as given, others by location."""
    if rel is None or rel == target.rel or target.hub is None:
        return target.display
    path = target.hub / rel
    return str(path) if Path(target.display).is_absolute() else os.path.relpath(path)


_KIND_OF_CAUSE = (
    (re.compile(r"^unknown metric "), UNKNOWN_METRIC),
    (re.compile(r"No default definition found for referenced metric|Could not locate metric"),
     UNKNOWN_METRIC),
    (re.compile(r"No default definition for data source|data source .* not (found|defined)", re.I),
     UNKNOWN_DATA_SOURCE),
    (re.compile(r"template error"), TEMPLATE),
    (re.compile(r"^unknown statistic "), UNKNOWN_STATISTIC),
    (re.compile(r"has no statistics"), NO_STATISTICS),
    (re.compile(r"^outcome .* (does not exist|failed to load)"), UNKNOWN_OUTCOME),
    (re.compile(r"^segment "), SEGMENT),
)


def _problem_of(error: ConfigError, target: _Target) -> Problem:
    kind = next((k for pattern, k in _KIND_OF_CAUSE if pattern.search(error.cause)), CONFIG)
    cause = error.cause + (f". {error.hint}" if error.hint else "")
    return Problem(_display(target, error.file), error.field, cause, kind, error.line)


def _with_config(loaded: LoadedConfigs, slug: str, data: dict) -> LoadedConfigs:
    """`loaded` plus an experiment config `slug` made of `data` (a validation-only config)."""
    configs = copy.copy(loaded.configs)
    spec = AnalysisSpec.from_dict(copy.deepcopy(data))
    configs.configs = [c for c in loaded.configs.configs if c.slug != slug] + [
        Config(slug, spec, dt.datetime.now(dt.UTC))
    ]
    raw = dict(loaded.raw)
    raw[loaded.experiment_config_path(slug)] = data
    return dataclasses.replace(loaded, configs=configs, raw=raw)


def _resolve(
    target: _Target, experiment: Experiment, loaded: LoadedConfigs
) -> tuple[ResolvedConfig | None, list[Problem]]:
    try:
        resolved = resolve_config(experiment, loaded)
    except ConfigError as e:
        return None, [_problem_of(e, target)]
    except Exception as e:  # noqa: BLE001 - the parser can fail on inputs resolve_config did not foresee
        return None, [Problem(target.display, None, f"cannot be resolved: {e}", CONFIG)]
    problems = [_problem_of(e, target) for e in resolved.errors]
    problems += _pre_treatment_problems(resolved, target)
    problems += _metric_reference_problems(resolved, target)
    return resolved, problems


def _pre_treatment_problems(resolved: ResolvedConfig, target: _Target) -> list[Problem]:
    from jetstream_assets.statistics.pre_treatments import resolve_pre_treatment

    out = []
    seen = set()
    for summaries in resolved.config.metrics.values():
        for summary in summaries:
            for pre in summary.pre_treatments or []:
                key = (summary.metric.name, summary.statistic.name, pre.name)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    resolve_pre_treatment(pre.name, pre.args, summary.metric.name, summary.statistic.name)
                except Exception as e:  # noqa: BLE001
                    name = summary.metric.name
                    file, line = _locate(target, ["metrics", name])
                    out.append(Problem(
                        file, f"metrics.{name}.statistics.{summary.statistic.name}.pre_treatments",
                        str(e), PRE_TREATMENT, line,
                    ))
    return out


def _metric_reference_problems(resolved: ResolvedConfig, target: _Target) -> list[Problem]:
    """Statistic parameters that name metrics (population_ratio's numerator and denominator,
    linear_model_mean's covariate metric) must name metrics the analysis computes; the parser does
    not check them and the statistic would fail (or silently lose its covariate) at run time."""
    computed: dict[AnalysisPeriod, set[str]] = {}
    for period, summaries in resolved.config.metrics.items():
        names = computed.setdefault(period, set())
        for summary in summaries:
            names.add(summary.metric.name)
            names.update(d.metric.name for d in summary.metric.depends_on or [])
    everywhere = set().union(*computed.values()) if computed else set()
    out, seen = [], set()
    for period, summaries in resolved.config.metrics.items():
        for summary in summaries:
            name, stat = summary.metric.name, summary.statistic.name
            params = summary.statistic.params or {}
            checks = []
            for key in ("numerator", "denominator"):
                if params.get(key):
                    deps = {d.metric.name for d in summary.metric.depends_on or []}
                    checks.append((key, str(params[key]), deps | computed.get(period, set())))
            cov = params.get("covariate_adjustment")
            if isinstance(cov, dict) and cov.get("metric"):
                checks.append(("covariate_adjustment.metric", str(cov["metric"]), everywhere | set(
                    _defined_metrics(target)
                )))
            for key, ref, known in checks:
                if ref in known or (name, stat, key) in seen:
                    continue
                seen.add((name, stat, key))
                file, line = _locate(target, ["metrics", name, "statistics", stat])
                what = (
                    f"is not defined for {target.platform}" if key.startswith("covariate")
                    else "is not computed in this analysis: list it in the metric's depends_on"
                )
                out.append(Problem(
                    file, f"metrics.{name}.statistics.{stat}.{key}",
                    f"unknown metric {ref!r}: the {stat} statistic of {name!r} needs it, but it {what}",
                    UNKNOWN_METRIC, line,
                ))
    return out


def _defined_metrics(target: _Target) -> set[str]:
    """Metric names defined anywhere the target's platform can see (definitions, outcomes, itself)."""
    loaded = target.loaded
    if loaded is None:
        return set()
    platform = target.platform or "firefox_desktop"
    rels = [target.rel or "", *loaded.definition_paths(platform), loaded.defaults_path(platform)]
    rels += [r for r in loaded.raw if r.startswith(f"{loaded.jetstream_prefix}outcomes/{platform}/")]
    out: set[str] = set()
    for rel in rels:
        metrics = (loaded.raw.get(rel) or {}).get("metrics") or {}
        out.update(k for k, v in metrics.items() if isinstance(v, dict))
    return out


def _own_line(target: _Target, fld: str) -> int | None:
    """Line of `fld` (e.g. `experiment.enrollment_query`) in the validated file, if written there."""
    loaded = target.loaded
    if loaded is None or not target.rel:
        return None
    with contextlib.suppress(OSError):
        return _field_line((loaded.root / target.rel).read_text(encoding="utf-8"), fld)
    return None


def _locate(target: _Target, path: list[str]) -> tuple[str, int | None]:
    """The file (shown as given for the validated one) and line that define a config entry."""
    loaded = target.loaded
    if loaded is None:
        return target.display, None
    platform = target.platform or "firefox_desktop"
    candidates = [target.rel] if target.rel else []
    candidates += sorted(
        r for r in loaded.raw if r.startswith(f"{loaded.jetstream_prefix}outcomes/{platform}/")
    )
    candidates += [loaded.defaults_path(platform), *reversed(loaded.definition_paths(platform))]
    for rel in candidates:
        node = loaded.raw.get(rel or "")
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            text = None
            with contextlib.suppress(OSError):
                text = (loaded.root / rel).read_text(encoding="utf-8")
            line = _field_line(text, ".".join(path)) if text else None
            return _display(target, rel), line
    return target.display, None


_PLATFORM_PROBLEMS = {UNKNOWN_METRIC, UNKNOWN_OUTCOME, UNKNOWN_DATA_SOURCE, SEGMENT, CONFIG}
#: slug words that name a platform: tried first when inferring an experiment's platform
_SLUG_PLATFORMS = {"desktop": "firefox_desktop", "ios": "firefox_ios", "android": "fenix", "fenix": "fenix"}


def _platform_candidates(slug: str) -> list[str]:
    hinted = [_SLUG_PLATFORMS[w] for w in slug.lower().split("-") if w in _SLUG_PLATFORMS]
    return list(dict.fromkeys([*hinted, "firefox_desktop", *PLATFORMS]))


def _resolve_experiment_config(target: _Target, platform: str | None, today: dt.date) -> None:
    """Resolve an experiment config; without a platform, take the first (slug-hinted platforms, then
    desktop, then the others) whose definitions resolve it without problems, else the one with fewest."""
    assert target.loaded is not None
    slug = target.path.stem
    raw = target.loaded.raw.get(target.rel or "", {})
    query = str((raw.get("experiment") or {}).get("enrollment_query") or "")
    candidates = [platform] if platform else _platform_candidates(slug)
    best = None
    for candidate in candidates:
        target.platform = candidate
        experiment = _experiment(slug, candidate, today, group_randomized="profile_group_id" in query)
        resolved, problems = _resolve(target, experiment, target.loaded)
        score = (resolved is None, sum(p.kind in _PLATFORM_PROBLEMS for p in problems))
        if best is None or score < best[0]:
            best = (score, candidate, resolved, problems)
        if score == (False, 0):
            break
    assert best is not None
    _, target.platform, target.resolved, problems = best
    target.report.platform = target.platform
    if not platform and len(candidates) > 1:
        target.report.note = "platform inferred; pass --platform to choose"
    target.report.problems += problems


def _resolve_outcome(target: _Target, today: dt.date) -> None:
    platform = target.path.parent.name
    if platform not in PLATFORMS:
        target.report.problems.append(Problem(
            target.display, None, f"outcomes of platform {platform!r} are never analysed: Jetstream "
            f"supports {sorted(PLATFORMS)}", PLATFORM,
        ))
        return
    target.platform = target.report.platform = platform
    experiment = _experiment("validate-outcome", platform, today, outcomes=[target.path.stem])
    target.resolved, problems = _resolve(target, experiment, target.loaded)
    target.report.problems += problems


def _resolve_defaults(target: _Target, platform: str | None, today: dt.date) -> None:
    stem = target.path.stem
    if stem not in PLATFORMS and any(r.endswith(f"definitions/{stem}.toml") for r in target.loaded.raw):
        target.report.note = f"{stem!r} is not a Jetstream platform: parsed only"
        return
    if stem in PLATFORMS:
        target.platform = stem
        experiment = _experiment("validate-defaults", stem, today)
    else:  # experiment-type defaults (e.g. messaging): applied to experiments of that type
        target.platform = platform or "firefox_desktop"
        experiment = _experiment("validate-defaults", target.platform, today, type_=stem)
    target.report.platform = target.platform
    target.resolved, problems = _resolve(target, experiment, target.loaded)
    target.report.problems += problems


def _resolve_definitions(target: _Target, today: dt.date) -> None:
    """Every metric and segment a definitions file defines, resolved as one experiment would."""
    platform = target.path.stem
    raw = target.loaded.raw.get(target.rel or "", {})
    if platform not in PLATFORMS:
        target.report.note = f"{platform!r} is not a Jetstream platform: parsed only"
        return
    target.platform = target.report.platform = platform
    metrics = {k: v for k, v in (raw.get("metrics") or {}).items() if isinstance(v, dict)}
    segments = [
        k for k, v in (raw.get("segments") or {}).items() if k != "data_sources" and isinstance(v, dict)
    ]
    slug = f"validate-definitions-{platform}".replace("_", "-")
    data = {
        "metrics": {
            "overall": sorted(metrics),
            # a statistic so every metric resolves; its own statistics (if any) are resolved too
            **{name: {"statistics": {"count": {}}} for name in metrics},
        },
        "experiment": {"segments": segments},
    }
    loaded = _with_config(target.loaded, slug, data)
    target.resolved, problems = _resolve(target, _experiment(slug, platform, today), loaded)
    own = _display(target, loaded.experiment_config_path(slug))
    target.report.problems += [p for p in problems if p.file != own]


# ----------------------------------------------------------------------------------------------
# SQL


def _time_limits(resolved: ResolvedConfig, today: dt.date) -> TimeLimits:
    """One window over the whole analysis, as Jetstream validates: from the config's dates when it
    has them (an end date alone places the start before it), else a recent 21-day analysis."""
    conf = resolved.config.experiment
    enrollment_days = (conf.enrollment_period or DEFAULT_ENROLLMENT_DAYS - 1) + 1
    own_start = conf.experiment_spec.start_date
    end = conf.end_date.date() if conf.end_date else None
    if own_start is not None:
        start = conf.start_date.date()
    elif end is not None:
        start = end - dt.timedelta(days=enrollment_days + DEFAULT_ANALYSIS_DAYS - 1)
    else:
        start = today - dt.timedelta(days=enrollment_days + DEFAULT_ANALYSIS_DAYS + 1)
    if end is not None:
        length = (end - start).days - enrollment_days + 1
        if length < 0:
            raise ValueError(
                f"the enrollment period ({enrollment_days} days) is longer than the experiment "
                f"({start} to {end}): fix enrollment_period, start_date or end_date"
            )
        length = max(length, 1)
    else:
        length = DEFAULT_ANALYSIS_DAYS
    return TimeLimits.for_single_analysis_window(
        first_enrollment_date=start.isoformat(),
        last_date_full_data=(start + dt.timedelta(days=enrollment_days + length)).isoformat(),
        analysis_start_days=0,
        analysis_length_dates=length,
        num_dates_enrollment=enrollment_days,
    )


def _mock_enrollments(resolved: ResolvedConfig) -> str:
    """A stand-in enrollments table for metrics dry runs: the enrollments query is dry-run on its own,
    so a metric's problem is never blamed on the enrollments (two rows: BigQuery refuses a constant
    one-row table in some plans)."""
    segments = "".join(f", FALSE AS `{s.name}`" for s in resolved.config.experiment.segments)
    row = (
        "SELECT '00000000-0000-4000-8000-000000000000' AS analysis_id, 'control' AS branch, "
        "DATE('2024-01-01') AS enrollment_date, 1 AS num_enrollment_events, "
        f"DATE('2024-01-01') AS exposure_date, 1 AS num_exposure_events{segments}"
    )
    return f"{row} UNION ALL {row}"


def _with_enrollments(metrics_sql: str, resolved: ResolvedConfig) -> str:
    body = re.sub(r"^\s*WITH\s", "", metrics_sql, count=1, flags=re.IGNORECASE)
    return f"WITH {ENROLLMENTS_CTE} AS ({_mock_enrollments(resolved)}),\n{body}"


def _metrics_query(
    resolved: ResolvedConfig, limits: TimeLimits, basis: AnalysisBasis, names: list[str] | None = None
) -> str | None:
    from jetstream_assets.demo.sample_tables import all_metrics_sql

    sql = all_metrics_sql(resolved, limits, basis, ENROLLMENTS_CTE, names)
    return None if sql is None else _with_enrollments(sql, resolved)


def _bases(resolved: ResolvedConfig) -> list[AnalysisBasis]:
    """Bases whose metrics queries differ: without a custom exposure signal the exposures query is the
    enrollments one plus a filter on the enrollments table, so the enrollments one is enough (Jetstream
    dry-runs that basis only) unless some metric is analysed on exposures only."""
    metrics = [s.metric for summaries in resolved.config.metrics.values() for s in summaries]
    wanted = {b for m in metrics for b in m.analysis_bases}
    bases = [b for b in (AnalysisBasis.ENROLLMENTS, AnalysisBasis.EXPOSURES) if b in wanted]
    exposures_only = any(AnalysisBasis.ENROLLMENTS not in m.analysis_bases for m in metrics)
    if len(bases) == 2 and resolved.config.experiment.exposure_signal is None and not exposures_only:
        bases = bases[:1]
    return bases


def _build_queries(target: _Target, today: dt.date) -> None:
    resolved = target.resolved
    if resolved is None:
        return
    try:
        target.limits = _time_limits(resolved, today)
    except ValueError as e:
        target.report.problems.append(Problem(target.display, "experiment.enrollment_period", str(e), CONFIG))
        return
    try:
        target.queries.append(("enrollments", enrollments_sql(resolved, target.limits)))
    except Exception as e:  # noqa: BLE001 - mozanalysis rejects the enrollment settings
        target.report.problems.append(
            Problem(target.display, "experiment", f"the enrollments query cannot be built: {e}", CONFIG)
        )
    for basis in _bases(resolved):
        try:
            sql = _metrics_query(resolved, target.limits, basis)
        except Exception as e:  # noqa: BLE001 - e.g. a template mozanalysis cannot render
            target.report.problems.append(
                Problem(target.display, "metrics", f"the {basis.value} metrics query cannot be built: {e}",
                        CONFIG)
            )
            continue
        if sql is not None:
            target.queries.append((f"metrics/{basis.value}", sql))


# the local warehouse's message, BigQuery's "Not found: Table p:d.t was not found in location US"
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


def _dry_run_target(target: _Target, warehouse: Warehouse) -> None:
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
    target: _Target, warehouse: Warehouse, basis: AnalysisBasis, error: str
) -> list[Problem]:
    """Blame the metrics that break a failing metrics query (halving the metric list).

    A metric already blamed for the other basis is left out (it breaks both the same way)."""
    from jetstream_assets.demo.sample_tables import unique_summaries

    resolved = target.resolved
    blamed = {p.field for p in target.report.problems if p.kind in (SQL, LOCAL_FUNCTION, MISSING_TABLE)}
    names = list(dict.fromkeys(
        s.metric.name for s in unique_summaries(resolved)
        if basis in s.metric.analysis_bases and s.metric.select_expression
    ))
    known = [n for n in names if f"metrics.{n}" in blamed]
    rest = [n for n in names if n not in known]

    def trial(subset: list[str]) -> str | None:
        sql = _metrics_query(resolved, target.limits, basis, subset)
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
        file, line = _locate(target, ["metrics", name])
        if basis != AnalysisBasis.ENROLLMENTS:
            cause = f"{basis.value} basis: {cause}"
        out.append(Problem(file, f"metrics.{name}", cause, kind, line))
    if not out and not known:
        kind, cause = _classify(error)
        out.append(Problem(target.display, "metrics", f"{basis.value} metrics query: {cause}", kind))
    return out


def _isolate_enrollments(target: _Target, warehouse: Warehouse, error: str) -> list[Problem]:
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
        return [Problem(target.display, fld, f"enrollments query: {cause}", kind, _own_line(target, fld))]
    out = []
    segments = list(conf.segments)
    if segments:
        for segment, seg_error in _culprits(segments, variant(segments, None), lambda s: variant(s, None)):
            kind, cause = _classify(seg_error)
            file, line = _locate(target, ["segments", segment.name])
            out.append(Problem(file, f"segments.{segment.name}", cause, kind, line))
    if conf.exposure_signal is not None and (signal_error := variant([], conf.exposure_signal)):
        kind, cause = _classify(signal_error)
        out.append(Problem(target.display, "experiment.exposure_signal", cause, kind,
                           _own_line(target, "experiment.exposure_signal")))
    if not out:
        kind, cause = _classify(error)
        out.append(Problem(target.display, "experiment", f"enrollments query: {cause}", kind))
    return out


# ----------------------------------------------------------------------------------------------
# entry point


@contextlib.contextmanager
def _overlay(hub: Path, path: Path, kind: str) -> Iterator[tuple[Path, str]]:
    """A temporary copy of `hub` holding `path` where a file of its kind belongs."""
    tmp = Path(tempfile.mkdtemp(prefix="validate-config-"))
    try:
        root = tmp / "metric-hub"
        shutil.copytree(hub, root, ignore=shutil.ignore_patterns(".git"))
        rel = _hub_rel(path, kind)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / rel)
        yield root, rel
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def validate_configs(
    paths: Iterable[str | Path],
    *,
    platform: str | None = None,
    metric_hub: str | Path | None = None,
    warehouse: Warehouse | None = None,
    synthetic: bool = False,
    synthetic_dir: str | Path | None = None,
    today: dt.date | None = None,
) -> list[FileReport]:
    """Validate metric-hub files; one report per path, in order.

    `warehouse` runs the dry runs; with `synthetic` (or no warehouse) they run on a local warehouse
    whose tables are derived from the SQL (in `synthetic_dir`, or a temporary folder).
    """
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"--platform {platform!r} is not supported; use one of {sorted(PLATFORMS)}")
    today = today or dt.date.today()
    with contextlib.ExitStack() as stack:
        targets = [_prepare(Path(p), metric_hub, stack) for p in paths]
        for target in targets:
            problems = target.report.problems
            if target.kind in ("skipped", "functions") or target.loaded is None:
                continue
            if any(p.kind == PARSE for p in problems) or (target.kind == "experiment" and problems):
                continue  # unreadable (an experiment config with a dropped entry does not resolve)
            if target.kind == "experiment":
                _resolve_experiment_config(target, platform, today)
                if target.resolved is not None and target.resolved.config.experiment.skip:
                    target.report.note = "skip = true: Jetstream ignores this experiment"
                    target.resolved = None
            elif target.kind == "outcome":
                _resolve_outcome(target, today)
            elif target.kind == "defaults":
                _resolve_defaults(target, platform, today)
            elif target.kind == "definitions":
                _resolve_definitions(target, today)
            _build_queries(target, today)
        if any(t.queries for t in targets):
            if warehouse is None or synthetic:
                warehouse = _synthetic_warehouse(targets, synthetic_dir, stack)
            for target in targets:
                _dry_run_target(target, warehouse)
    return [t.report for t in targets]


def _prepare(path: Path, metric_hub: str | Path | None, stack: contextlib.ExitStack) -> _Target:
    display = str(path)
    kind = file_kind(path)
    target = _Target(path, display, kind)
    target.report = FileReport(display, kind)
    if kind == "skipped":
        target.report.note = "not a config (example or not TOML): skipped"
        return target
    if not path.is_file():
        target.report.problems.append(Problem(display, None, "no such file", PARSE))
        return target
    hub = Path(metric_hub).resolve() if metric_hub else _hub_root(path)
    if hub is None:
        target.report.problems.append(Problem(
            display, None, "cannot tell which metric-hub this file belongs to (no `jetstream` folder "
            "above it): pass --metric-hub", PARSE,
        ))
        return target
    try:
        rel = path.resolve().relative_to(hub).as_posix()
        inside = rel == _hub_rel(path, kind) or (
            kind == "definitions" and rel.endswith(f"definitions/{path.name}")
        )
    except ValueError:
        inside = False
    try:
        if inside:
            target.loaded = load_metric_hub(hub)
        else:
            root, rel = stack.enter_context(_overlay(hub, path, kind))
            target.loaded = load_metric_hub(root)
    except MetricHubError as e:
        target.report.problems.append(Problem(display, None, str(e), PARSE))
        return target
    target.hub, target.rel = hub, rel
    raw = target.loaded.raw.get(rel)
    if isinstance(raw, dict) and "project" in raw:
        target.kind = target.report.kind = "skipped"
        target.report.note = "an OpMon config (has `project`), not Jetstream's: skipped"
        return target
    for error in target.loaded.errors_for(rel):
        target.report.problems.append(
            Problem(display, error.field, error.cause, PARSE if error.field is None else CONFIG, error.line)
        )
    return target


def _synthetic_warehouse(targets: list[_Target], folder, stack: contextlib.ExitStack) -> Warehouse:
    """A local warehouse of empty tables derived from the SQL to dry-run (a dry run needs schemas only).

    A metrics query that does not parse is replaced, for deriving tables, by its metrics one at a time:
    the parsable ones still need their tables for the dry runs that single out the broken one."""
    from jetstream_assets.demo.sample_tables import table_schemas, write_sample_tables
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


def _single_metric_queries(target: _Target, basis: AnalysisBasis) -> list[str]:
    from jetstream_assets.demo.sample_tables import unique_summaries

    out = []
    for summary in unique_summaries(target.resolved):
        if summary.metric.select_expression and basis in summary.metric.analysis_bases:
            with contextlib.suppress(Exception):
                if sql := _metrics_query(target.resolved, target.limits, basis, [summary.metric.name]):
                    out.append(sql)
    return out


def format_reports(reports: list[FileReport]) -> Iterator[str]:
    """The CLI's output: one line per file, then one line per problem."""
    for report in reports:
        yield report.summary()
        for problem in report.problems:
            yield f"  {problem}"
    valid = sum(r.valid for r in reports)
    yield f"{valid} of {len(reports)} file(s) valid"

