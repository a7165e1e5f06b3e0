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
* bounded: `MAX_OUTPUT` characters per rendered string (also for every intermediate string a `*`, `+`,
  `~`, `%`, `format`, filter or macro builds), `MAX_STEPS` loop iterations and calls, `MAX_SECONDS` per
  render and `SCOPE_SECONDS` for all renders of one `render_scope()` (one experiment's resolution). A
  template over a bound raises `TemplateLimitError` (a `SecurityError`), and the same source is refused
  at once the next time.

Import this module before metric-config-parser renders anything: `jetstream_assets.config` does.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import hashlib
import re
import string
import sys
import time
import types
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, LoopContext, Macro
from jinja2.utils import Cycler, Joiner, Namespace, generate_lorem_ipsum
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT = 1_000_000  # characters of any string a template builds, its output included
MAX_ITEMS = 100_000  # items of a range() or a list a template builds
MAX_STEPS = 100_000  # loop iterations + calls + operators of one render (metric-hub's use a handful)
MAX_INT_BITS = 65_536  # size of an integer an operator may produce
MAX_SECONDS = 1.0  # one render (metric-hub's take about a millisecond)
SCOPE_SECONDS = 20.0  # all renders of one render_scope(): one experiment (a 1 MiB config renders in ~8 s)
MAX_SOURCE = 1 << 20  # characters of a template

#: str methods a template may call (the others can amplify or are useless in SQL: translate, expandtabs...).
_STR_METHODS = frozenset(
    "capitalize casefold center count endswith find format format_map index isalnum isalpha isascii "
    "isdecimal isdigit islower isnumeric isspace istitle isupper join ljust lower lstrip partition "
    "removeprefix removesuffix replace rfind rindex rjust rpartition rsplit rstrip split splitlines "
    "startswith strip swapcase title upper zfill".split()
)
#: types whose (non-mutating: the immutable sandbox removes the others) methods are plain data methods
_VALUE_TYPES = (str, int, float, bool, list, tuple, dict, set, frozenset, dt.date, dt.timedelta, range)


class TemplateLimitError(SecurityError):
    """A template went over a size, step or time bound."""


# ---- budgets ----------------------------------------------------------------------------------


class _Budget:
    def __init__(self, seconds: float, parent: "_Budget | None" = None) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.steps = 0
        self.parent = parent

    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(f"template runs more than {MAX_STEPS:,} loop iterations or calls")
        now = time.monotonic()
        budget: _Budget | None = self
        while budget is not None:
            if now > budget.deadline:
                raise TemplateLimitError(
                    f"template rendering takes more than {budget.seconds:g} s"
                    + ("" if budget is self else " (all templates of this configuration together)")
                )
            budget = budget.parent


_RENDER: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("jinja_render", default=None)
_SCOPE: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("jinja_scope", default=None)


def _tick(n: int = 1) -> None:
    budget = _RENDER.get()
    if budget is not None:
        budget.tick(n)


@contextlib.contextmanager
def render_scope(seconds: float = SCOPE_SECONDS) -> Iterator[None]:
    """All renders inside share `seconds` in total (on top of each render's own bound)."""
    token = _SCOPE.set(_Budget(seconds, _SCOPE.get()))
    try:
        yield
    finally:
        _SCOPE.reset(token)


#: sources that went over a bound (digest -> message): refused at once when rendered again
_REFUSED: OrderedDict[str, str] = OrderedDict()
_REFUSED_SIZE = 512


def _digest(source: str) -> str:
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# ---- size checks ------------------------------------------------------------------------------


def _check_len(n: int, what: str = "string") -> None:
    if n > MAX_OUTPUT:
        raise TemplateLimitError(f"template builds a {what} of {n:,} characters (at most {MAX_OUTPUT:,})")


def _bounded(value: Any) -> Any:
    """`value`, refused when it is a string or list over the bounds."""
    if isinstance(value, str):
        _check_len(len(value))
    elif isinstance(value, list | tuple) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"template builds a list of {len(value):,} items (at most {MAX_ITEMS:,})")
    return value


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _check_repeat(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError("template multiplies numbers too large")
        return
    seq, times = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        (_check_len if isinstance(seq, str) else _check_items)(len(seq) * max(times, 0))


def _check_items(n: int) -> None:
    if n > MAX_ITEMS:
        raise TemplateLimitError(f"template builds a list of {n:,} items (at most {MAX_ITEMS:,})")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"template computes {left} ** {right}: the number is too large")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _check_printf(fmt: str, args: Any) -> None:
    """`fmt % args` stays under the bounds (printf widths and repeated arguments amplify)."""
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
    specs = _PRINTF.findall(fmt)
    widths = 0
    for width, precision, _ in specs:
        if "*" in (width, precision):
            raise TemplateLimitError("template uses a `*` width in % formatting")
        widths += int(width or 0) + int(precision or 0)
    longest = max((_text_len(v) for v in values), default=0)
    _check_len(len(fmt) + widths + len(specs) * longest)


