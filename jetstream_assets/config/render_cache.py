"""metric-config-parser renders a metric's `select_expression` each time an experiment resolves it: the
platform defaults' metrics render again for every experiment (thousands of renders in one validate-config
call, each in a new Jinja environment), though the text comes out the same. `install()` memoises
`MetricDefinition.generate_select_expression`: a pure function of the template's text, the parameter
values it reads and the metric-hub functions of the collection (the only globals a template sees besides
the sandbox's own); a template without any `{` is plain text, returned as Jinja would render it without
compiling it (`_plain`). A render that fails is never memoised (it fails, and is bounded, every time); only
renders through the sandbox are (`sandbox.renders_sandboxed`), so the library as it ships is left as it is.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

from metric_config_parser.metric import MetricDefinition

from . import sandbox

#: distinct (template, parameters, functions) renders kept (each a short SQL expression)
CACHE_SIZE = 8192

_ORIGINAL = MetricDefinition.__dict__["generate_select_expression"]  # the staticmethod object
_RENDER = _ORIGINAL.__func__
_LOCK = threading.Lock()
#: key -> (the functions spec it was rendered with, held so its id is not reused, rendered text)
_CACHE: OrderedDict[tuple, tuple[Any, str]] = OrderedDict()


def _key(param_definitions: dict, template: Any, configs: Any) -> tuple | None:
    """What the render reads, or None when it cannot be told apart safely (then it is not memoised)."""
    if type(template) is not str:
        return None
    params: tuple = ()
    if "parameters" in template:  # the library reads the parameters only then
        try:
            params = tuple(
                (name, bool(p.distinct_by_branch), type(p.value).__name__, repr(p.value))
                for name, p in sorted(param_definitions.items())
            )
        except Exception:  # noqa: BLE001 - unexpected parameter objects: render every time
            return None
    return template, params, id(configs.functions)


def _sandboxed() -> bool:
    """Whether the library's collections render through the sandbox (`ConfigCollection.get_env`)."""
    return sandbox.renders_sandboxed("metric_config_parser.config")


#: Jinja's line breaks (`jinja2.lexer.newline_re`)
_NEWLINES = re.compile(r"\r\n|\r|\n")
#: plain text longer than this still goes through Jinja (and its bounds)
_PLAIN_MAX = 100_000


def _plain(template: str) -> str | None:
    """What Jinja renders for a template without any `{` (no expression, statement or comment): the text,
    line breaks normalised to `\\n` and one trailing line break dropped (as `jinja2.lexer` does with the
    library's settings: no line statements, `keep_trailing_newline` off); None for any other template.
    Most select expressions are such text (`SUM(active_hours_sum)`): no template is compiled for them."""
    if "{" in template or len(template) > _PLAIN_MAX:
        return None
    lines = _NEWLINES.split(template)
    if lines[-1] == "":
        del lines[-1]
    return "\n".join(lines)


def generate_select_expression(param_definitions: dict, select_expr_template: Any, configs: Any) -> str:
    """`MetricDefinition.generate_select_expression`, memoised (see the module docstring)."""
    sandboxed = _sandboxed()
    if (sandboxed and type(select_expr_template) is str and "parameters" not in select_expr_template
            and (text := _plain(select_expr_template)) is not None):
        return text
    key = _key(param_definitions, select_expr_template, configs) if sandboxed else None
    if key is not None:
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None and hit[0] is configs.functions:
                _CACHE.move_to_end(key)
                return hit[1]
    text = _RENDER(param_definitions, select_expr_template, configs)
    if key is not None and isinstance(text, str):
        with _LOCK:
            _CACHE[key] = (configs.functions, text)
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    return text


def install() -> None:
    """Memoise the library's select-expression renders; idempotent."""
    MetricDefinition.generate_select_expression = staticmethod(generate_select_expression)


def uninstall() -> None:
    """The library's own renders again (to time the library as it ships)."""
    MetricDefinition.generate_select_expression = _ORIGINAL
    with _LOCK:
        _CACHE.clear()
