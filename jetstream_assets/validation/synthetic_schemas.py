"""The base tables a set of queries read, each with the columns (and types) the SQL uses.

Every query (enrollments, segments, metrics) is parsed with sqlglot and each column reference is followed
through data-source subqueries, CTEs, `SELECT *`, aliases and UNNESTs down to the base table it comes
from; its type comes from how it is used (`synthetic_types`). Key/value columns are kept as BigQuery has
them (ARRAY<STRUCT<key, value>>): `sql/mozfun.py` provides `map.get_key` for those list types.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from jetstream_assets.sql.transpile import TranspileError, inside_any, parse_bigquery
from jetstream_assets.validation.synthetic_columns import Column, column
from jetstream_assets.validation.synthetic_types import (
    GLEAN_TYPES,
    TypeHint,
    column_path,
    expr_path,
    nest,
    usage,
)

__all__ = ["Column", "ENROLLMENT_COLUMNS", "SampleTablesError", "TableKey", "table_schemas", "tree_schemas"]

#: columns of an enrollments table (mozanalysis' results dataset): never a data source's
ENROLLMENT_COLUMNS = frozenset({
    "analysis_id", "branch", "enrollment_date", "num_enrollment_events", "exposure_date", "num_exposure_events",
})

TableKey = tuple[str, str]  # (dataset, table): the local warehouse ignores the project


#: a base-table column a path reads: (table, column path, element paths of the UNNESTs on the way there)
_Route = tuple[TableKey, tuple[str, ...], tuple[tuple[str, ...], ...]]


@dataclass(frozen=True)
class _Memo:
    anchor: object  # the scope the routes were computed for (kept alive: its id is in the key)
    routes: tuple
    visited: frozenset  # the names the resolution went through (the cycle guard's keys)


class SampleTablesError(ValueError):
    """SQL whose tables cannot be derived (it does not parse); the message names the query."""


# ----------------------------------------------------------------------------------------------
# following column references to base tables


class _Collector:
    """Column paths and type hints per base table, gathered from many queries."""

    def __init__(self, exclude_datasets: Iterable[str] = (), unparsable: list[str] | None = None) -> None:
        self.tables: dict[TableKey, TypeHint] = {}
        self.exclude = frozenset(exclude_datasets)
        self.unparsable = unparsable
        self._active: set[tuple[int, tuple[str, ...]]] = set()
        self._routes: dict[tuple, _Memo] = {}
        self._cuts = 0  # times the cycle guard in `_route` stopped a resolution
        self._visited: set[tuple[int, tuple[str, ...]]] = set()

    # -- entry ---------------------------------------------------------------------------------
    def add_sql(self, sql: str) -> None:
        try:
            trees = parse_bigquery(sql)
        except TranspileError as e:
            if self.unparsable is not None:
                self.unparsable.append(sql)
                return
            raise SampleTablesError(str(e)) from e
        self.add_trees(trees)

    def add_trees(self, trees: list) -> None:
        """Queries already parsed (BigQuery dialect, functions renamed); read only."""
        for tree in trees:
            if tree is None:
                continue
            self._routes.clear()  # keyed by the ids of this tree's scopes and nodes
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
            parts, outer = column_path(column)
            if len(parts) == 1 and parts[0] in aliases and not inside_any(column, clauses):
                continue  # GROUP BY / ORDER BY on a projection alias
            # the argument of an UNNEST in this FROM reads the other sources, not the UNNEST
            skip = next((u for u in unnests if inside_any(column, {id(u.expression)})), None)
            routes = self._route(scope, tuple(parts), skip)
            if routes:  # a column of a CTE of constants (the stand-in enrollments) needs no type
                self._record_all(routes, usage(outer))

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
                self._record_all(self._route_source(source, (name,)), TypeHint())

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
                self._record_all(self._route(scope, (*qualifier, name), None), TypeHint())

    @staticmethod
    def _projection_aliases(scope: Scope) -> set[str]:
        select = scope.expression
        if not isinstance(select, exp.Select):
            return set()
        return {p.alias for p in select.expressions if isinstance(p, exp.Alias)}

    # -- resolution ----------------------------------------------------------------------------
    # A column path is followed to the base-table columns it reads (its routes) without its type hint,
    # then the hint is recorded at each: a query names the same column many times (the enrollments'
    # `analysis_id`, `branch` in every data source, USING and GROUP BY), and each path is followed once.
    def _record_all(self, routes: tuple[_Route, ...], hint: TypeHint) -> None:
        for key, path, unnests in routes:
            at = hint
            for element_path in unnests:  # each UNNEST on the way: the column is a list of such elements
                at = TypeHint(element=nest(list(element_path), at))
            self._record(key, list(path), at)

    def _memo(self, key: tuple, anchor: object, compute) -> tuple[_Route, ...]:
        """`compute()`, once per `key` unless a resolution it ran was cut by the cycle guard, or it
        passed through a name being resolved now (then the guard would cut it here: computed again)."""
        hit = self._routes.get(key)
        if hit is not None and hit.anchor is anchor and not (hit.visited & self._active):
            self._visited |= hit.visited  # what an enclosing resolution went through, this one included
            return hit.routes
        cuts, visited = self._cuts, self._visited
        self._visited = set()
        try:
            routes = compute()
            mine = self._visited
        finally:
            self._visited = visited
        visited |= mine
        if self._cuts == cuts:
            self._routes[key] = _Memo(anchor, routes, frozenset(mine))
        return routes

    def _route(self, scope: Scope, parts: tuple[str, ...], skip: Scope | None) -> tuple[_Route, ...]:
        """Where a column path seen in `scope` comes from (`skip`: an UNNEST whose own argument this is)."""
        return self._memo(("r", id(scope), parts, id(skip)), scope, lambda: self._route_guarded(scope, parts, skip))

    def _route_guarded(self, scope: Scope, parts: tuple[str, ...], skip: Scope | None) -> tuple[_Route, ...]:
        key = (id(scope), parts)
        self._visited.add(key)
        if key in self._active:  # a name that resolves to itself (e.g. via a correlated outer scope)
            self._cuts += 1
            return ()
        self._active.add(key)
        try:
            return self._route_once(scope, parts, skip)
        finally:
            self._active.discard(key)

    def _route_once(self, scope: Scope, parts: tuple[str, ...], skip: Scope | None) -> tuple[_Route, ...]:
        if len(parts) > 1 and parts[0] in scope.sources and scope.sources[parts[0]] is not skip:
            source = scope.sources[parts[0]]
            if not self._glean_table_named_like_column(source, list(parts)):
                return self._route_source(source, parts[1:])
        source = self._unqualified_source(scope, parts[0], skip)
        if source is None:
            if scope.parent is not None:  # a correlated reference
                return self._route(scope.parent, parts, None)
            return ()
        return self._route_source(source, parts)

    @staticmethod
    def _glean_table_named_like_column(source, parts: list[str]) -> bool:
        """`metrics.counter.x` reading Glean's `metrics` table unaliased: `metrics` is the column."""
        return (
            isinstance(source, exp.Table)
            and not source.alias
            and source.name == parts[0]
            and len(parts) > 2
            and parts[1].lower() in GLEAN_TYPES
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
        # BigQuery resolves an unqualified name to the one source that has it: a name the enrollments
        # (`e`, a CTE or the results table) provide is theirs, not a column the data source must grow
        # (which would make it ambiguous, e.g. `branch`, `enrollment_date`)
        for _, source in others:
            if self._provides(source, name):
                return source
        for alias, source in others:  # mozanalysis: enrollments `e` joined with data source `ds`
            if alias == "ds":
                return source
        for _, source in others:
            if isinstance(source, Scope) or self._table_key(source) is not None:
                return source
        return None

    def _provides(self, source, name: str, depth: int = 0) -> bool:
        """Whether `source` certainly has column `name`: a projection names it (through `*` too), or it
        is an enrollments table (results dataset) and `name` one of its columns."""
        if isinstance(source, exp.Table):
            key = self._table_key(source)
            return key is not None and key[0] in self.exclude and name in ENROLLMENT_COLUMNS
        if not isinstance(source, Scope) or depth > 10:
            return False
        select = source.expression
        while isinstance(select, exp.SetOperation):
            select = select.this
        if not isinstance(select, exp.Select):
            return False
        for projection in select.expressions:
            star = projection.this if isinstance(projection, exp.Column) else projection
            if not isinstance(star, exp.Star):
                if projection.alias_or_name == name:
                    return True
                continue
            if name in {e.name for e in star.args.get("except_") or []}:
                continue
            qualifier = projection.table if isinstance(projection, exp.Column) else ""
            inner = [source.sources.get(qualifier)] if qualifier else [
                s for _, s in source.selected_sources.values()
            ]
            if any(self._provides(s, name, depth + 1) for s in inner if s is not None):
                return True
        return False

    @staticmethod
    def _unnest_alias(scope: Scope) -> str | None:
        unnest = scope.expression
        alias = unnest.args.get("alias") if isinstance(unnest, exp.Unnest) else None
        if alias is None:
            return None
        columns = alias.columns
        return columns[0].name if columns else alias.name or None

    def _route_source(self, source, path: tuple[str, ...]) -> tuple[_Route, ...]:
        """Where column `path` of a FROM source (a table, a subquery or CTE, an UNNEST) comes from."""
        if isinstance(source, exp.Table):
            key = self._table_key(source)
            return ((key, path, ()),) if key is not None and path and key[0] not in self.exclude else ()
        if not isinstance(source, Scope):
            return ()
        return self._memo(("s", id(source), path), source, lambda: self._route_scope(source, path))

    def _route_scope(self, source: Scope, path: tuple[str, ...]) -> tuple[_Route, ...]:
        if source.is_udtf:
            return self._route_unnest(source, path)
        select = source.expression
        if isinstance(select, exp.SetOperation) and source.set_operation_scopes:
            # every SELECT of a UNION feeds the column (BigQuery names it after the first; the others
            # are matched by name, as the configs write them)
            return tuple(r for branch in source.set_operation_scopes for r in self._route_source(branch, path))
        if isinstance(select, exp.SetOperation):
            select = select.this  # the first SELECT of a UNION names the columns
            while isinstance(select, exp.SetOperation):
                select = select.this
        if not isinstance(select, exp.Select) or not path:
            return ()
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
                inner_path = expr_path(inner)
                return () if inner_path is None else self._route(source, (*inner_path, *path[1:]), None)
        for star in stars:
            star_node = star.this if isinstance(star, exp.Column) else star
            excluded = {e.name for e in (star_node.args.get("except_") or [])}
            if name in excluded:
                continue
            if isinstance(star, exp.Column) and star.table:
                inner_source = source.sources.get(star.table)
            else:
                inner_source = self._unqualified_source(source, name)
            return () if inner_source is None else self._route_source(inner_source, path)
        return ()

    def _route_unnest(self, unnest_scope: Scope, path: tuple[str, ...]) -> tuple[_Route, ...]:
        """A field of an UNNEST element: the unnested expression is a list of such structs."""
        unnest = unnest_scope.expression
        if not isinstance(unnest, exp.Unnest) or not unnest.expressions:
            return ()
        alias = self._unnest_alias(unnest_scope)
        element_path = path[1:] if alias and path and path[0] == alias else path
        inner = expr_path(unnest.expressions[0])
        outer = unnest_scope.parent
        if inner is None or outer is None:
            return ()
        routes = self._route(outer, tuple(inner), unnest_scope)
        return tuple((key, p, (element_path, *unnests)) for key, p, unnests in routes)

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
        table.merge(nest(path, hint))


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
    return _columns(collector)


def tree_schemas(trees: list, exclude_datasets: Iterable[str] = ()) -> dict[TableKey, list[Column]]:
    """`table_schemas` of one query already parsed (`transpile.parse_bigquery`)."""
    collector = _Collector(exclude_datasets)
    collector.add_trees(trees)
    return _columns(collector)


def _columns(collector: _Collector) -> dict[TableKey, list[Column]]:
    out: dict[TableKey, list[Column]] = {}
    for key, hint in sorted(collector.tables.items()):
        columns = [column(name, sub, [name]) for name, sub in sorted(hint.fields.items())]
        out[key] = columns
    return out


