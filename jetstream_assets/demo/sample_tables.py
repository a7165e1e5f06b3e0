"""Small synthetic telemetry tables shaped after the SQL that real metric-hub configs generate.

The real configs read dozens of Mozilla tables (`telemetry.clients_daily`, `telemetry_stable.main_v5`,
`firefox_desktop.metrics`, search and newtab aggregates, ...). Their schemas are not available offline, so
they are derived from the SQL itself: every query (enrollments, segments, metrics of every default and
outcome) is parsed with sqlglot and each column reference is followed through data-source subqueries,
`SELECT *`, aliases and UNNESTs down to the base table it comes from. Types come from how a column is used
(`LOGICAL_OR(x)` is a boolean, `SUM(x)` a number, `x = 'click'` a string, `mozfun.hist.extract(x)` a
histogram, `mozfun.map.get_key(x, 'k')` a key/value list, `x.y` a struct) plus a hand-kept list for
Mozilla's nested telemetry columns (`_path_rule`). Values are plausible, not realistic: strings are drawn
from the literals the SQL compares them with (so filters such as `event_category = 'pictureinpicture'`
match some rows) and every table carries the clients of the experiments given, who enroll through
Normandy `enroll` events in `telemetry.events` (desktop) or Glean `nimbus_events` (other apps).

Key/value columns are kept as BigQuery has them (ARRAY<STRUCT<key, value>>): `sql/mozfun.py` provides
`map.get_key` for those list types.

Typical use (the real-config tests and `validate-config --synthetic`)::

    queries = experiment_queries(resolved, SampleExperiment("my-exp", date(2024, 1, 1)))
    write_sample_tables(root, [q.sql for q in queries], [SampleExperiment("my-exp", ...)])
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import attr
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from metric_config_parser.experiment import Branch, Experiment
from metric_config_parser.metric import AnalysisPeriod, Summary
from mozanalysis.experiment import TimeLimits
from mozilla_nimbus_schemas.jetstream import AnalysisBasis
from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from jetstream_assets.config.resolve import PLATFORMS, ResolvedConfig
from jetstream_assets.sql.mozfun import KV_KEY_TYPES, KV_VALUE_TYPES
from jetstream_assets.sql.queries import bases_for, enrollments_sql, metrics_for, metrics_sql
from jetstream_assets.sql.transpile import rename_udf_calls

TableKey = tuple[str, str]  # (dataset, table): the local warehouse ignores the project


class SampleTablesError(ValueError):
    """SQL whose tables cannot be derived (it does not parse); the message names the query."""


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


def _nest(path: list[str], leaf: TypeHint) -> TypeHint:
    """`leaf` placed at `path` inside structs."""
    for name in reversed(path):
        leaf = TypeHint(fields={name: leaf})
    return leaf


def _histogram_struct() -> TypeHint:
    """A Glean distribution (memory/timing/custom): sum + key/value buckets."""
    return TypeHint(fields={"sum": _hint("int"), "values": _kv(_hint("int"), _hint("int"))})


# Hand-kept knowledge of Mozilla's nested telemetry columns, by path (lower case): what the SQL alone
# cannot tell (a histogram is a JSON string, a labeled counter a key/value list of counts, ...).
_GLEAN_TYPES: dict[str, TypeHint | None] = {
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


def _path_rule(path: list[str]) -> TypeHint | None:
    """The type Mozilla's schemas give a column path, when the path alone says so."""
    p = [s.lower() for s in path]
    last = p[-1]
    if len(p) >= 3 and p[-3] == "metrics" and p[-2] in _GLEAN_TYPES:
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
        return _GLEAN_TYPES[kind]
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
    if _is_client_id(last) or last in ("document_id", "profile_group_id"):
        return _hint("str")
    return None


def _is_client_id(name: str) -> bool:
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
        return usage(parent, depth + 1)
    if isinstance(parent, exp.Case):
        return usage(parent, depth + 1)
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
            if _expr_path(node) is None:
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
    if name.startswith("mozfun_norm_"):
        return _hint("str")
    return TypeHint()


# ----------------------------------------------------------------------------------------------
# following column references to base tables


def _column_path(column: exp.Column) -> tuple[list[str], exp.Expression]:
    """The dotted parts of a column reference (with trailing `.field`s) and its outermost node."""
    parts = [p.name for p in column.parts]
    node: exp.Expression = column
    while isinstance(node.parent, exp.Dot) and node.parent.this is node:
        node = node.parent
        parts.append(node.name)
    return parts, node


def _expr_path(node: exp.Expression) -> list[str] | None:
    """Parts of a plain column path expression (`a.b.c`), None for anything computed."""
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return [p.name for p in node.parts]
    if isinstance(node, exp.Dot):
        inner = _expr_path(node.this)
        return None if inner is None else [*inner, node.name]
    return None


