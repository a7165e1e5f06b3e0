"""Resolve one experiment's analysis configuration from a loaded metric-hub.

Follows Jetstream (`default_for_experiment`, merge the custom config, resolve) but resolves each
outcome, segment and metric reference on its own: a bad one is dropped and reported as a
`ConfigError` in `ResolvedConfig.errors` instead of failing the whole experiment, and problems the
parser accepts silently (unknown statistic names) are caught here. Only problems that make the
experiment itself unanalysable (its own config file is broken, its enrollment query or exposure
signal cannot be built) raise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jinja2
from metric_config_parser.analysis import AnalysisConfiguration, AnalysisSpec
from metric_config_parser.config import ConfigCollection
from metric_config_parser.experiment import (
    EnrollmentsQueryType,
    Experiment,
    ExperimentConfiguration,
)
from metric_config_parser.metric import AnalysisPeriod, MetricReference, Summary
from metric_config_parser.segment import SegmentReference
from metric_config_parser.statistic import Statistic

from . import fast_paths, sandbox, scoped
from .errors import ConfigError
from .field_lines import key_line_of, line_of
from .metric_hub import ConfigFileError, LoadedConfigs
from .own_config_pass import own_config_alone
from .scoped import private_copies, scoped_collection
from .sql_checks import refuse_unsafe_sql


class Platform(NamedTuple):
    """How Jetstream reads enrollments for an app (`appName` in Experimenter)."""

    app_id: str
    enrollments_query_type: EnrollmentsQueryType


#: Supported apps (Jetstream's platform_config.toml); `app_id` names the Glean dataset.
PLATFORMS: dict[str, Platform] = {
    "firefox_desktop": Platform("firefox-desktop", EnrollmentsQueryType.NORMANDY),
    # fenix's app id differs by channel; the `fenix` dataset unions them all.
    "fenix": Platform("fenix", EnrollmentsQueryType.GLEAN_EVENT),
    "focus_android": Platform("org.mozilla.focus", EnrollmentsQueryType.GLEAN_EVENT),
    "klar_android": Platform("org.mozilla.klar", EnrollmentsQueryType.GLEAN_EVENT),
    "firefox_ios": Platform("org.mozilla.ios.FirefoxBeta", EnrollmentsQueryType.GLEAN_EVENT),
    "focus_ios": Platform("org.mozilla.ios.Focus", EnrollmentsQueryType.GLEAN_EVENT),
    "klar_ios": Platform("org.mozilla.ios.Klar", EnrollmentsQueryType.GLEAN_EVENT),
}


def statistic_names() -> frozenset[str]:
    """Statistic config names a metric may use: the statistics engine's (imported on first use: numpy and
    pandas load with it)."""
    from jetstream_assets.statistics import known_statistics

    return frozenset(known_statistics())


# TOML key of each period's metric list in `[metrics]`.
PERIOD_KEYS: dict[AnalysisPeriod, str] = {
    AnalysisPeriod.DAY: "daily",
    AnalysisPeriod.WEEK: "weekly",
    AnalysisPeriod.DAYS_28: "28_day",
    AnalysisPeriod.OVERALL: "overall",
    AnalysisPeriod.PREENROLLMENT_WEEK: "preenrollment_weekly",
    AnalysisPeriod.PREENROLLMENT_DAYS_28: "preenrollment_days28",
}


@dataclass
class ResolvedConfig:
    """An experiment's resolved `AnalysisConfiguration` and where it came from."""

    config: AnalysisConfiguration
    commit: str | None
    #: repo-relative `jetstream/<slug>.toml` when the experiment has a custom config.
    config_file: str | None
    #: problems that dropped an outcome, segment, metric or statistic; the rest resolved.
    errors: list[ConfigError] = field(default_factory=list)
    #: repo-relative files this resolution read (for rerun-on-change), with their digests.
    dependencies: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.config.experiment.normandy_slug


# ----------------------------------------------------------------------------------------------


