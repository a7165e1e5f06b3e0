"""Resource bounds of a template render: output and intermediate sizes, steps and time.

Jinja's sandbox stops a template from reaching Python; it does not stop `{% for i in range(10**8) %}`,
`{{ 'x' * 10**10 }}`, `{{ 9 ** 9 ** 9 }}` or a macro that calls itself into exponential output. The
`BoundedSandbox` (`sandbox.py`) routes every loop iteration, call, operator, filter, concatenation and
output chunk of a render through these checks:

* `MAX_OUTPUT` characters for the result and for any string built on the way (checked before it is
  built where the arguments tell its size: `*`, `+`, `%`, `format`, padding, `replace`, `join`...);
* `MAX_ITEMS` items for a `range()` or list; `MAX_INT_BITS` for an integer an operator makes;
* `MAX_STEPS` loop iterations, calls and operators, and `MAX_SECONDS`, per render; `SCOPE_SECONDS` for
  every render of one `render_scope()` (one experiment's resolution);
* a source that went over a bound is remembered and refused at once when rendered again.

Over a bound, a render raises `TemplateLimitError` (a Jinja `SecurityError`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import re
import string
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.utils import generate_lorem_ipsum

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


def tick(n: int = 1) -> None:
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


def digest(source: str) -> str:
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# ---- size checks ------------------------------------------------------------------------------


def check_len(n: int, what: str = "string") -> None:
    if n > MAX_OUTPUT:
        raise TemplateLimitError(f"template builds a {what} of {n:,} characters (at most {MAX_OUTPUT:,})")


def bounded(value: Any) -> Any:
    """`value`, refused when it is a string or list over the bounds."""
    if isinstance(value, str):
        check_len(len(value))
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
        (check_len if isinstance(seq, str) else check_items)(len(seq) * max(times, 0))


def check_items(n: int) -> None:
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
    check_len(len(fmt) + widths + len(specs) * longest)


def check_format(fmt: str, args: tuple, kwargs: dict) -> None:
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
    check_len(len(fmt) + widths + fields * longest)


def _replaced_len(s: str, old: str, new: str, count: int | None = None) -> int:
    n = s.count(old) if old else len(s) + 1
    if count is not None and count >= 0:
        n = min(n, count)
    return len(s) + n * (len(new) - len(old))


def check_str_call(name: str, s: str, args: tuple, kwargs: dict) -> None:
    if name not in _STR_METHODS:
        raise SecurityError(f"str.{name}() is not allowed in templates")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        check_len(args[0])
    elif name == "replace" and len(args) >= 2:
        check_len(_replaced_len(s, str(args[0]), str(args[1]), args[2] if len(args) > 2 else None))


# ---- filters and globals ----------------------------------------------------------------------


def _wrap_filter(name: str, func: Any) -> Any:
    """`func` with a step tick, an argument check for the filters that amplify, and a size check."""
    first = getattr(func, "jinja_pass_arg", None)  # eval_ctx / environment / context come first

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tick()
        plain = list(args[1:] if first is not None else args)
        precheck = _FILTER_CHECKS.get(name)
        if precheck is not None and plain:
            replaced = precheck(*plain, **kwargs)
            if replaced is not None:  # the check materialized an iterable: pass that on
                plain[0] = replaced
                args = (args[0], *plain) if first is not None else tuple(plain)
        return bounded(func(*args, **kwargs))

    return wrapper


def _filter_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    pad = len(width) if isinstance(width, str) else int(width)
    check_len(len(text) + (text.count("\n") + 1) * pad)


def _filter_wordwrap(s: Any, width: int = 79, break_long_words: bool = True, wrapstring: Any = None,
                     *_: Any, **kwargs: Any) -> None:
    text = str(s)
    wrap = kwargs.get("wrapstring", wrapstring) or "\n"
    lines = len(text) // max(int(kwargs.get("width", width)), 1) + text.count("\n") + 1
    check_len(len(text) + lines * len(str(wrap)))


def _filter_replace(s: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> None:
    check_len(_replaced_len(str(s), str(old), str(new), count))


def joined(value: Any, d: Any = "", attribute: Any = None, **kwargs: Any) -> list:
    items = list(value)
    check_items(len(items))
    sep = str(kwargs.get("d", d))
    check_len(sum(_text_len(v) for v in items) + len(sep) * len(items))
    return items


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), kwargs or tuple(args))


def _filter_count_arg(position: int, keyword: str):
    def check(value: Any, *args: Any, **kwargs: Any) -> None:
        n = kwargs.get(keyword, args[position - 1] if len(args) >= position else 0)
        if isinstance(n, int):
            check_items(n)

    return check


def _filter_sum(iterable: Any, attribute: Any = None, start: Any = 0, **kwargs: Any) -> None:
    if not isinstance(kwargs.get("start", start), int | float):
        raise SecurityError("the sum filter adds numbers only")


_FILTER_CHECKS = {
    "center": lambda value, width=80, **kw: check_len(int(kw.get("width", width))),
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "replace": _filter_replace,
    "join": joined,
    "format": _filter_format,
    "batch": _filter_count_arg(1, "linecount"),
    "slice": _filter_count_arg(1, "slices"),
    "sum": _filter_sum,
    "truncate": lambda s, length=255, *a, **kw: check_len(int(kw.get("length", length))),
}
FILTERS = {name: _wrap_filter(name, f) for name, f in jinja2.defaults.DEFAULT_FILTERS.items()}


def _range(*args: int) -> range:
    rng = range(*args)
    check_items(len(rng))
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    if n > 100 or max > 1000 or min > max:
        raise TemplateLimitError("lipsum() is limited to 100 paragraphs of 1000 words")
    return generate_lorem_ipsum(n, html, min, max)


def remember(key: str, message: str) -> None:
    _REFUSED[key] = message
    while len(_REFUSED) > _REFUSED_SIZE:
        _REFUSED.popitem(last=False)


GLOBALS = {"range": _range, "lipsum": _lipsum}


def check_binop(operator: str, left: Any, right: Any) -> None:
    """An intercepted `*`, `**`, `+` or `%` stays under the bounds (checked before it runs)."""
    tick()
    if operator == "*":
        _check_repeat(left, right)
    elif operator == "**":
        _check_power(left, right)
    elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        (check_len if isinstance(left, str) else check_items)(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def refused(source: str) -> str | None:
    """Why `source` was refused before (it went over a bound), or None."""
    return _REFUSED.get(digest(source))


@contextlib.contextmanager
def render_budget(source_digest: str | None) -> Iterator[None]:
    """One render's budget (inside the current `render_scope()`); a source over a bound is remembered."""
    if source_digest is not None and source_digest in _REFUSED:
        raise TemplateLimitError(_REFUSED[source_digest])
    budget = _Budget(MAX_SECONDS, _SCOPE.get())
    token = _RENDER.set(budget)
    try:
        budget.tick(0)  # a scope already spent refuses at once
        yield
    except TemplateLimitError as e:
        if source_digest is not None:
            remember(source_digest, str(e))
        raise
    except (RecursionError, MemoryError) as e:
        raise TemplateLimitError(f"template nests too deeply or needs too much memory ({type(e).__name__})") from None
    finally:
        _RENDER.reset(token)
