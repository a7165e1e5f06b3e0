"""metric-config-parser merges specs by matching every key of one against every (glob) key of the other,
translating the same glob to a regex each time (`fnmatch.translate`) and compiling it
(`re.compile(...).fullmatch(key)`): thousands of times per experiment resolved, a tenth of validate-config's
resolution. `install()` gives its modules an `fnmatch` whose `translate` is memoised (a pure function of the
pattern), and an `re` whose `compile` of a glob without `*`, `?` or `[` (almost every metric name) is a
matcher comparing the key with that name, which is what the compiled regex matches; nothing else changes."""

from __future__ import annotations

import fnmatch
import functools
import re
import types

from .fast_paths import swap

#: the library modules that translate globs while merging
LIBRARY_MODULES = ("metric_config_parser.metric", "metric_config_parser.data_source")

#: what makes a glob match more than its own text
_WILDCARDS = frozenset("*?[")


class _Translation(str):
    """`fnmatch.translate(glob)`, and the glob when it matches only its own text (`literal`)."""

    literal: str | None = None


def _translate(pattern):
    out = _Translation(fnmatch.translate(pattern))
    if type(pattern) is str and not _WILDCARDS.intersection(pattern):
        out.literal = pattern
    return out


class _Exactly:
    """`re.compile(fnmatch.translate(text))` for a `text` without wildcards: it fully matches that text only."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def fullmatch(self, key) -> bool:
        return key == self.text


def _compile(pattern, flags=0):
    literal = getattr(pattern, "literal", None)
    if literal is not None and flags == 0:
        return _Exactly(literal)
    return re.compile(pattern, flags)


_CACHED = types.SimpleNamespace(**{**vars(fnmatch), "translate": functools.lru_cache(maxsize=4096)(_translate)})
_RE = types.SimpleNamespace(**{**vars(re), "compile": _compile})


def install() -> None:
    """Point the library's `fnmatch` and `re` at the memoised ones; idempotent."""
    swap(LIBRARY_MODULES, "fnmatch", fnmatch, _CACHED)
    swap(LIBRARY_MODULES, "re", re, _RE)


def uninstall() -> None:
    """The library's own `fnmatch` and `re` again (to time the library as it ships)."""
    swap(LIBRARY_MODULES, "fnmatch", _CACHED, fnmatch)
    swap(LIBRARY_MODULES, "re", _RE, re)