class _Collector:
    """Column paths and type hints per base table, gathered from many queries."""

    def __init__(self, exclude_datasets: Iterable[str] = (), unparsable: list[str] | None = None) -> None:
        self.tables: dict[TableKey, TypeHint] = {}
        self.exclude = frozenset(exclude_datasets)
        self.unparsable = unparsable
        self._active: set[tuple[int, tuple[str, ...]]] = set()

    # -- entry ---------------------------------------------------------------------------------
    def add_sql(self, sql: str) -> None:
        try:
            trees = sqlglot.parse(rename_udf_calls(sql), read="bigquery")
        except sqlglot.errors.ParseError as e:
            if self.unparsable is not None:
                self.unparsable.append(sql)
                return
            raise SampleTablesError(f"SQL does not parse as BigQuery: {e}") from e
        for tree in trees:
            if tree is None:
                continue
            for scope in traverse_scope(tree):
                self._scope(scope)
            for table in tree.find_all(exp.Table):  # tables read without naming any column
                key = self._table_key(table)
                if key is not None and key[0] not in self.exclude:
                    self.tables.setdefault(key, TypeHint())

    def _scope(self, scope: Scope) -> None:
        aliases = self._projection_aliases(scope)
        clauses = {id(p) for p in scope.expression.expressions} if isinstance(
            scope.expression, exp.Select
        ) else set()
        unnests = [
            source
            for _, source in scope.selected_sources.values()
            if isinstance(source, Scope) and source.is_udtf
        ]
        if isinstance(scope.expression, exp.Select):
            self._star_modifiers(scope, scope.expression)
            self._join_using(scope, scope.expression)
        for column in scope.columns:
            if isinstance(column.this, exp.Star):
                continue
            parts, outer = _column_path(column)
            if len(parts) == 1 and parts[0] in aliases and not self._inside(column, clauses):
                continue  # GROUP BY / ORDER BY on a projection alias
            # the argument of an UNNEST in this FROM reads the other sources, not the UNNEST
            skip = next((u for u in unnests if self._inside(column, {id(u.expression)})), None)
            self._resolve(scope, parts, usage(outer), skip)

    def _join_using(self, scope: Scope, select: exp.Select) -> None:
        """`JOIN ... USING (c)`: both sides have column `c`."""
        names = [
            ident.name
            for join in select.args.get("joins") or []
            for ident in join.args.get("using") or []
        ]
        if not names:
            return
        for _, source in scope.selected_sources.values():
            if isinstance(source, Scope) and source.is_udtf:
                continue
            for name in names:
                self._attribute(scope, source, [name], TypeHint())

    def _star_modifiers(self, scope: Scope, select: exp.Select) -> None:
        """`* EXCEPT (a)` / `* REPLACE (x AS b)` name columns the source must have."""
        for projection in select.expressions:
            star = projection.this if isinstance(projection, exp.Column) else projection
            if not isinstance(star, exp.Star):
                continue
            qualifier = [projection.table] if isinstance(projection, exp.Column) and projection.table else []
            names = [e.name for e in star.args.get("except_") or []]
            names += [r.alias for r in star.args.get("replace") or [] if isinstance(r, exp.Alias)]
            for name in names:
                self._resolve(scope, [*qualifier, name], TypeHint())

    @staticmethod
    def _inside(node: exp.Expression, ids: set[int]) -> bool:
        while node is not None:
            if id(node) in ids:
                return True
            node = node.parent
        return False

    @staticmethod
    def _projection_aliases(scope: Scope) -> set[str]:
        select = scope.expression
        if not isinstance(select, exp.Select):
            return set()
        return {p.alias for p in select.expressions if isinstance(p, exp.Alias)}

    # -- resolution ----------------------------------------------------------------------------
    def _resolve(
        self, scope: Scope, parts: list[str], hint: TypeHint, skip: Scope | None = None
    ) -> None:
        """Attribute a column path seen in `scope` (`skip`: an UNNEST whose own argument this is)."""
        key = (id(scope), tuple(parts))
        if key in self._active:  # a name that resolves to itself (e.g. via a correlated outer scope)
            return
        self._active.add(key)
        try:
            self._resolve_once(scope, parts, hint, skip)
        finally:
            self._active.discard(key)

    def _resolve_once(self, scope: Scope, parts: list[str], hint: TypeHint, skip: Scope | None) -> None:
        if len(parts) > 1 and parts[0] in scope.sources and scope.sources[parts[0]] is not skip:
            source = scope.sources[parts[0]]
            if not self._glean_table_named_like_column(source, parts):
                self._attribute(scope, source, parts[1:], hint)
                return
        source = self._unqualified_source(scope, parts[0], skip)
        if source is None:
            if scope.parent is not None:  # a correlated reference
                self._resolve(scope.parent, parts, hint)
            return
        self._attribute(scope, source, parts, hint)

    @staticmethod
    def _glean_table_named_like_column(source, parts: list[str]) -> bool:
        """`metrics.counter.x` reading Glean's `metrics` table unaliased: `metrics` is the column."""
        return (
            isinstance(source, exp.Table)
            and not source.alias
            and source.name == parts[0]
            and len(parts) > 2
            and parts[1].lower() in _GLEAN_TYPES
        )

    def _unqualified_source(self, scope: Scope, name: str, skip: Scope | None = None):
        # only what FROM/JOIN name: `scope.sources` also lists every CTE in sight
        sources = [
            (alias, source)
            for alias, (_, source) in scope.selected_sources.items()
            if source is not skip
        ]
        if not sources:
            return None
        unnests = [(a, s) for a, s in sources if isinstance(s, Scope) and s.is_udtf]
        others = [(a, s) for a, s in sources if not (isinstance(s, Scope) and s.is_udtf)]
        for _, source in unnests:
            if self._unnest_alias(source) == name:
                return source
        if not others:
            return unnests[0][1]
        if len(others) == 1:
            return others[0][1]
        for alias, source in others:  # mozanalysis: enrollments `e` joined with data source `ds`
            if alias == "ds":
                return source
        for _, source in others:
            if isinstance(source, Scope) and name in self._provided(source):
                return source
        for _, source in others:
            if isinstance(source, Scope) or self._table_key(source) is not None:
                return source
        return None

    @staticmethod
    def _provided(scope: Scope) -> set[str]:
        select = scope.expression
        if not isinstance(select, exp.Select):
            return set()
        return {p.alias_or_name for p in select.expressions}

    @staticmethod
    def _unnest_alias(scope: Scope) -> str | None:
        unnest = scope.expression
        alias = unnest.args.get("alias") if isinstance(unnest, exp.Unnest) else None
        if alias is None:
            return None
        columns = alias.columns
        return columns[0].name if columns else alias.name or None

    def _attribute(self, scope: Scope, source, path: list[str], hint: TypeHint) -> None:
        if isinstance(source, exp.Table):
            key = self._table_key(source)
            if key is not None and path:
                self._record(key, path, hint)
            return
        if not isinstance(source, Scope):
            return
        if source.is_udtf:
            self._attribute_unnest(source, path, hint)
            return
        select = source.expression
        if isinstance(select, exp.SetOperation):
            select = select.this  # the first SELECT of a UNION names the columns
            while isinstance(select, exp.SetOperation):
                select = select.this
        if not isinstance(select, exp.Select) or not path:
            return
        name = path[0]
        stars = []
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                stars.append(projection)
                continue
            if projection.alias_or_name == name:
                inner = projection.this if isinstance(projection, exp.Alias) else projection
                inner_path = _expr_path(inner)
                if inner_path is not None:
                    self._resolve(source, inner_path + path[1:], hint)
                return
        for star in stars:
            star_node = star.this if isinstance(star, exp.Column) else star
            excluded = {e.name for e in (star_node.args.get("except_") or [])}
            if name in excluded:
                continue
            if isinstance(star, exp.Column) and star.table:
                inner_source = source.sources.get(star.table)
                if inner_source is not None:
                    self._attribute(source, inner_source, path, hint)
            else:
                inner_source = self._unqualified_source(source, name)
                if inner_source is not None:
                    self._attribute(source, inner_source, path, hint)
            return

    def _attribute_unnest(self, unnest_scope: Scope, path: list[str], hint: TypeHint) -> None:
        """A field of an UNNEST element: the unnested expression is a list of such structs."""
        unnest = unnest_scope.expression
        if not isinstance(unnest, exp.Unnest) or not unnest.expressions:
            return
        alias = self._unnest_alias(unnest_scope)
        element_path = path[1:] if alias and path and path[0] == alias else path
        element = _nest(element_path, hint)
        inner = _expr_path(unnest.expressions[0])
        if inner is None:
            return
        outer = unnest_scope.parent
        if outer is None:
            return
        self._resolve(outer, inner, TypeHint(element=element), skip=unnest_scope)

    @staticmethod
    def _table_key(table: exp.Table) -> TableKey | None:
        name, dataset = table.name, table.db
        if not dataset and "." in name:  # `project.dataset.table` quoted as one identifier
            bits = name.split(".")
            name, dataset = bits[-1], bits[-2]
        if not dataset or not name or "{" in name or "{" in dataset:
            return None  # CTEs, results tables and unrendered templates are not telemetry
        return dataset, name

    def _record(self, key: TableKey, path: list[str], hint: TypeHint) -> None:
        if key[0] in self.exclude:
            return
        table = self.tables.setdefault(key, TypeHint())
        table.merge(_nest(path, hint))


