"""Cheaper, same-result versions of two helpers metric-config-parser calls for every metric it resolves.

Resolving one experiment resolves each of its metrics, and validate-config resolves dozens of experiments in
a row: thousands of calls each. For every statistic the library deep-copies the statistic's parameters
(`copy.deepcopy`, mostly `{}` or a few names and numbers from TOML), and it dedents every friendly name and
description (`textwrap.dedent`, two regular-expression passes though most have no indented line).
`install()` gives the library's modules:

* `deepcopy`: plain data (dicts and lists of strings, numbers, booleans and None, no container twice) copied
  directly; anything else goes to `copy.deepcopy`;
* `dedent`: text none of whose lines starts with a space or tab returned as it is (what `textwrap.dedent`
  returns for it: no margin, no blank-only line to normalise), other text dedented line by line rather than
  by three regular-expression passes.

Nothing is cached and nothing else changes; `uninstall()` gives the library its own helpers back (to time
it as it ships).
"""

from __future__ import annotations

import copy
import importlib
import os
import textwrap
import types
from collections.abc import Iterable
from typing import Any

#: the library modules that dedent, and the one that deep-copies statistic parameters
DEDENT_MODULES = ("metric_config_parser.metric", "metric_config_parser.segment",
                  "metric_config_parser.exposure_signal")
COPY_MODULE = "metric_config_parser.metric"

_ATOMS = (str, int, float, bool, type(None))


class _NotPlain(Exception):
    """Something `_plain` does not copy itself."""


def _plain(obj: Any, seen: set[int]) -> Any:
    """A copy of `obj` (a dict or list), or `_NotPlain`."""
    if id(obj) in seen:
        raise _NotPlain  # a container met twice: deepcopy keeps it shared
    seen.add(id(obj))
    if type(obj) is list:
        return [v if type(v) in _ATOMS else _container(v, seen) for v in obj]
    out = {}
    for k, v in obj.items():
        if type(k) not in _ATOMS:
            raise _NotPlain
        out[k] = v if type(v) in _ATOMS else _container(v, seen)  # deepcopy returns atoms themselves
    return out


def _container(obj: Any, seen: set[int]) -> Any:
    if type(obj) is not dict and type(obj) is not list:
        raise _NotPlain  # another type
    return _plain(obj, seen)


def deepcopy(obj: Any, memo: dict | None = None) -> Any:
    """`copy.deepcopy(obj, memo)`, plain data copied directly (see the module docstring)."""
    if memo is None:
        if type(obj) is dict and not obj:
            return {}  # most statistics have no parameters
        try:
            return _container(obj, set())
        except (_NotPlain, RecursionError):
            pass
    return copy.deepcopy(obj, memo)


def dedent(text: str) -> str:
    """`textwrap.dedent(text)`, line by line: the longest run of spaces and tabs that begins every line
    with something else is removed from them, and lines of spaces and tabs only are emptied (textwrap's
    regular expressions read lines as split by `\\n` only, as here)."""
    if type(text) is not str:
        return textwrap.dedent(text)
    if not text.startswith((" ", "\t")) and "\n " not in text and "\n\t" not in text:
        return text  # no indented line: no margin, no line of blanks only
    lines = text.split("\n")
    margin = None
    for line in lines:
        body = line.lstrip(" \t")
        if body:
            indent = line[: len(line) - len(body)]
            if margin is None or margin.startswith(indent):
                margin = indent
            elif not indent.startswith(margin):
                margin = os.path.commonprefix([margin, indent])
    cut = len(margin or "")
    return "\n".join(line[cut:] if line.lstrip(" \t") else "" for line in lines)


_COPY = types.SimpleNamespace(**{**vars(copy), "deepcopy": deepcopy})


def swap(modules: Iterable[str], name: str, old: Any, new: Any) -> None:
    """Set `name` to `new` in each of the library's `modules` where it is `old` (what installing and
    uninstalling a helper in metric-config-parser's modules does)."""
    for module_name in modules:
        module = importlib.import_module(module_name)
        if getattr(module, name, None) is old:
            setattr(module, name, new)


def install() -> None:
    """Point the library's modules at these helpers; idempotent."""
    swap(DEDENT_MODULES, "dedent", textwrap.dedent, dedent)
    swap([COPY_MODULE], "copy", copy, _COPY)


def uninstall() -> None:
    """The library's own `dedent` and `copy` again."""
    swap(DEDENT_MODULES, "dedent", dedent, textwrap.dedent)
    swap([COPY_MODULE], "copy", _COPY, copy)
