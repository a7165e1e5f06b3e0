"""BigQuery SQL (as mozanalysis and metric-hub write it) rewritten for the embedded DuckDB engine.

The SQL stays in BigQuery dialect everywhere else so that production runs it untouched; only the local
warehouse calls this. Table references are resolved by a callback (the warehouse knows where each table
lives) and persistent UDFs (`mozfun.*`, `udf.*`) become DuckDB macros named with underscores.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.parsers.bigquery import BigQueryParser

from jetstream_assets.sql.mozfun import ALIASES

# `mozfun.map.get_key`(...), mozfun.map.get_key(...), `moz-fx-data-shared-prod`.udf.x(...), udf_js.y(...),
# mozdata.udf.get_key(...), `moz-fx-data-shared-prod.udf.x`(...)
_PROJECT = r"`?(?:(?:moz-fx-data-shared-prod|mozdata)`?\.`?)?"
_UDF_CALL = re.compile(
    # every match starts with a backtick, `m` or `u`: the lookahead rejects any other position at once
    # (without it the optional prefixes are tried at every character: a tenth of a dry run's parse)
    r"(?=[`mu])(?:"
    + _PROJECT + r"\b(mozfun)\.(\w+)\.(\w+)`?(?=\s*\()"
    r"|" + _PROJECT + r"\b(udf|udf_js)\.(\w+)`?(?=\s*\()"
    r")",
    re.IGNORECASE,
)

_UDF_WORD = re.compile(r"mozfun\.|udf(?:_js)?\.", re.IGNORECASE)


def udf_macro_name(*parts: str) -> str:
    """The DuckDB macro name for a BigQuery persistent function, e.g. mozfun_map_get_key (a legacy `udf`
    wrapper of a mozfun function is named after the function it wraps)."""
    name = "_".join(p.lower() for p in parts if p)
    return ALIASES.get(name, name)


def rename_udf_calls(sql: str) -> str:
    """BigQuery SQL with every persistent-function call renamed to its macro name (still BigQuery)."""

    def repl(m: re.Match) -> str:
        return udf_macro_name(*(g for g in m.groups() if g))

    if not _UDF_WORD.search(sql):  # most statements call none: the full pattern is slow to scan with
        return sql
    return _UDF_CALL.sub(repl, sql)


def _array_agg_limit(node: exp.Expression) -> exp.Expression:
    """`ARRAY_AGG(x ORDER BY y LIMIT n)`: DuckDB has no LIMIT there, so slice the ordered list."""
    if isinstance(node, exp.ArrayAgg) and isinstance(node.this, exp.Limit):
        limit = node.this
        node.set("this", limit.this)
        return exp.Anonymous(
            this="list_slice", expressions=[node, exp.Literal.number(1), limit.expression.copy()]
        )
    return node


def _unaliased_unnest(node: exp.Expression) -> exp.Expression:
    """`FROM UNNEST(list_of_structs)` without an alias: BigQuery exposes the struct fields as columns
    (`SELECT SUM(value) FROM UNNEST(hist.values)`); DuckDB's table function gives one struct column,
    so read the list through a projection that expands the fields."""
    if (
        isinstance(node, exp.Unnest)
        and isinstance(node.parent, exp.From | exp.Join)
        and not node.args.get("alias")
        and not node.args.get("offset")
        and len(node.expressions) == 1
    ):
        max_depth = exp.PropertyEQ(this=exp.to_identifier("max_depth"), expression=exp.Literal.number(2))
        explode = exp.Explode(this=node.expressions[0].copy(), expressions=[max_depth])
        return exp.Subquery(this=exp.Select(expressions=[explode]))
    return node


def _fold_date_add(node: exp.Expression) -> exp.Expression:
    """`DATE_ADD('2026-10-18', INTERVAL -7 DAY)` -> `DATE '2026-10-11'`: mozanalysis bounds segment and
    exposure reads this way; DuckDB types date + interval as a TIMESTAMP, so a DATE column compared with
    it is cast and the Parquet scan can no longer skip the other days' row groups."""
    if not isinstance(node, exp.DateAdd | exp.DateSub):
        return node
    unit = node.args.get("unit")
    if unit is None or unit.name.upper() != "DAY":
        return node
    day, amount = node.this, node.expression
    if not (isinstance(day, exp.Literal) and day.is_string and isinstance(amount, exp.Literal)):
        return node
    try:
        start = dt.date.fromisoformat(day.this)
        days = int(amount.this)
    except ValueError:
        return node
    shifted = start + dt.timedelta(days=days if isinstance(node, exp.DateAdd) else -days)
    return exp.cast(exp.Literal.string(shifted.isoformat()), exp.DataType.build("DATE"))


class TranspileError(ValueError):
    """BigQuery SQL that the local engine cannot run; the message carries the parser's reason."""


TableResolver = Callable[[str | None, str, str], "exp.Expression | str | None"]
TableKey = tuple[str | None, str, str]  # (project, dataset, table)

