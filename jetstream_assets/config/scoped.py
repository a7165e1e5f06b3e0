"""Private copies of the part of a loaded metric-hub one experiment can reach (its platform's outcomes,
defaults and definitions): metric-config-parser mutates them while resolving."""

from __future__ import annotations

import copy
import functools
import pickle

from metric_config_parser.config import ConfigCollection
from metric_config_parser.experiment import Experiment

from .metric_hub import LoadedConfigs


def scoped_collection(loaded: LoadedConfigs, experiment: Experiment, *, own_config: bool = True) -> ConfigCollection:
    """A private copy of just what this experiment can reach (without its own config when `own_config` is
    false: the caller resolves that from a copy of its own, and nothing else looks it up).

    metric-config-parser mutates definitions, outcomes and defaults while resolving (e.g. it writes
    an experiment's `analysis_bases` override into the shared metric definition), so resolving
    against the cached collection would leak one experiment's overrides into the next. Outcomes are
    copied when first asked for (`spec_for_outcome`): an experiment uses one or two of its platform's
    dozens, and copying them all was most of the copying.
    """
    src = loaded.configs
    platforms = {experiment.app_name, experiment.type}
    defaults, definitions, outcomes = _platform_copy(src, experiment.app_name, frozenset(platforms))
    own = [c for c in src.configs if c.slug == experiment.normandy_slug] if own_config else []
    scoped = _ScopedCollection(
        configs=copy.deepcopy(own),
        outcomes=[],
        defaults=defaults,
        definitions=definitions,
        functions=src.functions,  # callables, never mutated
    )
    scoped._app, scoped._outcome_copies = experiment.app_name, outcomes
    return scoped


class _ScopedCollection(ConfigCollection):
    """A collection whose outcomes (of its experiment's platform) are copied on first request."""

    _app: str = ""
    _outcome_copies: dict = {}

    def spec_for_outcome(self, slug: str, platform: str):
        copier = self._outcome_copies.pop(slug, None) if platform == self._app else None
        if copier is not None:
            self.outcomes.append(copier())
        return super().spec_for_outcome(slug, platform)


#: pickled platform slices of the last loaded collections: unpickling is ~8x faster than deep-copying
#: the definitions again for every experiment resolved (validate-config resolves dozens in a row)
_PRISTINE: dict[tuple[int, str, frozenset], tuple[ConfigCollection, bytes | None, dict]] = {}


def _platform_copy(src: ConfigCollection, app: str, platforms: frozenset) -> tuple[list, list, dict]:
    """Private copies of the defaults and definitions an experiment of `app` can reach, and per outcome of
    `app` (by slug) a function making a private copy of it."""
    parts = lambda: (  # noqa: E731
        [d for d in src.defaults if d.slug in platforms],
        [d for d in src.definitions if d.platform == app],
    )
    key = (id(src), app, platforms)
    cached = _PRISTINE.get(key)
    if cached is None or cached[0] is not src:
        try:
            blob = pickle.dumps(parts())
            outcomes = {}
            for o in src.outcomes:  # the first of a slug, as `spec_for_outcome` finds it
                if o.platform == app and o.slug not in outcomes:
                    outcomes[o.slug] = pickle.dumps(o)
        except Exception:  # noqa: BLE001 - something unpicklable: deep copies then
            blob, outcomes = None, {}
        if len(_PRISTINE) >= 16:  # the collections of the last few loads only (the key holds them alive)
            _PRISTINE.pop(next(iter(_PRISTINE)))
        _PRISTINE[key] = cached = (src, blob, outcomes)
    blob, outcomes = cached[1], cached[2]
    if blob is None:
        originals = {}
        for o in src.outcomes:  # the first of a slug, as `spec_for_outcome` finds it
            if o.platform == app:
                originals.setdefault(o.slug, o)
        copiers = {slug: functools.partial(copy.deepcopy, o) for slug, o in originals.items()}
        return (*copy.deepcopy(parts()), copiers)
    copiers = {slug: functools.partial(pickle.loads, data) for slug, data in outcomes.items()}
    return (*pickle.loads(blob), copiers)


def private_copy(obj):
    """A deep copy of `obj` (a spec metric-config-parser will mutate), by pickling: several times faster
    than `copy.deepcopy` on specs; deep-copied when something in it does not pickle."""
    try:
        return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - e.g. a callable that does not pickle
        return copy.deepcopy(obj)
