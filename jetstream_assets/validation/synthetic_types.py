"""Column types of synthetic tables, from how the SQL uses each column.

Mozilla's table schemas are not available offline, so a column's type comes from its uses
(`LOGICAL_OR(x)` is a boolean, `SUM(x)` a number, `x = 'click'` a string, `UNNEST(x)` a list,
`mozfun.hist.extract(x)` a histogram, `mozfun.map.get_key(x, 'k')` a key/value list, `x.y` a struct)
plus a hand-kept list for Mozilla's nested telemetry columns (`path_rule`). Every use of a column is a
`TypeHint`; the hints of all its uses are merged (`synthetic_schemas`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlglot import exp

# ----------------------------------------------------------------------------------------------
# inferred types


@dataclass
class TypeHint:
    """What the SQL says about one column (or struct field / list element): merged over every use."""

    hints: set[str] = field(default_factory=set)
    fields: dict[str, "TypeHint"] = field(default_factory=dict)
    element: "TypeHint | None" = None
    literals: set[str] = field(default_factory=set)
    json_paths: set[str] = field(default_factory=set)

    def merge(self, other: "TypeHint") -> "TypeHint":
        self.hints |= other.hints
        self.literals |= other.literals
        self.json_paths |= other.json_paths
        for name, sub in other.fields.items():
            self.fields.setdefault(name, TypeHint()).merge(sub)
        if other.element is not None:
            if self.element is None:
                self.element = TypeHint()
            self.element.merge(other.element)
        return self


def _hint(*hints: str, literals: Iterable[str] = ()) -> TypeHint:
    return TypeHint(hints=set(hints), literals=set(literals))


def _kv(key: TypeHint, value: TypeHint) -> TypeHint:
    return TypeHint(element=TypeHint(fields={"key": key, "value": value}))


def nest(path: list[str], leaf: TypeHint) -> TypeHint:
    """`leaf` placed at `path` inside structs."""
    for name in reversed(path):
        leaf = TypeHint(fields={name: leaf})
    return leaf


def _histogram_struct() -> TypeHint:
    """A Glean distribution (memory/timing/custom): sum + key/value buckets."""
    return TypeHint(fields={"sum": _hint("int"), "values": _kv(_hint("int"), _hint("int"))})


# Hand-kept knowledge of Mozilla's nested telemetry columns, by path (lower case): what the SQL alone
# cannot tell (a histogram is a JSON string, a labeled counter a key/value list of counts, ...).
GLEAN_TYPES: dict[str, TypeHint | None] = {
    "boolean": _hint("bool"),
    "counter": _hint("int"),
    "quantity": _hint("int"),
    "string": _hint("str"),
    "text": _hint("str"),
    "url": _hint("str"),
    "uuid": _hint("str"),
    "datetime": _hint("str"),
    "string_list": None,  # lists and key/value lists, below
    "labeled_counter": None,
    "labeled_boolean": None,
    "labeled_string": None,
    "memory_distribution": None,
    "timing_distribution": None,
    "custom_distribution": None,
}


def path_rule(path: list[str]) -> TypeHint | None:
    """The type Mozilla's schemas give a column path, when the path alone says so."""
    p = [s.lower() for s in path]
    last = p[-1]
    if len(p) >= 3 and p[-3] == "metrics" and p[-2] in GLEAN_TYPES:
        kind = p[-2]
        if kind == "labeled_counter":
            return _kv(_hint("str"), _hint("int"))
        if kind == "labeled_boolean":
            return _kv(_hint("str"), _hint("bool"))
        if kind == "labeled_string":
            return _kv(_hint("str"), _hint("str"))
        if kind == "string_list":
            return TypeHint(element=_hint("str"))
        if kind.endswith("_distribution"):
            return _histogram_struct()
        return GLEAN_TYPES[kind]
    if len(p) >= 2 and p[-2] == "histograms":
        return _hint("hist")
    if len(p) >= 2 and p[-2] == "keyed_histograms":
        return _kv(_hint("str"), _hint("hist"))
    if len(p) >= 2 and p[-2] == "scalars":
        return _hint("int")
    if len(p) >= 2 and p[-2] == "keyed_scalars":
        return _kv(_hint("str"), _hint("int"))
    if last in ("event_map_values", "extra") and len(p) <= 2:
        return _kv(_hint("str"), _hint("str"))
    if last == "submission_date" or last.endswith("_date"):
        return _hint("date")
    if last == "submission_timestamp" or last.endswith("_timestamp") or last == "timestamp":
        return _hint("ts")
    if last in ("sample_id",) or last.endswith("_bits"):
        return _hint("int")
    if is_client_id(last) or last in ("document_id", "profile_group_id"):
        return _hint("str")
    return None


def is_client_id(name: str) -> bool:
    return name in ("client_id", "glean_client_id", "legacy_telemetry_client_id") or name.endswith(
        "_client_id"
    )


# ----------------------------------------------------------------------------------------------
# how an expression's value is used


