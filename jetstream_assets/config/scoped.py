"""Private copies of the part of a loaded metric-hub one experiment can reach (its platform's outcomes,
defaults and definitions): metric-config-parser mutates them while resolving."""

from __future__ import annotations

import copy
import pickle

from metric_config_parser.config import ConfigCollection
from metric_config_parser.experiment import Experiment

from .metric_hub import LoadedConfigs


def scoped_collection(loaded: LoadedConfigs, experiment: Experiment, *, own_config: bool = True) -> ConfigCollection:
    """A private copy of just what this experiment can reach (without its own config when `own_config` is
    false: the caller resolves that from a copy of its own, and nothing else looks it up).

    metric-config-parser mutates definitions, outcomes and defaults while resolving (e.g. it writes
    an experiment's `analysis_bases` override into the shared metric definition), so resolving
    against the cached collection would leak one experiment's overrides into the next.
    """
    src = loaded.configs
    platforms = {experiment.app_name, experiment.type}
    outcomes, defaults, definitions = _platform_copy(src, experiment.app_name, frozenset(platforms))
    own = [c for c in src.configs if c.slug == experiment.normandy_slug] if own_config else []
    return ConfigCollection(
        configs=copy.deepcopy(own),
        outcomes=outcomes,
        defaults=defaults,
        definitions=definitions,
        functions=src.functions,  # callables, never mutated
    )


#: pickled platform slices of the last loaded collections: unpickling is ~8x faster than deep-copying
#: the definitions again for every experiment resolved (validate-config resolves dozens in a row)
_PRISTINE: dict[tuple[int, str, frozenset], tuple[ConfigCollection, bytes | None]] = {}


def _platform_copy(src: ConfigCollection, app: str, platforms: frozenset) -> tuple[list, list, list]:
    """Private copies of the outcomes, defaults and definitions an experiment of `app` can reach."""
    parts = lambda: (  # noqa: E731
        [o for o in src.outcomes if o.platform == app],
        [d for d in src.defaults if d.slug in platforms],
        [d for d in src.definitions if d.platform == app],
    )
    key = (id(src), app, platforms)
    cached = _PRISTINE.get(key)
    if cached is None or cached[0] is not src:
        try:
            blob = pickle.dumps(parts())
        except Exception:  # noqa: BLE001 - something unpicklable: deep copies then
            blob = None
        if len(_PRISTINE) >= 16:  # the collections of the last few loads only (the key holds them alive)
            _PRISTINE.pop(next(iter(_PRISTINE)))
        _PRISTINE[key] = cached = (src, blob)
    blob = cached[1]
    return copy.deepcopy(parts()) if blob is None else pickle.loads(blob)


def private_copy(obj):
    """A deep copy of `obj` (a spec metric-config-parser will mutate), by pickling: several times faster
    than `copy.deepcopy` on specs; deep-copied when something in it does not pickle."""
    try:
        return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - e.g. a callable that does not pickle
        return copy.deepcopy(obj)
