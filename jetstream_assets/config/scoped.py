"""Private copies of the part of a loaded metric-hub one experiment can reach (its platform's outcomes,
defaults and definitions): metric-config-parser mutates them while resolving.

Within one experiment's resolution (one scoped collection), a data source definition resolves once for the
spec and experiment it is resolved with (`install()`): metric-config-parser resolves a metric's data source
for every metric, building the same frozen `DataSource` (and rendering its `from_expression`) a dozen times
per data source; the metrics then share it, as they share equal ones. A resolution that fails is not
remembered (it fails again, as it did). Likewise a metric listed in several periods resolves once when
resolving it again cannot give anything else (`settled_metric`, used by the resolution's two passes).
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import ConfigCollection
from metric_config_parser.data_source import DataSourceDefinition
from metric_config_parser.experiment import Experiment, ExperimentConfiguration
from metric_config_parser.monitoring import MonitoringSpec

from .metric_hub import LoadedConfigs

#: what a platform's definitions define, by the `ConfigCollection` getter that finds it: the entries of
#: which spec part it reads, and whether it skips monitoring specs (as the library's getter does)
_KINDS: dict[str, tuple[Callable, bool]] = {
    "get_metric_definition": (lambda spec: spec.metrics.definitions, False),
    "get_data_source_definition": (lambda spec: spec.data_sources.definitions, False),
    "get_segment_definition": (lambda spec: spec.segments.definitions, True),
    "get_segment_data_source_definition": (lambda spec: spec.segments.data_sources, True),
}


def scoped_collection(loaded: LoadedConfigs, experiment: Experiment, *, own_config: bool = True) -> ConfigCollection:
    """A private copy of just what this experiment can reach (without its own config when `own_config` is
    false: the caller resolves that from a copy of its own, and nothing else looks it up).

    metric-config-parser mutates definitions, outcomes and defaults while resolving (e.g. it writes
    an experiment's `analysis_bases` override into the shared metric definition), so resolving
    against the cached collection would leak one experiment's overrides into the next. Outcomes and
    the entries of the platform's definitions (a metric, data source, segment...) are copied when first
    asked for (`spec_for_outcome`, `get_metric_definition`...): an experiment uses one or two of its
    platform's dozens of outcomes and a few dozen of its hundreds of definitions, and copying them all
    was most of the copying.
    """
    src = loaded.configs
    platforms = {experiment.app_name, experiment.type}
    defaults, copy_entry, copy_outcome = _platform_copy(src, experiment.app_name, frozenset(platforms))
    own = [c for c in src.configs if c.slug == experiment.normandy_slug] if own_config else []
    scoped = _ScopedCollection(
        configs=copy.deepcopy(own),
        outcomes=[],
        defaults=defaults,
        definitions=[],  # reached through the getters below only, one private entry at a time
        functions=src.functions,  # callables, never mutated
    )
    scoped._app, scoped._copy_outcome, scoped._copy_entry = experiment.app_name, copy_outcome, copy_entry
    scoped._entries, scoped._outcomes_copied, scoped._sources = {}, set(), {}
    return scoped


class _ScopedCollection(ConfigCollection):
    """A collection whose outcomes and definitions (of its experiment's platform) are copied on first
    request, each once: a second request gets the same copy, as it would from a collection copied whole."""

    # set by `scoped_collection` for each instance (no shared defaults: nothing leaks between instances)
    _app: str
    #: slug -> a private copy of the platform's outcome (None: no such outcome), and the slugs copied
    _copy_outcome: Callable
    _outcomes_copied: set
    #: (getter name, slug) -> a private copy of the definitions' entry (`definition_entries`), and the copies
    _copy_entry: Callable
    _entries: dict
    #: (definition, spec, experiment configuration) -> the `DataSource` it resolved to (`_resolve_once`)
    _sources: dict

    def spec_for_outcome(self, slug: str, platform: str):
        if platform == self._app and slug not in self._outcomes_copied:
            self._outcomes_copied.add(slug)
            outcome = self._copy_outcome(slug)
            if outcome is not None:
                self.outcomes.append(outcome)
        return super().spec_for_outcome(slug, platform)

    def _entry(self, getter: str, slug: str, app_name: str):
        if app_name != self._app:
            return None  # the copy holds its own platform's definitions only
        key = (getter, slug)
        if key not in self._entries:
            self._entries[key] = self._copy_entry(key)
        return self._entries[key]

    def get_metric_definition(self, slug: str, app_name: str):
        return self._entry("get_metric_definition", slug, app_name)

    def get_data_source_definition(self, slug: str, app_name: str):
        return self._entry("get_data_source_definition", slug, app_name)

    def get_segment_definition(self, slug: str, app_name: str):
        return self._entry("get_segment_definition", slug, app_name)

    def get_segment_data_source_definition(self, slug: str, app_name: str):
        return self._entry("get_segment_data_source_definition", slug, app_name)

    def _whole_definitions(self, *_args, **_kwargs):
        raise NotImplementedError(
            "a scoped collection copies its platform's definitions one entry at a time: reach them through "
            "get_metric_definition, get_data_source_definition, get_segment_definition or "
            "get_segment_data_source_definition"
        )

    # the library's other readers of `definitions` would find the empty list and answer "none": refused instead
    get_platform_definitions = _whole_definitions
    get_segments_for_app = _whole_definitions


def definition_entries(src: ConfigCollection, app: str) -> dict[tuple[str, str], object]:
    """(getter name, slug) -> the entry of `app`'s definitions that getter returns for slug: the first
    definitions file of the platform defining it, as the library's getters find it."""
    out: dict[tuple[str, str], object] = {}
    for definition in src.definitions:
        if definition.platform != app:
            continue
        for getter, (part, skips_monitoring) in _KINDS.items():
            if skips_monitoring and isinstance(definition.spec, MonitoringSpec):
                continue
            for slug, entry in part(definition.spec).items():
                out.setdefault((getter, slug), entry)
    return out


#: pickled platform slices of the last loaded collections: unpickling is ~8x faster than deep-copying
#: the definitions again for every experiment resolved (validate-config resolves dozens in a row)
_PRISTINE: dict[tuple[int, str, frozenset], tuple] = {}


def _originals(src: ConfigCollection, app: str, platforms: frozenset) -> tuple[list, dict, dict]:
    """The defaults an experiment of `app` reaches, its definitions' entries (`definition_entries`) and its
    outcomes by slug (the first of a slug, as `spec_for_outcome` finds it)."""
    outcomes: dict = {}
    for o in src.outcomes:
        if o.platform == app:
            outcomes.setdefault(o.slug, o)
    return [d for d in src.defaults if d.slug in platforms], definition_entries(src, app), outcomes


def _platform_copy(src: ConfigCollection, app: str, platforms: frozenset) -> tuple[list, Callable, Callable]:
    """A private copy of the defaults an experiment of `app` can reach, and functions making a private copy
    of an entry of `app`'s definitions (by getter name and slug) and of an outcome of `app` (by slug)."""
    key = (id(src), app, platforms)
    cached = _PRISTINE.get(key)
    if cached is None or cached[0] is not src:
        defaults, entries, outcomes = _originals(src, app, platforms)
        try:
            pickled = (pickle.dumps(defaults), {k: pickle.dumps(e) for k, e in entries.items()},
                       {k: pickle.dumps(o) for k, o in outcomes.items()})
        except Exception:  # noqa: BLE001 - something unpicklable: deep copies then
            pickled = None
        if len(_PRISTINE) >= 16:  # the collections of the last few loads only (the key holds them alive)
            _PRISTINE.pop(next(iter(_PRISTINE)))
        _PRISTINE[key] = cached = (src, pickled)
    pickled = cached[1]
    if pickled is None:
        defaults, entries, outcomes = _originals(src, app, platforms)
        return copy.deepcopy(defaults), _copier(entries, copy.deepcopy), _copier(outcomes, copy.deepcopy)
    return pickle.loads(pickled[0]), _copier(pickled[1], pickle.loads), _copier(pickled[2], pickle.loads)


def _copier(originals: dict, make: Callable) -> Callable:
    """key -> a new private copy of `originals[key]` (made by `make`), None when there is none."""
    return lambda key: make(originals[key]) if key in originals else None


_LIBRARY_RESOLVE = DataSourceDefinition.resolve


def _resolve_once(self: DataSourceDefinition, spec, conf, configs):
    """`DataSourceDefinition.resolve`, once per definition, spec and experiment configuration within one
    scoped collection (the resolution of one experiment); other collections resolve every time."""
    memo = getattr(configs, "_sources", None)
    if memo is None:
        return _LIBRARY_RESOLVE(self, spec, conf, configs)
    key = (id(self), id(spec), id(conf))
    hit = memo.get(key)
    if hit is not None:  # the entry holds the three objects, so no other object has these ids
        return hit[-1]
    resolved = _LIBRARY_RESOLVE(self, spec, conf, configs)
    memo[key] = (self, spec, conf, resolved)
    return resolved


def install() -> None:
    """Resolve data source definitions once per scoped collection (see the module docstring); idempotent."""
    DataSourceDefinition.resolve = _resolve_once


def uninstall() -> None:
    """The library's own resolution again (to time the library as it ships)."""
    DataSourceDefinition.resolve = _LIBRARY_RESOLVE


def settled_metric(name: str, spec: AnalysisSpec, conf: ExperimentConfiguration, configs: ConfigCollection) -> bool:
    """Whether resolving metric `name` again (for another period) gives what it gave: neither its definition
    nor the one it takes its SQL from (the platform's definition of that name, which the library then
    updates, always to the same values) has depends_on (whose resolution reads platform definitions other
    resolutions update); the rest it reads does not change while metrics resolve."""
    definition = spec.metrics.definitions.get(name)
    if definition is None:
        definition = configs.get_metric_definition(name, conf.app_name)
    if definition is None or definition.depends_on:
        return False
    if _has_sql(definition):
        return True
    if name not in spec.metrics.definitions:
        return False
    platform = configs.get_metric_definition(name, conf.app_name)
    return platform is not None and not platform.depends_on and _has_sql(platform)


def _has_sql(definition) -> bool:
    template = definition.select_expression
    if template is None:
        template = definition.select_expression_from_aggregation
    return template is not None and definition.data_source is not None


def private_copies(obj, n: int = 1) -> list:
    """`n` deep copies of `obj` (a spec metric-config-parser will mutate), by pickling it once: several
    times faster than `copy.deepcopy` on specs; deep-copied when something in it does not pickle."""
    try:
        blob = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - e.g. a callable that does not pickle
        return [copy.deepcopy(obj) for _ in range(n)]
    return [pickle.loads(blob) for _ in range(n)]
