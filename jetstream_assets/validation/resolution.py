"""Resolve a file the way the analysis will, and the problems resolution finds.

What Jetstream reads from Experimenter (dates, platform) is not looked up: a stand-in experiment is used
(the config's own `[experiment]` dates when it has them, a recent window otherwise), and an experiment
config's platform is `--platform` or inferred: the first of the platforms its slug names (`...-android-...`
is fenix), then firefox_desktop, then the others, that resolves it without problems (else the one with
fewest).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re

from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import Config
from metric_config_parser.experiment import Branch, BucketConfig, Experiment
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.config.limits import FILE_RENDER_SECONDS
from jetstream_assets.config.metric_hub import LoadedConfigs
from jetstream_assets.config.errors import ConfigError
from jetstream_assets.config.resolve import PLATFORMS, ResolvedConfig, resolve_config
from jetstream_assets.config.sandbox import render_scope
from jetstream_assets.validation.report import (
    CONFIG,
    NO_STATISTICS,
    PLATFORM,
    PRE_TREATMENT,
    SEGMENT,
    STATISTIC_PARAMETER,
    TEMPLATE,
    UNKNOWN_DATA_SOURCE,
    UNKNOWN_METRIC,
    UNKNOWN_OUTCOME,
    UNKNOWN_STATISTIC,
    Problem,
)
from jetstream_assets.validation.targets import Target, display_name, locate

DEFAULT_ENROLLMENT_DAYS = 7
DEFAULT_ANALYSIS_DAYS = 21  # Jetstream validates an open-ended experiment over 21 days too

# ----------------------------------------------------------------------------------------------
# resolution


def stand_in_experiment(
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


def _problem_of(error: ConfigError, target: Target) -> Problem:
    kind = next((k for pattern, k in _KIND_OF_CAUSE if pattern.search(error.cause)), CONFIG)
    cause = error.cause + (f". {error.hint}" if error.hint else "")
    return Problem(display_name(target, error.file), error.field, cause, kind, error.line)


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
    target: Target, experiment: Experiment, loaded: LoadedConfigs
) -> tuple[ResolvedConfig | None, list[Problem]]:
    try:
        resolved = resolve_config(experiment, loaded, as_validate=True)
    except ConfigError as e:
        return None, [_problem_of(e, target)]
    except Exception as e:  # noqa: BLE001 - the parser can fail on inputs resolve_config did not foresee
        return None, [Problem(target.display, None, f"cannot be resolved: {e}", CONFIG)]
    problems = [_problem_of(e, target) for e in resolved.errors]
    problems += _parameter_problems(resolved, target)
    problems += _pre_treatment_problems(resolved, target)
    problems += _metric_reference_problems(resolved, target)
    return resolved, problems


def _parameter_problems(resolved: ResolvedConfig, target: Target) -> list[Problem]:
    """Statistic parameters checked against each statistic's schema (`num_samples = -1`, `"abc"`, an
    unknown parameter...): metric-config-parser accepts any, and the statistic would fail at run time."""
    from jetstream_assets.statistics.engine import check_parameters
    from jetstream_assets.statistics.results import StatisticError

    out, seen = [], set()
    for summaries in resolved.config.metrics.values():
        for summary in summaries:
            name, stat = summary.metric.name, summary.statistic.name
            params = {k: v for k, v in (summary.statistic.params or {}).items() if k != "period"}
            if (name, stat) in seen:
                continue
            seen.add((name, stat))
            try:
                check_parameters(stat, name, params)
            except StatisticError as e:
                key = next((k for k in params if k in e.problem), None)
                path = ["metrics", name, "statistics", stat]
                file, line = locate(target, path, key)
                cause = e.problem + (f". {e.remedy}" if e.remedy else "")
                out.append(Problem(file, ".".join(path + ([key] if key else [])), cause, STATISTIC_PARAMETER, line))
    return out


def _pre_treatment_problems(resolved: ResolvedConfig, target: Target) -> list[Problem]:
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
                    file, line = locate(target, ["metrics", name])
                    out.append(Problem(
                        file, f"metrics.{name}.statistics.{summary.statistic.name}.pre_treatments",
                        str(e), PRE_TREATMENT, line,
                    ))
    return out


def _metric_reference_problems(resolved: ResolvedConfig, target: Target) -> list[Problem]:
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
                file, line = locate(target, ["metrics", name, "statistics", stat])
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


def _defined_metrics(target: Target) -> set[str]:
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



#: slug words that name a platform: tried first when inferring an experiment's platform
_SLUG_PLATFORMS = {"desktop": "firefox_desktop", "ios": "firefox_ios", "android": "fenix", "fenix": "fenix"}


def _platform_candidates(slug: str) -> list[str]:
    hinted = [_SLUG_PLATFORMS[w] for w in slug.lower().split("-") if w in _SLUG_PLATFORMS]
    return list(dict.fromkeys([*hinted, "firefox_desktop", *PLATFORMS]))


def _referenced(raw: dict) -> set[tuple[str, str]]:
    """(kind, name) of what an experiment config uses without defining it: metrics listed in periods,
    segments, outcomes and the data sources of its own metrics and segments."""
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {}
    segments = raw.get("segments") if isinstance(raw.get("segments"), dict) else {}
    experiment = raw.get("experiment") if isinstance(raw.get("experiment"), dict) else {}
    own_sources = set(raw.get("data_sources") or {}) | set(segments.get("data_sources") or {})
    out = {("metrics", m) for v in metrics.values() if isinstance(v, list) for m in v if m not in metrics}
    out |= {("segments", s) for s in experiment.get("segments") or [] if s not in segments}
    out |= {("outcomes", o) for o in experiment.get("outcomes") or []}
    for entries in (metrics, segments):
        for entry in entries.values():
            source = entry.get("data_source") if isinstance(entry, dict) else None
            if isinstance(source, str) and source not in own_sources:
                out.add(("data_sources", source))
    return out


#: `_defined` of the last few loaded metric-hubs (the key holds the hub alive, so its id is never reused)
_DEFINED: dict[tuple[int, str], tuple[LoadedConfigs, frozenset[tuple[str, str]]]] = {}


def _defined(loaded: LoadedConfigs, platform: str) -> frozenset[tuple[str, str]]:
    """(kind, name) a platform's definitions, defaults and outcomes define (once per loaded metric-hub:
    every experiment config of a call ranks the same platforms)."""
    cached = _DEFINED.get((id(loaded), platform))
    if cached is not None and cached[0] is loaded:
        return cached[1]
    out = _defined_now(loaded, platform)
    if len(_DEFINED) >= 64:
        _DEFINED.pop(next(iter(_DEFINED)))
    _DEFINED[(id(loaded), platform)] = (loaded, out)
    return out


def _defined_now(loaded: LoadedConfigs, platform: str) -> frozenset[tuple[str, str]]:
    out = set()
    for rel in [*loaded.definition_paths(platform), loaded.defaults_path(platform)]:
        raw = loaded.raw.get(rel) or {}
        for kind in ("metrics", "segments", "data_sources"):
            out |= {(kind, name) for name in raw.get(kind) or {}}
        out |= {("data_sources", name) for name in (raw.get("segments") or {}).get("data_sources") or {}}
    prefix = f"{loaded.jetstream_prefix}outcomes/{platform}/"
    for rel, raw in loaded.raw.items():
        if rel.startswith(prefix):
            out.add(("outcomes", rel[len(prefix):].removesuffix(".toml")))
            out |= {("metrics", name) for name in (raw or {}).get("metrics") or {}}
    return frozenset(out)


def _ranked_platforms(loaded: LoadedConfigs, raw: dict, slug: str) -> list[str]:
    """Candidate platforms, those defining the most of what the config uses first (slug-hinted
    platforms, then desktop, then the others on ties); names no platform defines do not count."""
    candidates = _platform_candidates(slug)
    used = _referenced(raw)
    defined = {p: _defined(loaded, p) & used for p in candidates}
    anywhere = set().union(*defined.values())
    return sorted(candidates, key=lambda p: (len(anywhere - defined[p]), candidates.index(p)))


def resolve_experiment_config(target: Target, platform: str | None, today: dt.date) -> None:
    """Resolve an experiment config on `platform`; without one, on the platform whose definitions
    define the most of what the config uses (ties: slug-hinted platforms, then desktop, then the others),
    the next one only when it cannot be resolved at all."""
    assert target.loaded is not None
    slug = target.path.stem
    raw = target.loaded.raw.get(target.rel or "", {})
    query = str((raw.get("experiment") or {}).get("enrollment_query") or "")
    candidates = [platform] if platform else _ranked_platforms(target.loaded, raw, slug)
    first = None
    with render_scope(FILE_RENDER_SECONDS):  # every platform tried renders in one time budget
        for candidate in candidates:
            target.platform = candidate
            experiment = stand_in_experiment(slug, candidate, today, group_randomized="profile_group_id" in query)
            target.resolved, problems = _resolve(target, experiment, target.loaded)
            first = first or (candidate, problems)
            if target.resolved is not None:
                break
    if target.resolved is None:  # unresolvable anywhere: report the likeliest platform's problems
        target.platform, problems = first
    target.report.platform = target.platform
    if not platform and len(candidates) > 1:
        target.report.note = "platform inferred; pass --platform to choose"
    target.report.problems += problems


def resolve_outcome(target: Target, today: dt.date) -> None:
    platform = target.path.parent.name
    if platform not in PLATFORMS:
        target.report.problems.append(Problem(
            target.display, None, f"outcomes of platform {platform!r} are never analysed: Jetstream "
            f"supports {sorted(PLATFORMS)}", PLATFORM,
        ))
        return
    target.platform = target.report.platform = platform
    experiment = stand_in_experiment("validate-outcome", platform, today, outcomes=[target.path.stem])
    target.resolved, problems = _resolve(target, experiment, target.loaded)
    target.report.problems += problems


def resolve_defaults(target: Target, platform: str | None, today: dt.date) -> None:
    stem = target.path.stem
    if stem not in PLATFORMS and any(r.endswith(f"definitions/{stem}.toml") for r in target.loaded.raw):
        target.report.note = f"{stem!r} is not a Jetstream platform: parsed only"
        return
    if stem in PLATFORMS:
        target.platform = stem
        experiment = stand_in_experiment("validate-defaults", stem, today)
    else:  # experiment-type defaults (e.g. messaging): applied to experiments of that type
        target.platform = platform or "firefox_desktop"
        experiment = stand_in_experiment("validate-defaults", target.platform, today, type_=stem)
    target.report.platform = target.platform
    target.resolved, problems = _resolve(target, experiment, target.loaded)
    target.report.problems += problems


def resolve_definitions(target: Target, today: dt.date) -> None:
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
    target.resolved, problems = _resolve(target, stand_in_experiment(slug, platform, today), loaded)
    own = display_name(target, loaded.experiment_config_path(slug))
    target.report.problems += [p for p in problems if p.file != own]


