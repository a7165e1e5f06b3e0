"""metric-config-parser merges specs by matching every key of one against every (glob) key of the other,
translating the same glob to a regex each time (`fnmatch.translate`): thousands of times per experiment
resolved, a tenth of validate-config's resolution. `install()` gives its modules an `fnmatch` whose
`translate` is memoised (a pure function of the pattern); nothing else changes."""

from __future__ import annotations

import fnmatch
import functools
import sys
import types

#: the library modules that translate globs while merging
LIBRARY_MODULES = ("metric_config_parser.metric", "metric_config_parser.data_source")

_CACHED = types.SimpleNamespace(**{**vars(fnmatch), "translate": functools.lru_cache(maxsize=4096)(fnmatch.translate)})


def install() -> None:
    """Point the library's `fnmatch` at the memoised one; idempotent."""
    import importlib

    for name in LIBRARY_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "fnmatch", None) is fnmatch:
            module.fnmatch = _CACHED


def uninstall() -> None:
    """The library's own `fnmatch` again (to time the library as it ships)."""
    for name in LIBRARY_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "fnmatch", None) is _CACHED:
            module.fnmatch = fnmatch