def _check_format(fmt: str, args: tuple, kwargs: dict) -> None:
    """`fmt.format(...)` stays under the bounds."""
    fields = 0
    widths = 0
    for _, name, spec, _ in string.Formatter().parse(fmt):
        if name is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise TemplateLimitError("template uses a nested {} in a format specification")
        widths += sum(int(d) for d in re.findall(r"\d+", spec or ""))
    longest = max((_text_len(v) for v in [*args, *kwargs.values()]), default=0)
    _check_len(len(fmt) + widths + fields * longest)


def _replaced_len(s: str, old: str, new: str, count: int | None = None) -> int:
    n = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))


def _check_str_call(name: str, s: str, args: tuple, kwargs: dict) -> None:
    if name not in _STR_METHODS:
        raise SecurityError(f"str.{name}() is not allowed in templates")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check_len(args[0])
    elif name == "replace" and len(args) >= 2:
        _check_len(_replaced_len(s, str(args[0]), str(args[1]), args[2] if len(args) > 2 else None))


# ---- filters and globals ----------------------------------------------------------------------


def _wrap_filter(name: str, func: Any) -> Any:
    """`func` with a step tick, an argument check for the filters that amplify, and a size check."""
    first = getattr(func, "jinja_pass_arg", None)  # eval_ctx / environment / context come first

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        plain = list(args[1:] if first is not None else args)
        precheck = _FILTER_CHECKS.get(name)
        if precheck is not None and plain:
            replaced = precheck(*plain, **kwargs)
            if replaced is not None:  # the check materialized an iterable: pass that on
                plain[0] = replaced
                args = (args[0], *plain) if first is not None else tuple(plain)
        return _bounded(func(*args, **kwargs))

    return wrapper


def _filter_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    pad = len(width) if isinstance(width, str) else int(width)
    _check_len(len(text) + (text.count("\n") + 1) * pad)


def _filter_wordwrap(s: Any, width: int = 79, break_long_words: bool = True, wrapstring: Any = None,
                     *_: Any, **kwargs: Any) -> None:
    text = str(s)
    wrap = kwargs.get("wrapstring", wrapstring) or "\n"
    lines = len(text) // max(int(kwargs.get("width", width)), 1) + text.count("\n") + 1
    _check_len(len(text) + lines * len(str(wrap)))


def _filter_replace(s: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> None:
    _check_len(_replaced_len(str(s), str(old), str(new), count))


def _filter_join(value: Any, d: Any = "", attribute: Any = None, **kwargs: Any) -> list:
    items = list(value)
    _check_items(len(items))
    sep = str(kwargs.get("d", d))
    _check_len(sum(_text_len(v) for v in items) + len(sep) * len(items))
    return items


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), kwargs or tuple(args))


def _filter_count_arg(position: int, keyword: str):
    def check(value: Any, *args: Any, **kwargs: Any) -> None:
        n = kwargs.get(keyword, args[position - 1] if len(args) >= position else 0)
        if isinstance(n, int):
            _check_items(n)

    return check


def _filter_sum(iterable: Any, attribute: Any = None, start: Any = 0, **kwargs: Any) -> None:
    if not isinstance(kwargs.get("start", start), int | float):
        raise SecurityError("the sum filter adds numbers only")


_FILTER_CHECKS = {
    "center": lambda value, width=80, **kw: _check_len(int(kw.get("width", width))),
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "replace": _filter_replace,
    "join": _filter_join,
    "format": _filter_format,
    "batch": _filter_count_arg(1, "linecount"),
    "slice": _filter_count_arg(1, "slices"),
    "sum": _filter_sum,
    "truncate": lambda s, length=255, *a, **kw: _check_len(int(kw.get("length", length))),
}
_FILTERS = {name: _wrap_filter(name, f) for name, f in jinja2.defaults.DEFAULT_FILTERS.items()}


