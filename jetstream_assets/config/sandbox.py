"""Every Jinja template the product renders runs here: Jinja's immutable sandbox with bounds.

metric-hub configs are untrusted (public pull requests). Their `select_expression`, `from_expression`
and `enrollment_query` are Jinja templates, rendered by metric-config-parser with a plain
`jinja2.Environment`, in which `{{ cycler.__init__.__globals__.os.popen(...) }}` runs a shell command.
`install()` points the library's modules at `BoundedSandbox` instead (no fork: their `jinja2` name is
replaced by a module whose `Environment` is ours), so every render, ours and the library's, is:

* sandboxed: no attribute starting with `_`, no Python internals, no mutation of lists or dicts, and only
  these callables: the template's functions and macros (metric-hub's `functions.toml`), Jinja's
  `range`/`dict`/`namespace`/`cycler`/`joiner`/`lipsum`, and the plain methods of strings, numbers,
  dates and containers. An escape attempt is a `jinja2.exceptions.SecurityError`;
* bounded (`template_bounds`): output and every string built on the way, loop iterations and calls, and
  time, per render and per `render_scope()` (one experiment's resolution). A template over a bound raises
  `TemplateLimitError` (a `SecurityError`), and the same source is refused at once the next time.

Import this module before metric-config-parser renders anything: `jetstream_assets.config` does.
"""

from __future__ import annotations

import datetime as dt
import functools
import string
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace
from jinja2.visitor import NodeTransformer

from . import template_bounds as bounds
from .template_bounds import TemplateLimitError, render_scope

__all__ = ["BoundedSandbox", "TemplateLimitError", "check_function_definition", "install", "installed",
           "render_scope"]

#: types whose (non-mutating: the immutable sandbox removes the others) methods are plain data methods
_VALUE_TYPES = (str, int, float, bool, list, tuple, dict, set, frozenset, dt.date, dt.timedelta, range)


# ---- the environment --------------------------------------------------------------------------