# ----------------------------------------------------------------------------------------------
# types -> Arrow


_ARROW_LEAF = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
    "DOUBLE": pa.float64(),
}


@dataclass
class Column:
    """A resolved column (or struct field / element): Arrow type and how to fill it."""

    name: str
    kind: str  # leaf kind: id, group_id, date, ts, bool, int, bits, float, str, hist, json; or struct/list
    arrow: pa.DataType
    fields: list["Column"] = field(default_factory=list)
    element: "Column | None" = None
    literals: tuple[str, ...] = ()
    json_paths: tuple[str, ...] = ()


def _leaf_kind(name: str, hint: TypeHint) -> str:
    lname = name.lower()
    if _is_client_id(lname):
        return "id"
    if lname == "profile_group_id" or lname.endswith("profile_group_id"):
        return "group_id"
    if lname == "document_id":
        return "uuid"
    if lname.endswith("_bits"):
        return "bits"
    for kind in ("hist", "json", "ts", "date", "bool", "str", "float"):
        if kind in hint.hints:
            return kind
    if hint.hints & {"int", "num"}:
        return "float" if lname.endswith(("_mean", "hours_sum", "_hours")) else "int"
    if "castnum" in hint.hints:
        return "bool"
    return "str"


_KIND_ARROW = {
    "id": pa.string(), "group_id": pa.string(), "uuid": pa.string(), "date": pa.date32(),
    "ts": pa.timestamp("us"), "bool": pa.bool_(), "int": pa.int64(), "bits": pa.int64(),
    "float": pa.float64(), "str": pa.string(), "hist": pa.string(), "json": pa.string(),
}