_NUMERIC_PARENTS = (
    exp.Sum, exp.Avg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.SafeDivide, exp.Mod, exp.Stddev,
    exp.Variance, exp.Quantile, exp.ApproxQuantile,
)
_BOOLEAN_PARENTS = (exp.LogicalOr, exp.LogicalAnd, exp.CountIf, exp.Not, exp.And, exp.Or, exp.Where)
_STRING_PARENTS = (
    exp.Like, exp.ILike, exp.RegexpLike, exp.RegexpExtract, exp.Lower, exp.Upper, exp.Split,
    exp.StartsWith, exp.Substring, exp.Trim, exp.Length, exp.Replace, exp.StrToTime, exp.StrToDate,
    exp.Concat, exp.StrPosition,
)
_INTEGER_PARENTS = (exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseLeftShift,
                    exp.BitwiseRightShift, exp.BitwiseNot)
_TRANSPARENT = (exp.Paren, exp.IgnoreNulls, exp.RespectNulls, exp.Min, exp.Max, exp.AnyValue,
                exp.Distinct, exp.Filter)
_HIST_FUNCTIONS = {
    "mozfun_hist_extract", "mozfun_hist_threshold_count", "udf_histogram_max_key_with_nonzero_value",
}


def _literal_hint(node: exp.Expression) -> TypeHint | None:
    if isinstance(node, exp.Literal):
        if node.is_string:
            text = node.this
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return _hint("date")
            return _hint("str", literals=[text])
        return _hint("int" if re.fullmatch(r"-?\d+", str(node.this)) else "float")
    if isinstance(node, exp.Boolean):
        return _hint("bool")
    if isinstance(node, exp.Neg):
        return _literal_hint(node.this)
    if isinstance(node, exp.Date | exp.DateAdd | exp.DateSub | exp.CurrentDate | exp.TsOrDsToDate):
        return _hint("date")
    return None


def _branch_literals(node: exp.Expression, branch: exp.Expression) -> TypeHint:
    """Type hints from the literal values of a CASE's (or IF's) other branches."""
    case = node.parent if isinstance(node, exp.If) and isinstance(node.parent, exp.Case) else node
    if isinstance(case, exp.Case):
        values = [i.args.get("true") for i in case.args.get("ifs") or []] + [case.args.get("default")]
    else:  # IF(cond, a, b)
        values = [case.args.get("true"), case.args.get("false")]
    out = TypeHint()
    for value in values:
        if value is not None and value is not branch and (lit := _literal_hint(value)) is not None:
            out.merge(TypeHint(hints=lit.hints))  # the type only: another branch's text is not this one's
    return out


def _like_literal(pattern: str) -> str:
    """A string matching a LIKE pattern."""
    return pattern.replace("\\_", "_").replace("%", "").replace("_", "x") or "x"