class _BoundLoops(NodeTransformer):
    """Loops iterate through `environment.bounded_iter` (counted), `~` concatenates through
    `environment.bounded_concat` (size-checked); Jinja compiles both without any other hook."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        it = node.iter
        if not (isinstance(it, nodes.Call) and isinstance(it.node, nodes.EnvironmentAttribute)):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("bounded_iter", lineno=it.lineno),
                [it], [], None, None, lineno=it.lineno,
            )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.EnvironmentAttribute("bounded_concat", lineno=node.lineno),
            list(node.nodes), [], None, None, lineno=node.lineno,
        )


class BoundedTemplate(jinja2.Template):
    """Renders through `generate()`, counting output, steps and time."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        out: list[str] = []
        size = 0
        with bounds.render_budget(getattr(self, "_source_digest", None)):
            for chunk in self.generate(*args, **kwargs):
                size += len(chunk)
                bounds.check_len(size, "result")
                bounds.tick()
                out.append(chunk)
        return "".join(out)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with bounded output, steps and time (see the module docstring).

    Takes the arguments of `jinja2.Environment` (metric-config-parser passes `autoescape=False,
    undefined=StrictUndefined`); undefined names are errors unless told otherwise."""

    template_class = BoundedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("undefined", jinja2.StrictUndefined)
        kwargs.setdefault("autoescape", False)
        super().__init__(*args, **kwargs)
        self.filters.update(bounds.FILTERS)
        self.globals.update(bounds.GLOBALS)

    # bounded building blocks (compiled templates call them) ----------------------------------
    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        parts = list(parts)
        bounds.check_len(sum(len(p) for p in parts))
        bounds.tick()
        return "".join(parts)

    @staticmethod
    def bounded_concat(*values: Any) -> str:
        parts = [v if isinstance(v, str) else str(v) for v in values]
        return BoundedSandbox.concat(parts)

    @staticmethod
    def bounded_iter(iterable: Any) -> Iterator[Any]:
        for item in iterable:
            bounds.tick()
            yield item

    # compilation --------------------------------------------------------------------------------
    def _generate(self, source: nodes.Template, name, filename, defer_init: bool = False) -> str:
        return super()._generate(_BoundLoops().visit(source), name, filename, defer_init=defer_init)

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):  # type: ignore[override]
        if isinstance(source, str) and len(source) > bounds.MAX_SOURCE:
            raise TemplateLimitError(f"template of {len(source):,} characters (at most {bounds.MAX_SOURCE:,})")
        try:
            return super().compile(source, name, filename, raw, defer_init)
        except (RecursionError, MemoryError, SyntaxError) as e:
            if isinstance(e, jinja2.TemplateSyntaxError):
                raise
            raise TemplateLimitError(f"template nests too deeply to compile ({type(e).__name__})") from None

    def parse(self, source, name=None, filename=None):  # type: ignore[override]
        try:
            return super().parse(source, name, filename)
        except (RecursionError, MemoryError) as e:
            raise TemplateLimitError(f"template nests too deeply to parse ({type(e).__name__})") from None

    def from_string(self, source, globals=None, template_class=None):  # type: ignore[override]  # noqa: A002
        """A template bound to this environment and `globals`; its compiled code is shared (`_COMPILED`)."""
        if not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        if why := bounds.refused(source):
            raise TemplateLimitError(why)
        key = (source, self._compile_key())
        code = _COMPILED.get(key)
        if code is None:
            code = self.compile(source)
            _COMPILED.put(key, code, len(source))
        # the code only defines render functions: globals, filters and bounds are bound here, per template
        template = (template_class or self.template_class).from_code(self, code, self.make_globals(globals))
        template._source_digest = bounds.digest(source)
        return template

    def _compile_key(self) -> tuple:
        """Everything of this environment that Jinja's compiler reads (syntax, options, and the filters and
        tests it may call while folding constants); not globals, which a compiled template never embeds."""
        return (
            type(self), self.code_generator_class, self.block_start_string, self.block_end_string,
            self.variable_start_string, self.variable_end_string, self.comment_start_string,
            self.comment_end_string, self.line_statement_prefix, self.line_comment_prefix, self.trim_blocks,
            self.lstrip_blocks, self.newline_sequence, self.keep_trailing_newline, self.optimized,
            self.autoescape, self.finalize, self.is_async, self.undefined,
            tuple((name, type(ext)) for name, ext in self.extensions.items()),
            tuple(self.filters.items()), tuple(self.tests.items()),
        )

    # sandbox policy -----------------------------------------------------------------------------
    def is_safe_callable(self, obj: Any) -> bool:
        if not super().is_safe_callable(obj):
            return False
        if isinstance(obj, Macro | LoopContext | Joiner | BlockReference) or obj is Namespace:
            return True
        if obj in _OWN_CALLABLES or getattr(obj, "_sandbox_format", False):
            return True
        if any(obj is g for g in self.globals.values()):
            return True
        if isinstance(obj, types.BuiltinMethodType | types.MethodType):
            return isinstance(getattr(obj, "__self__", None), (*_VALUE_TYPES, Cycler, LoopContext))
        return False

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        bounds.tick()
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"calling {getattr(__obj, '__name__', type(__obj).__name__)!r} is not allowed "
                                "in templates")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and isinstance(__obj, types.BuiltinMethodType):
            bounds.check_str_call(__obj.__name__, owner, args, kwargs)
            if __obj.__name__ == "join" and args:
                args = (bounds.joined(args[0], owner),)
        elif isinstance(__obj, functools.partial) and isinstance(__obj.keywords.get("definition"), str):
            # a metric-hub function: `definition.format(select_expr=...)` (metric_config_parser.function)
            bounds.check_format(__obj.keywords["definition"], args, kwargs)
        return bounds.bounded(__context.call(__obj, *args, **kwargs))

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        bounds.check_binop(operator, left, right)
        return bounds.bounded(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any):
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map and args:
                bounds.check_format(fmt, (), dict(args[0]))
            else:
                bounds.check_format(fmt, args, kwargs)
            return bounds.bounded(wrapped(*args, **kwargs))

        checked._sandbox_format = True  # type: ignore[attr-defined]
        return checked


_OWN_CALLABLES = (BoundedSandbox.bounded_iter, BoundedSandbox.bounded_concat)


class _CompiledCache:
    """Compiled template code by (source, environment's compile settings), least recently used first out,
    at most `MAX_ENTRIES` templates and `MAX_CHARS` characters of source. metric-config-parser builds a
    new environment for every expression it renders, so without it each config recompiles every default
    metric's template. Only code is shared: each `from_string` binds it to its own environment and globals
    (functions.toml of another commit is another globals mapping, never baked into the code)."""

    MAX_ENTRIES = 4096
    MAX_CHARS = 8 << 20

    def __init__(self) -> None:
        self._codes: OrderedDict[tuple, tuple[types.CodeType, int]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> types.CodeType | None:
        with self._lock:
            hit = self._codes.get(key)
            if hit is None:
                return None
            self._codes.move_to_end(key)
            return hit[0]

    def put(self, key: tuple, code: types.CodeType, chars: int) -> None:
        with self._lock:
            if key in self._codes or chars > self.MAX_CHARS:
                return
            self._codes[key] = (code, chars)
            self._chars += chars
            while len(self._codes) > self.MAX_ENTRIES or self._chars > self.MAX_CHARS:
                _, (_, size) = self._codes.popitem(last=False)
                self._chars -= size

    def __len__(self) -> int:
        return len(self._codes)

    def clear(self) -> None:
        with self._lock:
            self._codes.clear()
            self._chars = 0


_COMPILED = _CompiledCache()


# ---- installing it into metric-config-parser ----------------------------------------------------


class _SandboxedJinja(types.ModuleType):
    """Stands in for `jinja2` inside metric-config-parser's modules: the same names, our Environment."""

    Environment = BoundedSandbox

    def __init__(self) -> None:
        super().__init__("jinja2", "jinja2 with jetstream_assets' bounded sandbox as Environment")

    def __getattr__(self, name: str) -> Any:
        return getattr(jinja2, name)

    @staticmethod
    def Template(source: str, **kwargs: Any) -> jinja2.Template:  # noqa: N802 - jinja2.Template(source)
        return BoundedSandbox(**kwargs).from_string(source)


_PROXY = _SandboxedJinja()
#: metric-config-parser modules that render templates (each creates `jinja2.Environment` itself)
LIBRARY_MODULES = (
    "metric_config_parser.config",
    "metric_config_parser.data_source",
    "metric_config_parser.experiment",
    "metric_config_parser.segment",
    "metric_config_parser.metric",
    "metric_config_parser.sql",
)


def install() -> list[str]:
    """Make metric-config-parser render with `BoundedSandbox`; idempotent. Returns the patched modules.

    Every loaded `metric_config_parser` module whose `jinja2` is the real module gets the stand-in, and
    any `Environment` it imported by name is replaced as well."""
    import importlib

    for name in LIBRARY_MODULES:
        importlib.import_module(name)
    patched = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("metric_config_parser") or module is None:
            continue
        if getattr(module, "jinja2", None) is jinja2:
            module.jinja2 = _PROXY
            patched.append(name)
        for attr, value in list(vars(module).items()):
            if value is jinja2.Environment or value is jinja2.Template:
                setattr(module, attr, _PROXY.Environment if value is jinja2.Environment else _PROXY.Template)
                patched.append(f"{name}.{attr}")
    return patched


def renders_sandboxed(name: str) -> bool:
    """Whether the loaded library module `name` renders through the sandbox."""
    module = sys.modules.get(name)
    return module is not None and getattr(module, "jinja2", _PROXY) is _PROXY


def installed() -> bool:
    """Whether every module of `LIBRARY_MODULES` renders through the sandbox."""
    return all(renders_sandboxed(name) for name in LIBRARY_MODULES)


def check_function_definition(definition: Any) -> None:
    """A metric-hub function (`functions.toml`) is expanded with Python's `str.format`, outside any
    template: its definition may only use the plain `{select_expr}` placeholder (and `{{`/`}}`), never
    `{select_expr.attribute}`, `{select_expr[0]}`, conversions or format specifications."""
    if not isinstance(definition, str):
        raise ValueError(f"the definition must be a string, got {type(definition).__name__}")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(definition)
                  if name is not None]
    except ValueError as e:
        raise ValueError(f"the definition is not a valid format string: {e}") from None
    for name, spec, conv in fields:
        if name != "select_expr" or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise SecurityError(
                f"the definition may only use the placeholder {{select_expr}}, not {shown} "
                "(write a literal brace as {{ or }})"
            )