def _column(name: str, hint: TypeHint, path: list[str]) -> Column:
    rule = _path_rule(path)
    if rule is not None and (rule.fields or rule.element or rule.hints):
        if rule.element is not None or rule.fields:
            hint = TypeHint(
                fields=rule.fields, element=rule.element, literals=set(hint.literals)
            ).merge(TypeHint(fields=hint.fields, element=hint.element, literals=hint.literals))
            if rule.element is not None and hint.element is not None and rule.element.fields:
                # a rule fixes the key/value types; usage only adds literals (keys looked up)
                for sub in ("key", "value"):
                    if sub in rule.element.fields:
                        fixed = rule.element.fields[sub]
                        used = hint.element.fields.get(sub, TypeHint())
                        hint.element.fields[sub] = TypeHint(
                            hints=set(fixed.hints), fields=dict(fixed.fields), element=fixed.element,
                            literals=used.literals | fixed.literals,
                        )
        elif not (
            rule.hints & {"date", "ts"}
            and hint.hints & {"str", "hist", "json", "num", "int", "float", "bool"}
        ):
            # a name that looks like a date but is used otherwise (Glean's string
            # client_info.first_run_date, a summed active_metric_date flag) keeps its usage
            hint = TypeHint(hints=set(rule.hints), literals=hint.literals, json_paths=hint.json_paths)
    if hint.element is not None:
        element = _column("element", hint.element, [*path, "[]"])
        if _is_kv(element):
            element = _kv_element(element)
        return Column(name, "list", pa.list_(element.arrow), element=element)
    if hint.fields:
        fields = [_column(n, sub, [*path, n]) for n, sub in sorted(hint.fields.items())]
        return Column(name, "struct", pa.struct([pa.field(f.name, f.arrow) for f in fields]), fields=fields)
    kind = _leaf_kind(name, hint)
    return Column(
        name, kind, _KIND_ARROW[kind], literals=tuple(sorted(hint.literals)),
        json_paths=tuple(sorted(hint.json_paths)),
    )


def _is_kv(element: Column) -> bool:
    return element.kind == "struct" and {f.name for f in element.fields} <= {"key", "value"} and any(
        f.name == "key" for f in element.fields
    )


_DUCK_OF_ARROW = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE"}


def _kv_element(element: Column) -> Column:
    """Key/value structs restricted to the types `map.get_key` has overloads for."""
    by_name = {f.name: f for f in element.fields}
    key = by_name["key"]
    if _DUCK_OF_ARROW.get(key.arrow) not in KV_KEY_TYPES:
        key = Column("key", "str", pa.string(), literals=key.literals)
    value = by_name.get("value") or Column("value", "int", pa.int64())
    if value.kind == "struct":
        names = [f.name for f in value.fields]
        if names == ["branch"] or set(names) <= {"branch", "extra"}:
            value = _experiment_value(set(names))
        else:
            value = Column("value", "str", pa.string(), literals=value.literals)
    elif _DUCK_OF_ARROW.get(value.arrow) not in KV_VALUE_TYPES:
        value = Column("value", "str", pa.string(), literals=value.literals)
    fields = [key, value]
    return Column(
        "element", "struct", pa.struct([pa.field(f.name, f.arrow) for f in fields]), fields=fields
    )