def usage(node: exp.Expression, depth: int = 0) -> TypeHint:
    """The type the surrounding SQL expects `node` to have."""
    parent = node.parent
    if parent is None or depth > 30:
        return TypeHint()
    if isinstance(parent, exp.Dot) and parent.this is node:
        return TypeHint(fields={parent.name: usage(parent, depth + 1)})
    if isinstance(parent, _TRANSPARENT):
        return usage(parent, depth + 1)
    if isinstance(parent, exp.Coalesce):
        out = TypeHint()
        for other in [parent.this, *parent.expressions]:
            if other is not node and (lit := _literal_hint(other)) is not None:
                out.merge(lit)
        return out.merge(usage(parent, depth + 1))
    if isinstance(parent, exp.If):
        if parent.this is node:
            return _hint("bool")
        # a branch value: typed like the literals of the other branches (THEN 0 / ELSE 'none'), then
        # by how the whole CASE / IF is used
        return _branch_literals(parent, node).merge(usage(parent, depth + 1))
    if isinstance(parent, exp.Case):
        if parent.this is node:  # CASE x WHEN 1 THEN ...: x is compared with the WHEN values
            out = TypeHint()
            for when in parent.args.get("ifs") or []:
                if (lit := _literal_hint(when.this)) is not None:
                    out.merge(lit)
            return out
        return _branch_literals(parent, node).merge(usage(parent, depth + 1))
    if isinstance(parent, exp.Unnest):  # UNNEST(x): x is a list ('a' IN UNNEST(x): of what 'a' is)
        element = TypeHint()
        if isinstance(parent.parent, exp.In) and (lit := _literal_hint(parent.parent.this)) is not None:
            element = lit
        return TypeHint(element=element)
    if isinstance(parent, exp.Is):
        return _hint("bool") if isinstance(parent.expression, exp.Boolean) else TypeHint()
    if isinstance(parent, exp.Join) or (isinstance(parent, exp.Having)):
        return _hint("bool")
    if isinstance(parent, _BOOLEAN_PARENTS):
        return _hint("bool")
    if isinstance(parent, exp.Binary) and isinstance(
        parent, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE | exp.NullSafeEQ
    ):
        other = parent.expression if parent.this is node else parent.this
        return _literal_hint(other) or TypeHint()
    if isinstance(parent, exp.Between) and parent.this is node:
        out = TypeHint()
        for bound in (parent.args.get("low"), parent.args.get("high")):
            if bound is not None and (lit := _literal_hint(bound)) is not None:
                out.merge(lit)
        return out
    if isinstance(parent, exp.In) and parent.this is node:
        out = TypeHint()
        for item in parent.expressions:
            if (lit := _literal_hint(item)) is not None:
                out.merge(lit)
        return out
    if isinstance(parent, exp.Like | exp.ILike) and parent.this is node:
        pattern = parent.expression
        lits = [_like_literal(pattern.this)] if isinstance(pattern, exp.Literal) else []
        return _hint("str", literals=lits)
    if isinstance(parent, _STRING_PARENTS):
        return _hint("str") if parent.this is node else TypeHint()
    if isinstance(parent, _INTEGER_PARENTS):
        return _hint("int")
    if isinstance(parent, _NUMERIC_PARENTS):
        return _hint("num")
    if isinstance(parent, exp.Cast | exp.TryCast):
        target = parent.to
        if target.is_type(*exp.DataType.TEMPORAL_TYPES):
            return _hint("ts")
        if target.is_type(*exp.DataType.NUMERIC_TYPES):
            if expr_path(node) is None:
                return _hint("str")  # SAFE_CAST(get_key(map, 'k') AS INT64): a stored string
            return _hint("castnum")  # CAST(flag AS INT): a boolean unless other uses say more
        return TypeHint()
    if isinstance(parent, exp.Date | exp.DateTrunc | exp.TimestampTrunc | exp.TsOrDsToDate):
        return _hint("ts") if parent.this is node else TypeHint()
    if isinstance(parent, exp.JSONExtractScalar | exp.JSONExtract):
        path = parent.expression.sql("bigquery").strip("'\"") if parent.expression else "$"
        if path == "$.sum":
            return _hint("hist")
        out = _hint("json")
        out.json_paths.add(path)
        out.literals |= usage(parent, depth + 1).literals
        return out
    if isinstance(parent, exp.ArrayAgg):  # ARRAY_AGG(x)[OFFSET(0)] = 'a': x is what the elements are
        element = usage(parent, depth + 1).element
        return element if element is not None else TypeHint()
    if isinstance(parent, exp.ArraySize):
        return TypeHint(element=TypeHint())
    if isinstance(parent, exp.Bracket) and parent.this is node:
        return TypeHint(element=usage(parent, depth + 1))
    if isinstance(parent, exp.ArgMax | exp.ArgMin):
        return usage(parent, depth + 1) if parent.this is node else TypeHint()
    if isinstance(parent, exp.Anonymous):
        return _function_usage(parent, node, depth)
    return TypeHint()


def _function_usage(call: exp.Anonymous, node: exp.Expression, depth: int) -> TypeHint:
    name = call.name.lower()
    args = call.expressions
    index = next((i for i, a in enumerate(args) if a is node), -1)
    if name in _HIST_FUNCTIONS:
        return _hint("hist") if index == 0 else TypeHint()
    if name == "mozfun_map_get_key" and index == 0:
        key = _literal_hint(args[1]) if len(args) > 1 else None
        return _kv(key or _hint("str"), usage(call, depth + 1))
    if name == "mozfun_map_extract_keyed_scalar_sum" and index == 0:
        return _kv(_hint("str"), _hint("int"))
    if name == "udf_keyed_histogram_get_sum" and index == 0:
        return _kv(_hint("str"), _hint("hist"))
    if name.startswith("mozfun_bits28_") and index == 0:
        return _hint("int")
    if name == "mozfun_norm_windows_version_info":
        return _hint("int") if index == 2 else _hint("str")
    if name.startswith("mozfun_norm_") or name == "udf_normalize_search_engine":
        return _hint("str")
    if name == "udf_monetized_search":  # (engine, country, distribution_id, submission_date)
        return _hint("date") if index == 3 else _hint("str")
    return TypeHint()


# ----------------------------------------------------------------------------------------------
# following column references to base tables


def column_path(column: exp.Column) -> tuple[list[str], exp.Expression]:
    """The dotted parts of a column reference (with trailing `.field`s) and its outermost node."""
    parts = [p.name for p in column.parts]
    node: exp.Expression = column
    while isinstance(node.parent, exp.Dot) and node.parent.this is node:
        node = node.parent
        parts.append(node.name)
    return parts, node


def expr_path(node: exp.Expression) -> list[str] | None:
    """Parts of a plain column path expression (`a.b.c`), None for anything computed."""
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return [p.name for p in node.parts]
    if isinstance(node, exp.Dot):
        inner = expr_path(node.this)
        return None if inner is None else [*inner, node.name]
    return None