#: Distinct statements kept parsed and transpiled: a step runs the same few dozen queries again and
#: again (one per window, basis and date), and sqlglot takes 10-20 ms for each.
CACHE_SIZE = 512


def _explicit_unnests(select: exp.Select) -> None:
    """BigQuery's `FROM t, t.list` (a join on a column path of an earlier table) as `UNNEST(t.list)`.

    sqlglot's parser does this rewrite itself (`SUPPORTS_IMPLICIT_UNNEST`) but deep-copies every joined
    subquery to learn its alias, which made parsing mozanalysis' nested queries quadratic (half of
    validate-config's time); this is the same rewrite on the parsed tree, without copies. A tree walk
    rather than a parser subclass, so sqlglot's compiled build (`sqlglotc`, whose classes cannot be
    subclassed) serves the parse."""
    from_ = select.args.get("from_")
    joins = select.args.get("joins")
    if from_ is None or not joins or not any(
        isinstance(j.this, exp.Table) and not j.args.get("on") and len(j.this.parts) > 1 for j in joins
    ):
        return  # no join reads a column path (normalising the names below costs a copy of each)

    def ref(node: exp.Expression, maybe_column: bool = False):
        if isinstance(node, exp.Table):
            copy = node.copy()
            if maybe_column:
                copy.meta["maybe_column"] = True
            return normalize_identifiers(copy, dialect="bigquery")
        alias = node.alias_or_name
        return exp.to_identifier(alias) if alias else node

    refs = {ref(from_.this).alias_or_name}
    for join in joins:
        table = join.this
        normalized = ref(table, maybe_column=True)
        if isinstance(table, exp.Table) and not join.args.get("on"):
            if len(normalized.parts) > 1 and normalized.parts[0].name in refs:
                table_as_column = table.to_column()
                unnest = exp.Unnest(expressions=[table_as_column])
                if isinstance(table.args.get("alias"), exp.TableAlias):
                    table_as_column.replace(table_as_column.this)
                    exp.alias_(unnest, None, table=[table.args["alias"].this], copy=False)
                table.replace(unnest)
        refs.add(normalized.alias_or_name)


_PARSE_LOCK = threading.Lock()
_SQLGLOT_IMPLICIT_UNNEST = BigQueryParser.SUPPORTS_IMPLICIT_UNNEST  # sqlglot's own setting
_BIGQUERY = sqlglot.Dialect.get_or_raise("bigquery")
#: what every rewrite writes: loaded with this module rather than by the first statement rewritten
_DUCKDB = sqlglot.Dialect.get_or_raise("duckdb")


def sqlglot_parse(
    text: str, *, implicit_unnest: bool = _SQLGLOT_IMPLICIT_UNNEST, tokens: list | None = None,
) -> list[exp.Expression]:
    """`sqlglot.parse(text, read="bigquery")` with sqlglot's own implicit-UNNEST rewrite on or off. It is a
    class setting (the compiled parser has no per-call option), so every BigQuery parse of the package goes
    through here, under one lock: a parse in another thread never sees the setting of this one. `tokens`:
    `sqlglot.tokenize(text, read="bigquery")` when the caller has them already."""
    with _PARSE_LOCK:
        saved = BigQueryParser.SUPPORTS_IMPLICIT_UNNEST
        BigQueryParser.SUPPORTS_IMPLICIT_UNNEST = implicit_unnest
        try:
            if tokens is not None:
                return [t for t in _BIGQUERY.parser().parse(tokens, text) if t is not None]
            return [t for t in sqlglot.parse(text, read="bigquery") if t is not None]
        finally:
            BigQueryParser.SUPPORTS_IMPLICIT_UNNEST = saved


def parse_with_unnests(text: str, tokens: list | None = None) -> list[exp.Expression]:
    """`sqlglot.parse(text, read="bigquery")`, the same trees, with its implicit-UNNEST rewrite done by
    `_explicit_unnests` (without the parser's copies of every joined subquery); sqlglot's errors."""
    trees = sqlglot_parse(text, implicit_unnest=False, tokens=tokens)
    for tree in trees:
        for select in tree.find_all(exp.Select):
            _explicit_unnests(select)
    return trees


def parse_bigquery(sql: str) -> list[exp.Expression]:
    """BigQuery SQL parsed (persistent-function calls renamed to their macros); TranspileError if it
    does not parse."""
    try:
        return parse_with_unnests(rename_udf_calls(sql))
    except sqlglot.errors.ParseError as e:
        raise TranspileError(f"SQL does not parse as BigQuery: {e}") from e


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parsed(sql: str) -> tuple[exp.Expression, ...]:
    """`parse_bigquery`, cached. The trees are shared: copy before changing them."""
    return tuple(parse_bigquery(sql))