def _dig(data: dict[str, Any] | None, path: Iterable[str]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


class _Resolver:
    def __init__(self, experiment: Experiment, loaded: LoadedConfigs) -> None:
        self.experiment = experiment
        self.loaded = loaded
        self.slug = experiment.normandy_slug or experiment.experimenter_slug or "<no slug>"
        self.app = experiment.app_name
        self.own_file = loaded.experiment_config_path(self.slug)
        self.errors: list[ConfigError] = []
        self._messages: set[str] = set()
        self.outcome_files: list[str] = []
        self.used_files: set[str] = set()
        #: metrics the resolution could not resolve (already reported)
        self.unresolved: set[str] = set()

    # where a field was set -------------------------------------------------------------------
    def candidate_files(self) -> list[str]:
        """Files that can set metric fields for this experiment, highest precedence first."""
        files = [self.own_file, *self.outcome_files]
        files += [self.loaded.defaults_path(self.app), self.loaded.defaults_path(self.experiment.type)]
        files += list(reversed(self.loaded.definition_paths(self.app)))
        return files

    def locate(self, path: list[str], predicate=None) -> str | None:
        for rel in self.candidate_files():
            value = _dig(self.loaded.raw.get(rel), path)
            if value is not None and (predicate is None or predicate(value)):
                return rel
        return None

    def line(self, file: str | None, field: str | None, key: bool = False) -> int | None:
        """Line of `field` in `file`; with `key`, of the field's last part inside its table."""
        if not (file and field and file in self.loaded.raw):
            return None
        if key and "." in field:
            table, name = field.rsplit(".", 1)
            return key_line_of(self.loaded.root / file, table, name)
        return line_of(self.loaded.root / file, field)

    def error(self, cause: str, *, file: str | None, field: str | None, hint: str, key: bool = False) -> None:
        err = ConfigError(
            self.slug, cause, file=file, field=field, line=self.line(file, field, key),
            commit=self.loaded.commit, hint=hint,
        )
        if str(err) not in self._messages:  # a set: thousands of errors stay linear
            self._messages.add(str(err))
            self.errors.append(err)

    # steps ------------------------------------------------------------------------------------
    def own_spec(self, copies: int = 1) -> list[AnalysisSpec]:
        """`copies` private copies of the experiment's own spec (none without one); raises when its file is
        broken."""
        own_errors = self.loaded.errors_for(self.own_file)
        if own_errors:
            first: ConfigFileError = own_errors[0]
            extra = f" (and {len(own_errors) - 1} more problems)" if len(own_errors) > 1 else ""
            raise ConfigError(
                self.slug,
                first.cause + extra,
                file=first.path,
                field=first.field,
                line=first.line,
                commit=self.loaded.commit,
                hint=f"fix {first.path} in metric-hub; this experiment is not analysed until "
                "its config file loads",
            )
        for config in self.loaded.configs.configs:
            if config.slug == self.slug and isinstance(config.spec, AnalysisSpec):
                self.used_files.add(self.own_file)
                return private_copies(config.spec, copies)
        return []

    def shared_file_errors(self) -> None:
        """Broken shared files this experiment depends on: it still resolves, with less."""
        paths = [self.loaded.defaults_path(self.app), self.loaded.defaults_path(self.experiment.type)]
        paths += self.loaded.definition_paths(self.app) + self.loaded.function_paths()
        for rel in paths:
            if rel in self.loaded.file_digests:
                self.used_files.add(rel)
            for fe in self.loaded.errors_for(rel):
                what = f"`{fe.field}` was dropped" if fe.field else "the whole file was skipped"
                self.errors.append(
                    ConfigError(
                        self.slug,
                        f"{fe.cause} ({what})",
                        file=fe.path,
                        field=fe.field,
                        line=fe.line,
                        commit=self.loaded.commit,
                        hint=f"fix {fe.path} in metric-hub; metrics defined there are missing "
                        "from this analysis",
                    )
                )

    def merge_outcomes(self, spec: AnalysisSpec, configs: ConfigCollection) -> None:
        slugs: list[str] = []
        from_config = list(spec.experiment.outcomes)
        for slug in list(self.experiment.outcomes) + from_config:
            if slug not in slugs:
                slugs.append(slug)
        for slug in slugs:
            rel = self.loaded.outcome_path(slug, self.app)
            source_file = self.own_file if slug in from_config else None
            source_field = "experiment.outcomes" if slug in from_config else None
            fe = self.loaded.errors_for(rel)
            outcome = configs.spec_for_outcome(slug, self.app)
            if outcome is None:
                available = sorted(o.slug for o in self.loaded.configs.outcomes if o.platform == self.app)
                cause = (
                    f"outcome {slug!r} failed to load: {fe[0].cause}"
                    if fe
                    else f"outcome {slug!r} does not exist for platform {self.app!r}"
                )
                where = "" if source_file else " (the outcome comes from Experimenter)"
                self.error(
                    cause + where,
                    file=fe[0].path if fe else source_file,
                    field=fe[0].field if fe else source_field,
                    hint=(
                        f"fix {rel}"
                        if fe
                        else f"use one of {available} or add {rel} to metric-hub"
                    )
                    + "; the experiment is analysed without this outcome",
                )
                continue
            self.outcome_files.append(rel)
            self.used_files.add(rel)
            for e in fe:  # entries dropped from an otherwise loaded outcome
                self.error(
                    f"{e.cause} (dropped from outcome {slug!r})",
                    file=e.path,
                    field=e.field,
                    hint=f"fix {e.path} in metric-hub",
                )
            spec.merge_outcome(outcome)
            spec.merge_parameters(outcome.parameters)

    def resolve_experiment(self, spec: AnalysisSpec, configs: ConfigCollection) -> ExperimentConfiguration:
        exp_spec = spec.experiment
        try:
            conf = ExperimentConfiguration(exp_spec, self.experiment, [])
        except Exception as exc:  # noqa: BLE001 - the enrollment query template fails to render
            file = self.locate(["experiment", "enrollment_query"])
            raise ConfigError(
                self.slug,
                f"enrollment_query cannot be rendered: {_cause(exc)}",
                file=file,
                field="experiment.enrollment_query",
                line=self.line(file, "experiment.enrollment_query", key=True),
                commit=self.loaded.commit,
                hint="fix the Jinja template (it may use {{experiment.<attribute>}} only)",
            ) from exc

        refs: list[SegmentReference] = []
        for ref in list(exp_spec.segments) + [SegmentReference(s) for s in self.experiment.segments]:
            if ref not in refs:
                refs.append(ref)
        for ref in refs:
            try:
                conf.segments.append(ref.resolve(spec, conf, configs))
            except Exception as exc:  # noqa: BLE001
                in_own = ref in exp_spec.segments
                self.error(
                    f"segment {ref.name!r} cannot be resolved: {_cause(exc)}",
                    file=self.locate(["segments", ref.name]) or (self.own_file if in_own else None),
                    field=f"segments.{ref.name}" if self.locate(["segments", ref.name]) else (
                        "experiment.segments" if in_own else None
                    ),
                    hint=("fix the segment's select_expression and its data source's from_expression"
                          if isinstance(exc, jinja2.TemplateError) else
                          f"define [segments.{ref.name}] (and its data source) in the experiment's "
                          f"config or definitions/{self.app}.toml") + "; results are computed without it",
                )
        conf.sample_size = exp_spec.sample_size

        if exp_spec.exposure_signal:
            try:
                conf.exposure_signal = exp_spec.exposure_signal.resolve(spec, conf=conf, configs=configs)
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(
                    self.slug,
                    f"exposure signal cannot be resolved: {_cause(exc)}",
                    file=self.own_file,
                    field="experiment.exposure_signal",
                    commit=self.loaded.commit,
                    hint="fix [experiment.exposure_signal] (its data_source must be defined for "
                    f"{self.app})",
                ) from exc
        return conf

    def resolve_metrics(
        self, spec: AnalysisSpec, conf: ExperimentConfiguration, configs: ConfigCollection
    ) -> dict[AnalysisPeriod, list[Summary]]:
        allowed = statistic_names()
        result: dict[AnalysisPeriod, list[Summary]] = {}
        #: summaries of the metrics whose resolution reads nothing another resolution changes (`scoped.settled_metric`)
        settled: dict[str, list[Summary]] = {}
        for period, key in PERIOD_KEYS.items():
            refs: list[MetricReference] = getattr(spec.metrics, period.table_suffix)
            summaries: list[Summary] = []
            for ref in refs:
                if ref.name in settled:  # listed in another period too (or twice): the same summaries
                    summaries += [_copy_summary(s) for s in settled[ref.name]]
                    continue
                try:
                    resolved = ref.resolve(spec, conf, configs)
                except Exception as exc:  # noqa: BLE001 - drop this metric only
                    self.unresolved.add(ref.name)
                    self.metric_error(ref.name, key, exc)
                    continue
                summaries += resolved
                if scoped.settled_metric(ref.name, spec, conf, configs):
                    settled[ref.name] = resolved  # copied for each later listing, while metrics resolve
            # later references (merged configs) override earlier ones, as in Jetstream
            unique: list[Summary] = []
            seen: set[tuple[str, str]] = set()
            for summary in reversed(summaries):
                ident = (summary.metric.name, summary.statistic.name)
                if ident in seen:
                    continue
                seen.add(ident)
                if summary.statistic.name not in allowed:
                    self.statistic_error(summary, allowed)
                    continue
                unique.append(summary)
            result[period] = unique
        return result

    def metric_error(self, name: str, period_key: str, exc: Exception) -> None:
        cause = _cause(exc)
        listed = lambda v: isinstance(v, list) and name in v  # noqa: E731
        if "No statistical treatment" in cause or "has no statistical treatment" in cause:
            # the parser names the metric without statistics: a depends_on metric of `name`, or itself
            named = re.search(r"for metric '([^']+)'|Metric (\S+) has no statistical", cause)
            culprit = next((g for g in named.groups() if g), name) if named else name
            via = f" (metric {name!r} depends on it)" if culprit != name else ""
            # blame where the config asks for it: its own definition of the metric, else the line that
            # lists it (a period, or the depends_on of the metric that needs it)
            if _dig(self.loaded.raw.get(self.own_file), ["metrics", culprit]) is not None:
                file, fld = self.own_file, f"metrics.{culprit}" + (".statistics" if culprit == name else "")
            elif culprit == name:
                file, fld = self.locate(["metrics", period_key], listed), f"metrics.{period_key}"
            else:
                file, fld = self.locate(["metrics", name]), f"metrics.{name}.depends_on"
            if file is None:  # listed by an outcome or the defaults: where the metric is defined
                file, fld = self.locate(["metrics", culprit]), f"metrics.{culprit}"
            self.error(
                f"No statistical treatment defined for metric {culprit!r}{via}: it has no statistics",
                file=file,
                field=fld,
                hint=f"add at least one [metrics.{culprit}.statistics.<statistic>] table "
                f"(e.g. bootstrap_mean); Jetstream rejects the config until then (here its other metrics "
                "are still analysed)",
            )
            return
        defined_anywhere = self.locate(["metrics", name]) is not None
        if not defined_anywhere and ("Could not locate metric" in cause or "No default definition" in cause):
            self.error(
                f"unknown metric {name!r} in metrics.{period_key}",
                file=self.locate(["metrics", period_key], listed),
                field=f"metrics.{period_key}",
                hint=f"define [metrics.{name}] in the experiment's config or in "
                f"definitions/{self.app}.toml, or remove it from the list; other metrics are "
                "analysed",
            )
            return
        self.error(
            f"metric {name!r} cannot be resolved: {cause}",
            file=self.locate(["metrics", name]) or self.locate(["metrics", period_key], listed),
            field=f"metrics.{name}",
            hint="fix the metric's definition (data_source, select_expression, depends_on); other "
            "metrics are analysed",
        )

    def statistic_error(self, summary: Summary, allowed: frozenset[str]) -> None:
        name, stat = summary.metric.name, summary.statistic.name
        self.error(
            f"unknown statistic {stat!r} for metric {name!r}",
            file=self.locate(["metrics", name, "statistics", stat]),
            field=f"metrics.{name}.statistics.{stat}",
            hint=f"use one of {sorted(allowed)}; the metric's other statistics are analysed",
        )


def _copy_summary(summary: Summary) -> Summary:
    """A summary of its own (its statistic and parameters too), of the same (frozen) metric."""
    return Summary(
        metric=summary.metric,
        statistic=Statistic(summary.statistic.name, fast_paths.deepcopy(summary.statistic.params)),
        pre_treatments=list(summary.pre_treatments),
    )


def _cause(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, jinja2.TemplateError):
        text = f"template error: {text}"
        if isinstance(exc, jinja2.exceptions.SecurityError):
            text = text.rstrip(".") + " (templates render in a sandbox: no `_` attributes, only metric-hub " \
                "functions and plain string methods, bounded size and time)"
    return text.splitlines()[0]


def _defaults_for(experiment: Experiment, configs: ConfigCollection) -> AnalysisSpec:
    """`AnalysisSpec.default_for_experiment` (the platform's defaults merged with the experiment type's)
    without its deep copy: `configs` is this experiment's private copy already."""
    spec = configs.get_platform_defaults(experiment.app_name)
    if not isinstance(spec, AnalysisSpec):
        spec = AnalysisSpec()
    type_spec = configs.get_platform_defaults(experiment.type)
    if type_spec is not None:
        spec.merge(type_spec)
    return spec


def resolve_config(experiment: Experiment, loaded: LoadedConfigs, *, as_validate: bool = False) -> ResolvedConfig:
    """Resolve the analysis configuration of `experiment` (Jetstream's default + custom config).

    Raises `ConfigError` when the experiment cannot be analysed at all; recoverable problems are
    listed in `ResolvedConfig.errors`. With `as_validate`, the errors also hold what Jetstream's
    validate-config rejects beyond the analysis (`own_config_pass`).
    """
    r = _Resolver(experiment, loaded)
    if not (experiment.normandy_slug or experiment.experimenter_slug):
        raise ConfigError(r.slug, "experiment has no slug", hint="fix the record in Experimenter")
    with sandbox.render_scope():  # every template of this experiment together renders in bounded time
        return _resolve(r, experiment, loaded, as_validate)


def _resolve(r: _Resolver, experiment: Experiment, loaded: LoadedConfigs, as_validate: bool) -> ResolvedConfig:
    copies = r.own_spec(2 if as_validate else 1)  # the second is resolved alone by own_config_pass
    own = copies[0] if copies else None
    pristine = copies[1] if len(copies) > 1 else None
    r.shared_file_errors()
    configs = scoped_collection(loaded, experiment, own_config=own is None)  # `own` is resolved below
    spec = _defaults_for(experiment, configs)
    if own is not None:
        spec.merge(own)
    r.merge_outcomes(spec, configs)
    conf = r.resolve_experiment(spec, configs)
    metrics = r.resolve_metrics(spec, conf, configs)
    if pristine is not None:
        own_config_alone(r, pristine, experiment, conf, configs, r.unresolved)
    refuse_unsafe_sql(r, conf, metrics)
    spec._resolved = True  # type: ignore[attr-defined]  # resolved here, never by spec.resolve()
    deps = {p: loaded.file_digests[p] for p in sorted(r.used_files) if p in loaded.file_digests}
    return ResolvedConfig(
        config=AnalysisConfiguration(conf, metrics),
        commit=loaded.commit,
        config_file=r.own_file if own is not None else None,
        errors=r.errors,
        dependencies=deps,
    )
