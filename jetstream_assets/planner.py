"""What one (experiment, analysis date) cell has to do: the experiment, its resolved configuration, and
the analysis windows that close on that date -- or why there is nothing to do.

Every analysis asset starts here, so the checks, the window arithmetic and the config resolution are
decided once, the same way for enrollments, metrics, statistics and exports.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from metric_config_parser.metric import AnalysisPeriod
from metric_config_parser.util import parse_date

from jetstream_assets.config.errors import ConfigError
from jetstream_assets.config.metric_hub import LoadedConfigs, MetricHub
from jetstream_assets.config.resolve import PLATFORMS, ResolvedConfig, resolve_config
from jetstream_assets.experimenter.models import Experiment, ExperimenterRecordError, validate_slug
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.eligibility import Skip, check_runnable
from jetstream_assets.windows import (
    AnalysisWindow,
    enrollment_period,
    last_enrollment_date,
    rerun_dates,
    windows_closing_on,
)

logger = logging.getLogger("jetstream_assets")


@dataclass
class Cell:
    """An experiment that is analysable on `analysis_date`."""

    slug: str
    analysis_date: dt.date
    experiment: Experiment
    resolved: ResolvedConfig
    enrollment_period: int
    windows: list[AnalysisWindow] = field(default_factory=list)

    @property
    def start_date(self) -> dt.date:
        return self.resolved.config.experiment.start_date.date()

    @property
    def last_enrollment_date(self) -> dt.date:
        return last_enrollment_date(self.start_date, self.enrollment_period)

    @property
    def periods(self) -> list[AnalysisPeriod]:
        return [w.period for w in self.windows]


@dataclass
class NoOp:
    """Nothing to compute for this cell, and why (shown as the materialization's metadata)."""

    slug: str
    analysis_date: dt.date
    code: str
    reason: str
    level: str = "info"  # info: nothing due; warning: validation skip; error: needs a person

    @property
    def is_error(self) -> bool:
        return self.level == "error"


class Planner:
    """Plans cells; loads each experiment and the metric-hub configs once. One Planner serves a whole run
    (the analysis_plan step makes it; the later steps of the run reuse it, see assets/plan.py)."""

    def __init__(self, experimenter: Experimenter, metric_hub: MetricHub, today: dt.date | None = None):
        self.experimenter = experimenter
        self.metric_hub = metric_hub
        self.today = today or dt.date.today()
        self._experiments: dict[str, Experiment | None | Exception] = {}
        self._resolved: dict[str, ResolvedConfig | Exception] = {}
        self._loaded: LoadedConfigs | None = None
        self._plans: dict[tuple[str, dt.date], Cell | NoOp] = {}

    @property
    def loaded(self) -> LoadedConfigs:
        if self._loaded is None:
            self._loaded = self.metric_hub.load()
        return self._loaded

    @staticmethod
    def _memo(cache: dict, key: str, compute, errors: type[Exception]):
        """compute() once per key; an expected error is remembered and raised again, not recomputed."""
        if key not in cache:
            try:
                cache[key] = compute()
            except errors as e:
                cache[key] = e
        found = cache[key]
        if isinstance(found, Exception):
            raise found
        return found

    def remember(self, experiments: list[Experiment]) -> None:
        """Seed the lookups with a snapshot already fetched (a sensor tick reads Experimenter once)."""
        for experiment in experiments:
            self._experiments.setdefault(experiment.slug, experiment)

    def experiment(self, slug: str) -> Experiment | None:
        return self._memo(
            self._experiments, slug, lambda: self.experimenter.get(slug), ExperimenterRecordError
        )

    def resolved(self, experiment: Experiment) -> ResolvedConfig:
        return self._memo(
            self._resolved,
            experiment.slug,
            lambda: resolve_config(experiment.to_config_experiment(self.today), self.loaded),
            ConfigError,
        )

    def effective_dates(self, experiment: Experiment) -> tuple[dt.date | None, dt.date | None]:
        """(start, end): the experiment's own config file may override Experimenter's dates.

        Without an own config file nothing can, so the dates are Experimenter's and no config is
        resolved (a sensor tick over a thousand experiments stays cheap)."""
        if not self.loaded.has_file(self.loaded.experiment_config_path(experiment.slug)):
            return experiment.start_date, experiment.end_date
        own = next((c.spec for c in self.loaded.configs.configs if c.slug == experiment.slug), None)
        if own is not None:  # the dates resolution would take, read from the unresolved spec
            start, end = parse_date(own.experiment.start_date), parse_date(own.experiment.end_date)
            return (start.date() if start else experiment.start_date, end.date() if end else experiment.end_date)
        spec = self.resolved(experiment).config.experiment
        return (
            spec.start_date.date() if spec.start_date else None,
            spec.end_date.date() if spec.end_date else None,
        )

    def rerun_dates(self, experiment: Experiment) -> list[dt.date]:
        """Every analysis date of a rerun, by the config's dates; by Experimenter's when the config does
        not resolve (the run then records the config error on each cell). Empty without a start date."""
        try:
            start, end = self.effective_dates(experiment)
        except ConfigError:
            start, end = experiment.start_date, experiment.end_date
        return rerun_dates(start, end, self.today) if start else []

    def plan(self, slug: str, analysis_date: dt.date) -> Cell | NoOp:
        """The cell's plan, made once per Planner (every step of a run asks for the same cells)."""
        key = (slug, analysis_date)
        if key not in self._plans:
            self._plans[key] = self._plan(slug, analysis_date)
        return self._plans[key]

    def _plan(self, slug: str, analysis_date: dt.date) -> Cell | NoOp:
        try:
            validate_slug(slug)
            experiment = self.experiment(slug)
        except (ValueError, ExperimenterRecordError) as e:
            return NoOp(slug, analysis_date, "bad_experiment", str(e), "error")
        if experiment is None:
            return NoOp(
                slug,
                analysis_date,
                "not_in_experimenter",
                f"Experiment {slug!r} is not in the Experimenter source any more; its results are kept.",
                "warning",
            )
        try:
            resolved = self.resolved(experiment)
        except ConfigError as e:
            return NoOp(slug, analysis_date, "config_error", str(e), "error")
        spec = resolved.config.experiment
        override = spec.experiment_spec.enrollment_period
        # the config may override Experimenter's dates; checks and windows follow the config
        start, end = self.effective_dates(experiment)
        experiment = experiment.model_copy(update={"start_date": start, "end_date": end})
        skip = check_runnable(
            experiment,
            analysis_date,
            skip=bool(spec.experiment_spec.skip),
            enrollment_period_override=override,
            supported_apps=PLATFORMS.keys(),
        )
        if skip is not None:
            return _noop_from_skip(slug, analysis_date, skip)
        period = enrollment_period(experiment, override)
        try:
            windows = windows_closing_on(
                start,
                period,
                end,
                spec.status == "Complete",
                analysis_date,
                periods=[p for p in resolved.config.metrics if resolved.config.metrics[p]],
            )
        except ValueError as e:
            return NoOp(slug, analysis_date, "bad_windows", f"{slug}: {e}", "error")
        return Cell(slug, analysis_date, experiment, resolved, period, windows)


def _noop_from_skip(slug: str, analysis_date: dt.date, skip: Skip) -> NoOp:
    return NoOp(slug, analysis_date, skip.code, skip.reason, skip.level)