def _range(*args: int) -> range:
    rng = range(*args)
    _check_items(len(rng))
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    if n > 100 or max > 1000 or min > max:
        raise TemplateLimitError("lipsum() is limited to 100 paragraphs of 1000 words")
    return generate_lorem_ipsum(n, html, min, max)


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
        key = getattr(self, "_source_digest", None)
        if key is not None and key in _REFUSED:
            raise TemplateLimitError(_REFUSED[key])
        budget = _Budget(MAX_SECONDS, _SCOPE.get())
        token = _RENDER.set(budget)
        out: list[str] = []
        size = 0
        try:
            budget.tick(0)  # a scope already spent refuses at once
            for chunk in self.generate(*args, **kwargs):
                size += len(chunk)
                _check_len(size, "result")
                budget.tick()
                out.append(chunk)
        except TemplateLimitError as e:
            if key is not None:
                _remember(key, str(e))
            raise
        except (RecursionError, MemoryError) as e:
            raise TemplateLimitError(f"template nests too deeply or needs too much memory ({type(e).__name__})") from None
        finally:
            _RENDER.reset(token)
        return "".join(out)


def _remember(key: str, message: str) -> None:
    _REFUSED[key] = message
    while len(_REFUSED) > _REFUSED_SIZE:
        _REFUSED.popitem(last=False)


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
        self.filters.update(_FILTERS)
        self.globals.update(range=_range, lipsum=_lipsum)

    # bounded building blocks (compiled templates call them) ----------------------------------
    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        parts = list(parts)
        _check_len(sum(len(p) for p in parts))
        _tick()
        return "".join(parts)

    @staticmethod
    def bounded_concat(*values: Any) -> str:
        parts = [v if isinstance(v, str) else str(v) for v in values]
        return BoundedSandbox.concat(parts)

    @staticmethod
    def bounded_iter(iterable: Any) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    # compilation --------------------------------------------------------------------------------
    def _generate(self, source: nodes.Template, name, filename, defer_init: bool = False) -> str:
        return super()._generate(_BoundLoops().visit(source), name, filename, defer_init=defer_init)

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):  # type: ignore[override]
        if isinstance(source, str) and len(source) > MAX_SOURCE:
            raise TemplateLimitError(f"template of {len(source):,} characters (at most {MAX_SOURCE:,})")
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
        if isinstance(source, str) and _digest(source) in _REFUSED:
            raise TemplateLimitError(_REFUSED[_digest(source)])
        template = super().from_string(source, globals, template_class)
        if isinstance(source, str):
            template._source_digest = _digest(source)
        return template

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
        _tick()
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"calling {getattr(__obj, '__name__', type(__obj).__name__)!r} is not allowed "
                                "in templates")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and isinstance(__obj, types.BuiltinMethodType):
            _check_str_call(__obj.__name__, owner, args, kwargs)
            if __obj.__name__ == "join" and args:
                args = (_filter_join(args[0], owner),)
        elif isinstance(__obj, functools.partial) and isinstance(__obj.keywords.get("definition"), str):
            # a metric-hub function: `definition.format(select_expr=...)` (metric_config_parser.function)
            _check_format(__obj.keywords["definition"], args, kwargs)
        return _bounded(__context.call(__obj, *args, **kwargs))

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            (_check_len if isinstance(left, str) else _check_items)(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return _bounded(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any):
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map and args:
                _check_format(fmt, (), dict(args[0]))
            else:
                _check_format(fmt, args, kwargs)
            return _bounded(wrapped(*args, **kwargs))

        checked._sandbox_format = True  # type: ignore[attr-defined]
        return checked


_OWN_CALLABLES = (BoundedSandbox.bounded_iter, BoundedSandbox.bounded_concat)


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


def installed() -> bool:
    """Whether every module of `LIBRARY_MODULES` renders through the sandbox."""
    modules = [sys.modules.get(name) for name in LIBRARY_MODULES]
    return all(m is not None and getattr(m, "jinja2", _PROXY) is _PROXY for m in modules)


def render(source: str, **context: Any) -> str:
    """Render one template in the sandbox (for the product's own templates)."""
    return BoundedSandbox().from_string(source).render(**context)


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
