"""Cheaper, same-result versions of two helpers metric-config-parser calls for every metric it resolves.

Resolving one experiment resolves each of its metrics, and validate-config resolves dozens of experiments in
a row: thousands of calls each. For every statistic the library deep-copies the statistic's parameters
(`copy.deepcopy`, mostly `{}` or a few names and numbers from TOML), and it dedents every friendly name and
description (`textwrap.dedent`, two regular-expression passes though most have no indented line).
`install()` gives the library's modules:

* `deepcopy`: plain data (dicts and lists of strings, numbers, booleans and None, no container twice) copied
  directly; anything else goes to `copy.deepcopy`;
* `dedent`: text none of whose lines starts with a space or tab returned as it is (what `textwrap.dedent`
  returns for it: no margin, no blank-only line to normalise); any other text goes to `textwrap.dedent`.

Nothing is cached and nothing else changes; `uninstall()` gives the library its own helpers back (to time
it as it ships).
"""

from __future__ import annotations

import copy
import importlib
import sys
import textwrap
import types
from typing import Any

#: the library modules that dedent, and the one that deep-copies statistic parameters
DEDENT_MODULES = ("metric_config_parser.metric", "metric_config_parser.segment",
                  "metric_config_parser.exposure_signal")
COPY_MODULE = "metric_config_parser.metric"

_ATOMS = (str, int, float, bool, type(None))


class _NotPlain(Exception):
    """Something `_plain` does not copy itself."""


def _plain(obj: Any, seen: set[int]) -> Any:
    kind = type(obj)
    if kind in _ATOMS:
        return obj  # deepcopy returns these themselves
    if kind is not dict and kind is not list or id(obj) in seen:
        raise _NotPlain  # another type, or a container met twice (deepcopy keeps it shared)
    seen.add(id(obj))
    if kind is list:
        return [_plain(v, seen) for v in obj]
    out = {}
    for k, v in obj.items():
        if type(k) not in _ATOMS:
            raise _NotPlain
        out[k] = _plain(v, seen)
    return out


def deepcopy(obj: Any, memo: dict | None = None) -> Any:
    """`copy.deepcopy(obj, memo)`, plain data copied directly (see the module docstring)."""
    if memo is None:
        if type(obj) is dict and not obj:
            return {}  # most statistics have no parameters
        try:
            return _plain(obj, set())
        except (_NotPlain, RecursionError):
            pass
    return copy.deepcopy(obj, memo)


def dedent(text: str) -> str:
    """`textwrap.dedent(text)`, text without any indented line returned as it is."""
    if type(text) is str and not text.startswith((" ", "\t")) and "\n " not in text and "\n\t" not in text:
        return text
    return textwrap.dedent(text)


_COPY = types.SimpleNamespace(**{**vars(copy), "deepcopy": deepcopy})


def install() -> None:
    """Point the library's modules at these helpers; idempotent."""
    for name in DEDENT_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "dedent", None) is textwrap.dedent:
            module.dedent = dedent
    module = importlib.import_module(COPY_MODULE)
    if getattr(module, "copy", None) is copy:
        module.copy = _COPY


def uninstall() -> None:
    """The library's own `dedent` and `copy` again."""
    for name in DEDENT_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "dedent", None) is dedent:
            module.dedent = textwrap.dedent
    module = sys.modules.get(COPY_MODULE)
    if module is not None and getattr(module, "copy", None) is _COPY:
        module.copy = copy