def _experiment_value(names: set[str]) -> Column:
    branch = Column("branch", "branch", pa.string())
    if "extra" not in names:
        return Column("value", "struct", pa.struct([pa.field("branch", pa.string())]), fields=[branch])
    extra_fields = [Column("type", "str", pa.string()), Column("enrollment_id", "uuid", pa.string())]
    extra = Column("extra", "struct", pa.struct([pa.field(f.name, f.arrow) for f in extra_fields]),
                   fields=extra_fields)
    return Column(
        "value", "struct",
        pa.struct([pa.field("branch", pa.string()), pa.field("extra", extra.arrow)]),
        fields=[branch, extra],
    )


def table_schemas(
    sqls: Iterable[str], exclude_datasets: Iterable[str] = (), unparsable: list[str] | None = None
) -> dict[TableKey, list[Column]]:
    """The base tables the SQL reads, each with the columns (and types) the SQL uses.

    Tables of `exclude_datasets` (the results dataset, where the enrollments table lives) are left out.
    SQL that does not parse raises SampleTablesError, or, given an `unparsable` list, is appended to it.
    """
    collector = _Collector(exclude_datasets, unparsable)
    for sql in sqls:
        collector.add_sql(sql)
    out: dict[TableKey, list[Column]] = {}
    for key, hint in sorted(collector.tables.items()):
        columns = [_column(name, sub, [name]) for name, sub in sorted(hint.fields.items())]
        out[key] = columns
    return out


# ----------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class SampleExperiment:
    """An experiment whose clients enroll in the sample tables."""

    slug: str
    start_date: dt.date
    enrollment_days: int = 7
    branches: tuple[str, ...] = ("control", "treatment")
    app_name: str = "firefox_desktop"

    @property
    def last_enrollment_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.enrollment_days - 1)

    def experiment(self, outcomes: Iterable[str] = (), segments: Iterable[str] = ()) -> Experiment:
        """The Experimenter record of this experiment (what `resolve_config` takes)."""
        platform = PLATFORMS[self.app_name]
        return Experiment(
            experimenter_slug=self.slug,
            normandy_slug=self.slug,
            type="v6",
            status="Live",
            branches=[Branch(slug=b, ratio=1) for b in self.branches],
            start_date=dt.datetime.combine(self.start_date, dt.time(), dt.UTC),
            end_date=None,
            proposed_enrollment=self.enrollment_days,
            enrollment_end_date=dt.datetime.combine(self.last_enrollment_date, dt.time(), dt.UTC),
            reference_branch=self.branches[0],
            is_high_population=False,
            app_name=self.app_name,
            app_id=platform.app_id,
            outcomes=list(outcomes),
            segments=list(segments),
        )


@dataclass
class _Client:
    client_id: str
    group_id: str
    sample_id: int
    enrollments: dict[str, tuple[dt.date, str]]  # slug -> (enrollment date, branch)