def _table_key(node: exp.Expression, cte_names: set[str]) -> TableKey | None:
    """(project, dataset, table) of a reference to a stored table; None for CTEs and table functions."""
    if not isinstance(node, exp.Table) or not node.name:
        return None
    if not node.db and node.name.lower() in cte_names:
        return None
    if isinstance(node.this, exp.Anonymous | exp.Func):
        return None  # table functions such as UNNEST
    project = node.catalog or None
    dataset = node.db or ""
    name = node.name
    if not dataset and "." in name:  # `project.dataset.table` quoted as one identifier
        parts = name.split(".")
        name = parts[-1]
        dataset = parts[-2] if len(parts) > 1 else ""
        project = parts[-3] if len(parts) > 2 else None
    return project, dataset, name


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


@functools.lru_cache(maxsize=CACHE_SIZE)
def table_references(sql: str) -> tuple[TableKey, ...]:
    """Every stored table the SQL reads, in order of first appearance (CTEs and UNNEST left out)."""
    found: dict[TableKey, None] = {}
    for tree in _parsed(sql):
        ctes = _cte_names(tree)
        for node in tree.find_all(exp.Table):
            key = _table_key(node, ctes)
            if key is not None:
                found.setdefault(key)
    return tuple(found)


def to_duckdb(sql: str, resolve_table: TableResolver) -> str:
    """Rewrite BigQuery SQL to DuckDB SQL.

    `resolve_table(project, dataset, table)` returns what to read instead -- a DuckDB SELECT as text, or
    an expression (for example a `read_parquet(...)` call or a subquery) -- or None to leave the
    reference as it is. The result is cached per SQL text and resolution, so a statement run again
    (the next date's window, the other basis) costs no sqlglot work.
    """
    resolved = []
    for key in table_references(sql):
        replacement = resolve_table(*key)
        if isinstance(replacement, exp.Expression):
            replacement = replacement.sql(dialect=_DUCKDB)
        resolved.append((key, replacement))
    return _to_duckdb(sql, tuple(resolved))


@functools.lru_cache(maxsize=CACHE_SIZE)
def _to_duckdb(sql: str, resolved: tuple[tuple[TableKey, str | None], ...]) -> str:
    replacements = dict(resolved)

    def read(key: TableKey) -> exp.Expression | None:
        replacement = replacements.get(key)
        if replacement is None:
            return None
        parsed = sqlglot.parse_one(replacement, read=_DUCKDB)
        return parsed.subquery() if isinstance(parsed, exp.Query) else parsed

    return _rewrite([tree.copy() for tree in _parsed(sql)], read)


def trees_to_duckdb(statements: list[exp.Expression], resolve_table: TableResolver) -> str:
    """`to_duckdb` of statements `parse_bigquery` gave (rewritten in place: parse again to reuse)."""

    def read(key: TableKey) -> exp.Expression | None:
        replacement = resolve_table(*key)
        return sqlglot.parse_one(replacement, read=_DUCKDB).subquery() if isinstance(replacement, str) else replacement

    return _rewrite([t for t in statements if t is not None], read)


#: the nodes `_rewrite`'s steps change (a table read, DATE_ADD/DATE_SUB, ARRAY_AGG, UNNEST)
_REWRITTEN = (exp.Table, exp.DateAdd, exp.DateSub, exp.ArrayAgg, exp.Unnest)


def _rewrite(statements: list[exp.Expression], read: Callable[[TableKey], exp.Expression | None]) -> str:
    out = []
    for tree in statements:
        # one walk finds the CTE names and the nodes the steps may change (parents before children), and
        # drops each node's meta: the parser's source positions (and BigQuery's spelling of function names),
        # which DuckDB's generator never reads but deep-copies, as Python dicts, with every subtree it copies
        # (SAFE_DIVIDE's denominator twice, each LOGICAL_OR's argument, ...)
        ctes: set[str] = set()
        found: list[exp.Expression] = []
        for node in tree.dfs():
            node._meta = None
            if isinstance(node, _REWRITTEN):
                found.append(node)
            elif isinstance(node, exp.CTE):
                ctes.add(node.alias_or_name.lower())

        def replace(node: exp.Expression) -> exp.Expression:
            key = _table_key(node, ctes)
            replacement = read(key) if key is not None else None
            if replacement is None:
                return node
            return exp.alias_(replacement, exp.to_identifier(node.alias or key[2]), table=True)

        replaced: set[int] = set()
        for node in found:
            if replaced and inside_any(node, replaced):
                continue  # a node under one already rewritten is not visited (as in sqlglot's transform)
            parent, arg_key, index = node.parent, node.arg_key, node.index  # before the steps re-parent it
            new = _unaliased_unnest(_array_agg_limit(_fold_date_add(replace(node))))
            if new is node:
                continue
            replaced.add(id(node))
            if parent is None:
                tree = new
            elif arg_key:
                parent.set(arg_key, new, index)
        out.append(tree.sql(dialect=_DUCKDB, copy=False))  # the tree is ours: no defensive copy
    return ";\n".join(out)


def inside_any(node: exp.Expression, ids: set[int]) -> bool:
    """Whether `node` or one of its ancestors is one of `ids` (`id()` of nodes)."""
    while node is not None:
        if id(node) in ids:
            return True
        node = node.parent
    return False