class _Filler:
    """Values for one row of one table."""

    def __init__(self, rng: random.Random, experiments: list[SampleExperiment]) -> None:
        self.rng = rng
        self.experiments = experiments

    def value(self, col: Column, client: _Client, day: dt.date):
        rng = self.rng
        if col.kind == "struct":
            if {f.name for f in col.fields} == {"key", "value"}:
                return self._pair(col, client, day)
            return {f.name: self.value(f, client, day) for f in col.fields}
        if col.kind == "list":
            return self._list(col, client, day)
        if col.kind == "id":
            return client.client_id
        if col.kind == "group_id":
            return client.group_id
        if col.kind == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128)))
        if col.kind == "date":
            return day
        if col.kind == "ts":
            return dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)))
        if rng.random() < 0.1:
            return None
        if col.kind == "bool":
            return rng.random() < 0.5
        if col.kind == "bits":
            return rng.getrandbits(28) | 1
        if col.kind == "int":
            return rng.choice((0, 0, 1, 2, 3, 5, 8, 13))
        if col.kind == "float":
            return round(rng.expovariate(0.5), 3)
        if col.kind == "hist":
            return self._histogram()
        if col.kind == "json":
            def text() -> str:
                return rng.choice(col.literals) if col.literals and rng.random() < 0.8 else "other"

            paths = [p.removeprefix("$.") for p in col.json_paths if p not in ("$", "")]
            if paths:
                return json.dumps({p: text() for p in paths})
            return json.dumps(text())
        if col.kind == "branch":
            return rng.choice(self.experiments[0].branches) if self.experiments else "control"
        # strings: the literals the SQL compares with, sometimes something else
        if col.literals and rng.random() < 0.85:
            return rng.choice(col.literals)
        return f"{col.name}_{rng.randrange(3)}"

    def _histogram(self) -> str:
        rng = self.rng
        values = {str(k): rng.randrange(0, 20) for k in rng.sample((0, 1, 2, 5, 10, 50, 100), 3)}
        total = sum(int(k) * v for k, v in values.items())
        return json.dumps(
            {"bucket_count": 10, "histogram_type": 0, "sum": total, "range": [1, 100], "values": values}
        )

    def _pair(self, col: Column, client: _Client, day: dt.date):
        by_name = {f.name: f for f in col.fields}
        return {
            "key": self.value(by_name["key"], client, day),
            "value": self.value(by_name["value"], client, day),
        }

    def _list(self, col: Column, client: _Client, day: dt.date):
        element = col.element
        assert element is not None
        if element.kind == "struct" and {f.name for f in element.fields} == {"key", "value"}:
            key = next(f for f in element.fields if f.name == "key")
            value = next(f for f in element.fields if f.name == "value")
            if value.kind == "struct" and any(f.name == "branch" for f in value.fields):
                return self._experiments_list(value, client, day)
            keys = list(key.literals) or (["a", "b"] if key.kind == "str" else [0, 1, 2])
            if key.kind == "int":
                keys = [int(k) for k in keys if re.fullmatch(r"-?\d+", str(k))] or [0, 1, 2]
            chosen = self.rng.sample(keys, k=min(len(keys), self.rng.randint(1, 3)))
            return [{"key": k, "value": self.value(value, client, day)} for k in chosen]
        return [self.value(element, client, day) for _ in range(self.rng.randint(0, 2))]

    def _experiments_list(self, value: Column, client: _Client, day: dt.date):
        out = []
        for slug, (enrolled, branch) in client.enrollments.items():
            if day >= enrolled:
                v = {"branch": branch}
                if any(f.name == "extra" for f in value.fields):
                    v["extra"] = {"type": "nimbus", "enrollment_id": client.client_id}
                out.append({"key": slug, "value": v})
        return out


def _clients(experiments: list[SampleExperiment], n: int, rng: random.Random) -> list[_Client]:
    clients = []
    for i in range(n):
        enrollments = {}
        for e in experiments:
            if rng.random() < 0.8:  # some clients never enroll
                day = e.start_date + dt.timedelta(days=rng.randrange(e.enrollment_days))
                enrollments[e.slug] = (day, e.branches[i % len(e.branches)])
        clients.append(
            _Client(
                client_id=str(uuid.UUID(int=rng.getrandbits(128))),
                group_id=str(uuid.UUID(int=rng.getrandbits(128))),
                sample_id=rng.randrange(100),
                enrollments=enrollments,
            )
        )
    return clients


def _names(columns: list[Column]) -> set[str]:
    return {c.name for c in columns}


def _not_enrolling(row: dict) -> dict:
    """A random row must not enroll anyone: enrollments come from `_normandy_rows` and
    `_events_stream_rows` only, so branches and dates are the experiments' own."""
    category = row.get("event_category")
    if category == "normandy" and row.get("event_method") in ("enroll", "expose", "exposure"):
        row["event_method"] = "unenroll"
    if category == "nimbus_events" and row.get("event_name") in ("enrollment", "exposure"):
        row["event_name"] = "unenrollment"
    return row


def _normandy_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Normandy enroll + expose events (desktop's enrollment source) for every enrollment."""
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            for method in ("enroll", "expose"):
                row = {c.name: filler.value(c, client, day) for c in columns}
                row.update(
                    event_category="normandy", event_method=method, event_string_value=slug,
                    event_object="nimbus_experiment",
                )
                if "event_map_values" in row:
                    row["event_map_values"] = [
                        {"key": "branch", "value": branch},
                        {"key": "branchSlug", "value": branch},
                        {"key": "enrollmentId", "value": client.client_id},
                    ]
                if "sample_id" in row:
                    row["sample_id"] = client.sample_id
                rows.append(row)
    return rows


def _events_stream_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Glean `nimbus_events` enrollment + exposure events in an `events_stream` table (the enrollment
    source of Glean apps), with experiment and branch in the JSON `event_extra`."""
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            for name in ("enrollment", "exposure"):
                row = {c.name: filler.value(c, client, day) for c in columns}
                row.update(event_category="nimbus_events", event_name=name,
                           event_extra=json.dumps({"experiment": slug, "branch": branch}))
                if "sample_id" in row:
                    row["sample_id"] = client.sample_id
                rows.append(row)
    return rows


def _glean_event_rows(columns: list[Column], clients: list[_Client], filler: _Filler) -> list[dict]:
    """Glean `nimbus_events` enrollment + exposure events in an `events` ping table (`UNNEST(events)`),
    as custom enrollment queries read them."""
    events_col = next(c for c in columns if c.name == "events")
    rows = []
    for client in clients:
        for slug, (day, branch) in client.enrollments.items():
            row = {c.name: filler.value(c, client, day) for c in columns}
            events = []
            for name in ("enrollment", "exposure"):
                event = filler.value(events_col.element, client, day) if events_col.element else {}
                if isinstance(event, dict):
                    event.update(category="nimbus_events", name=name)
                    if "extra" in event:
                        event["extra"] = [
                            {"key": "experiment", "value": slug},
                            {"key": "branch", "value": branch},
                        ]
                    events.append(event)
            row["events"] = events
            rows.append(row)
    return rows


@dataclass
class SampleTables:
    """What `write_sample_tables` wrote."""

    root: Path
    tables: dict[TableKey, Path]
    schemas: dict[TableKey, list[Column]]
    first_date: dt.date
    last_date: dt.date
    clients: int


def write_sample_tables(
    root: str | Path,
    sqls: Iterable[str],
    experiments: Iterable[SampleExperiment],
    *,
    first_date: dt.date | None = None,
    last_date: dt.date | None = None,
    clients: int = 40,
    seed: int = 0,
    exclude_datasets: Iterable[str] = ("mozanalysis",),
    schemas: dict[TableKey, list[Column]] | None = None,
) -> SampleTables:
    """Write `<root>/<dataset>/<table>.parquet` for every base table `sqls` read.

    Each client has a row per table on most days between `first_date` (default: 30 days before the
    earliest start, for pre-enrollment windows) and `last_date` (default: 28 days after the latest
    enrollment end), and enrolls in each experiment on a day of its enrollment period. With
    `clients=0` the tables are empty (enough for dry runs) and no experiment is needed. `schemas`
    (from `table_schemas`) replaces deriving them from `sqls`.
    """
    experiments = list(experiments)
    if not experiments and clients:
        raise SampleTablesError("give at least one SampleExperiment: sample tables carry its enrollments")
    rng = random.Random(seed)
    today = dt.date.today()
    first = first_date or min((e.start_date for e in experiments), default=today) - dt.timedelta(days=30)
    last = last_date or max((e.last_enrollment_date for e in experiments), default=today) + dt.timedelta(
        days=28
    )
    if last < first:
        raise SampleTablesError(f"last_date {last} is before first_date {first}")
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    schemas = dict(schemas) if schemas is not None else table_schemas(sqls, exclude_datasets)
    people = _clients(experiments, clients, rng)
    filler = _Filler(rng, experiments)
    written: dict[TableKey, Path] = {}
    for key, columns in schemas.items():
        if not columns:
            columns = [Column("client_id", "id", pa.string()), Column("submission_date", "date", pa.date32())]
            schemas[key] = columns
        rows = []
        for client in people:
            for day in days:
                if rng.random() < 0.6:
                    rows.append(_not_enrolling({c.name: filler.value(c, client, day) for c in columns}))
        names = _names(columns)
        if {"event_category", "event_method", "event_string_value"} <= names:
            rows += _normandy_rows(columns, people, filler)
        extra = next((c for c in columns if c.name == "event_extra"), None)
        if {"event_category", "event_name"} <= names and extra is not None and extra.kind == "json":
            rows += _events_stream_rows(columns, people, filler)
        events = next((c for c in columns if c.name == "events" and c.kind == "list"), None)
        if events is not None and events.element is not None and events.element.kind == "struct" and {
            "category", "name"
        } <= _names(events.element.fields):
            rows += _glean_event_rows(columns, people, filler)
        schema = pa.schema([pa.field(c.name, c.arrow) for c in columns])
        table = pa.Table.from_pylist(rows, schema=schema)
        path = Path(root) / key[0] / f"{key[1]}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        written[key] = path
    return SampleTables(Path(root), written, schemas, first, last, clients)


# ----------------------------------------------------------------------------------------------
# the queries of a resolved config


#: Analysis window (start day, length in days) used for each period's sample query.
PERIOD_WINDOWS: dict[AnalysisPeriod, tuple[int, int]] = {
    AnalysisPeriod.DAY: (0, 1),
    AnalysisPeriod.WEEK: (0, 7),
    AnalysisPeriod.DAYS_28: (0, 28),
    AnalysisPeriod.OVERALL: (0, 21),
    AnalysisPeriod.PREENROLLMENT_WEEK: (-7, 7),
    AnalysisPeriod.PREENROLLMENT_DAYS_28: (-28, 28),
}


def time_limits(experiment: SampleExperiment, period: AnalysisPeriod) -> TimeLimits:
    """A single analysis window of `period` (Jetstream's first window) for the sample experiment."""
    start, length = PERIOD_WINDOWS[period]
    last_full = experiment.last_enrollment_date + dt.timedelta(days=max(start + length, 1))
    return TimeLimits.for_single_analysis_window(
        first_enrollment_date=experiment.start_date.isoformat(),
        last_date_full_data=last_full.isoformat(),
        analysis_start_days=start,
        analysis_length_dates=length,
        num_dates_enrollment=experiment.enrollment_days,
    )


@dataclass(frozen=True)
class SampleQuery:
    """One query of a resolved config: the enrollments query, or metrics for a period and basis."""

    label: str  # "enrollments" or "<period>/<basis>"
    sql: str
    period: AnalysisPeriod | None = None
    basis: AnalysisBasis | None = None
    metrics: tuple[str, ...] = ()


def unique_summaries(resolved: ResolvedConfig, names: Iterable[str] | None = None) -> list[Summary]:
    """Every (metric, statistic) of every period once, in config order; only `names` when given."""
    wanted = None if names is None else set(names)
    seen: set[tuple[str, str]] = set()
    out = []
    for period in AnalysisPeriod:
        for summary in resolved.config.metrics.get(period, []):
            ident = (summary.metric.name, summary.statistic.name)
            if ident in seen or (wanted is not None and summary.metric.name not in wanted):
                continue
            seen.add(ident)
            out.append(summary)
    return out


def all_metrics_sql(
    resolved: ResolvedConfig,
    limits: TimeLimits,
    basis: AnalysisBasis,
    enrollments_table: str,
    names: Iterable[str] | None = None,
) -> str | None:
    """One metrics query over one window holding the metrics of every period (as Jetstream's
    `validate` does); None when no metric has SQL. Restricted to `names` when given."""
    summaries = [
        s for s in unique_summaries(resolved, names)
        if basis in s.metric.analysis_bases
        and (s.metric.select_expression or s.metric.depends_on)
    ]
    if not any(
        s.metric.select_expression or any(d.metric.select_expression for d in s.metric.depends_on or [])
        for s in summaries
    ):
        return None
    only = dataclasses.replace(
        resolved,
        config=attr.evolve(resolved.config, metrics={AnalysisPeriod.OVERALL: summaries}),
    )
    return metrics_sql(only, limits, AnalysisPeriod.OVERALL, basis, enrollments_table)


def experiment_queries(
    resolved: ResolvedConfig,
    experiment: SampleExperiment,
    enrollments_table: str = "enrollments",
    *,
    per_period: bool = False,
    bases: Iterable[AnalysisBasis] = (AnalysisBasis.ENROLLMENTS,),
    names: Iterable[str] | None = None,
) -> list[SampleQuery]:
    """The enrollments query and the metrics queries of `resolved` for `experiment`.

    By default one metrics query per basis holds every metric (one `overall`-like window); with
    `per_period`, each period gets its own query over its first Jetstream window.
    """
    names = None if names is None else list(names)
    limits = time_limits(experiment, AnalysisPeriod.WEEK)
    out = [SampleQuery("enrollments", enrollments_sql(resolved, limits))]
    for basis in bases:
        if per_period:
            for period in AnalysisPeriod:
                if basis not in bases_for(resolved, period):
                    continue
                metrics = tuple(dict.fromkeys(
                    s.metric.name for s in metrics_for(resolved, period, basis)
                    if s.metric.select_expression and (names is None or s.metric.name in names)
                ))
                if not metrics:
                    continue
                only = dataclasses.replace(resolved, config=attr.evolve(
                    resolved.config,
                    metrics={period: [s for s in resolved.config.metrics.get(period, [])
                                      if s.metric.name in metrics]},
                ))
                sql = metrics_sql(only, time_limits(experiment, period), period, basis, enrollments_table)
                out.append(SampleQuery(f"{period.value}/{basis.value}", sql, period, basis, metrics))
            continue
        sql = all_metrics_sql(
            resolved, time_limits(experiment, AnalysisPeriod.OVERALL), basis, enrollments_table, names
        )
        if sql is not None:
            metrics = tuple(dict.fromkeys(
                s.metric.name for s in unique_summaries(resolved, names)
                if s.metric.select_expression and basis in s.metric.analysis_bases
            ))
            out.append(SampleQuery(f"all/{basis.value}", sql, None, basis, metrics))
    return out
