"""SQL that comes from a metric-hub config must be one read-only query that reads tables only.

A config's `select_expression`, `from_expression`, `enrollment_query` (segments and exposure signals
included) is spliced into the enrollments and metrics SQL. This module parses each piece, once its Jinja
is rendered, with sqlglot (BigQuery dialect) and refuses, from the parsed tree and not from the text:

* anything but one query: a second statement (any `;`), `COPY`, `ATTACH`, `INSTALL`, `LOAD`, `PRAGMA`,
  `SET`, `CALL`, `EXPORT DATA`, DDL (`CREATE`, `DROP`, `ALTER`...), DML (`INSERT`, `UPDATE`, `DELETE`,
  `MERGE`), `SELECT ... INTO`;
* every function that reads or writes files or URLs or runs SQL of its own (`read_csv*`, `read_text`,
  `read_blob`, `read_parquet`, `read_json*`, `glob`, `query`, `EXTERNAL_QUERY`, DuckDB's `*_scan`...)
  and every table function but `UNNEST`;
* a table whose name is not made of plain identifiers, such as a quoted file path or URL
  (`FROM '/etc/passwd'`, `` FROM `data.csv` ``), and `..`.

mozanalysis formats `{dataset}` (from expressions) and `{experiment_slug}` (select expressions) with
`str.format`; the check reads the SQL as it will be after that, and refuses other format fields with
attributes or indexes (`{dataset.__class__}`).

The local engine also confines DuckDB to the warehouse folder (`warehouse/local.py`), so a construct
this check misses still cannot reach files outside the home.
"""

from __future__ import annotations

import functools
import logging
import re
import string

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from jetstream_assets.sql.transpile import parse_with_unnests

MAX_SQL = 1 << 20  # characters of one config SQL fragment

#: what a fragment is: a whole query, an expression of a SELECT list, or what follows FROM
QUERY, EXPRESSION, FROM = "query", "expression", "from"
_FORMAT_FIELDS = {EXPRESSION: ("experiment_slug",), FROM: ("dataset",), QUERY: ()}
_PLACEHOLDER = "jetstream_placeholder"

#: statements and clauses that are not a read-only query (names missing from a sqlglot release are skipped)
_WRITES = tuple(
    cls
    for cls in (
        getattr(exp, name, None)
        for name in (
            "Alter", "AlterTable", "Analyze", "Attach", "Cache", "Command", "Commit", "Copy", "Create",
            "Declare", "Delete", "Describe", "Detach", "Drop", "Export", "Grant", "Insert", "Install",
            "Into", "Kill", "LoadData", "Merge", "Pragma", "Refresh", "Revoke", "Rollback", "Set",
            "Transaction", "TruncateTable", "Uncache", "Update", "Use",
        )
    )
    if isinstance(cls, type)
)
#: functions that touch files, URLs or other databases, or run SQL given as a string
_FILE_FUNCTIONS = re.compile(
    r"^(read_\w*|write_\w*|parquet_\w*|pragma_\w*|duckdb_\w*|sqlite_\w*|postgres_\w*|mysql_\w*"
    r"|iceberg_\w*|delta_\w*|ducklake_\w*|http_\w*|\w+_scan|glob|query|query_table|external_query"
    r"|sniff_csv|load_extension|current_setting|getenv|readcsv|readparquet|external_object_transform)$",
    re.IGNORECASE,
)
#: one part of a table name: a BigQuery project, dataset or table (with a trailing wildcard or decorator)
_TABLE_PART = re.compile(r"^[\w\-]+(\*|\$\w+)?$")


class _QuietFallback(logging.Filter):
    """sqlglot warns each time it reads a statement it does not know (`LOAD x`) as a Command: we refuse
    those with our own message, so its warning is noise on validate-config's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_QuietFallback())


class UnsafeSQLError(ValueError):
    """SQL from a config that is not one read-only query over tables; the message says what was found."""


def check_sql(sql: str, kind: str = QUERY) -> None:
    """Raise `UnsafeSQLError` unless `sql` (a config's `kind` of fragment) is one read-only query."""
    problem = _problem(sql, kind)
    if problem is not None:
        raise UnsafeSQLError(problem)


@functools.lru_cache(maxsize=4096)
def _problem(sql: str, kind: str) -> str | None:
    if not isinstance(sql, str):
        return f"expected SQL text, got {type(sql).__name__}"
    if len(sql) > MAX_SQL:
        return f"the SQL is {len(sql):,} characters long (at most {MAX_SQL:,})"
    text, problem = _formatted(sql, _FORMAT_FIELDS[kind])
    if problem:
        return problem
    wrapped = {QUERY: "{}", EXPRESSION: "SELECT {}", FROM: "SELECT * FROM {}"}[kind].format(text)
    try:
        tokens = sqlglot.tokenize(wrapped, read="bigquery")
    except RecursionError:
        return "the SQL nests too deeply to be checked"
    except sqlglot.errors.SqlglotError:
        return "it cannot be read as SQL: an unterminated string, quoted name or comment?"
    problem = _token_problem(tokens)
    if problem:
        return problem
    try:
        statements = parse_with_unnests(wrapped, tokens)  # sqlglot's trees, from the tokens read above
    except RecursionError:
        return "the SQL nests too deeply to be checked"
    except sqlglot.errors.SqlglotError:
        # A syntax error, balanced and without `;`: it cannot leave its place in the query, and its dry
        # run reports the error. Only what it calls is checked.
        return _call_problem(tokens)
    if len(statements) != 1:
        return "only one SQL statement is allowed"
    try:
        return _tree_problem(statements[0])
    except RecursionError:
        return "the SQL nests too deeply to be checked"


_OPEN = {TokenType.L_PAREN: TokenType.R_PAREN, TokenType.L_BRACKET: TokenType.R_BRACKET}
#: statements that may not even appear in SQL that does not parse
_STATEMENT_WORDS = frozenset(
    "ALTER ATTACH CALL COPY CREATE DELETE DETACH DROP EXPORT GRANT INSERT INSTALL LOAD MERGE PRAGMA REVOKE "
    "TRUNCATE UPDATE".split()
)


def _token_problem(tokens: list) -> str | None:
    """`;` or unbalanced brackets: a fragment that could leave its place in the enclosing query."""
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        return "it contains `;`: only one SQL statement is allowed"
    stack: list = []
    for token in tokens:
        if token.token_type in _OPEN:
            stack.append(_OPEN[token.token_type])
        elif token.token_type in _OPEN.values():
            if not stack or stack.pop() != token.token_type:
                return f"its brackets do not balance (an unexpected `{token.text}`)"
    if stack:
        return "its brackets do not balance (a bracket is never closed)"
    return None


def _call_problem(tokens: list) -> str | None:
    for token, following in zip(tokens, [*tokens[1:], None], strict=True):
        if token.token_type in (TokenType.STRING, TokenType.IDENTIFIER):  # quoted: data or a name
            continue
        word = token.text.upper()
        if word in _STATEMENT_WORDS:
            return f"it contains `{word}`: only one read-only SELECT query is allowed"
        if following is not None and following.token_type == TokenType.L_PAREN and _FILE_FUNCTIONS.match(token.text):
            return f"it calls {token.text.lower()}(), which reads files, URLs or SQL text: read tables instead"
    return None


def _formatted(sql: str, names: tuple[str, ...]) -> tuple[str, str | None]:
    """`sql` as mozanalysis' `str.format` leaves it, or a problem with its format fields."""
    if "{" not in sql and "}" not in sql:
        return sql, None
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(sql) if f is not None]
    except ValueError:
        return sql, None  # not a format string: mozanalysis fails on it with its own error
    for field in fields:
        if re.search(r"[.\[]", field):
            return sql, f"it uses the format field {{{field}}}: only {{{'}, {'.join(names) or 'none'}}} may appear"
    if not names or not set(fields) <= set(names):
        return sql, None
    try:
        return sql.format(**{n: _PLACEHOLDER for n in names}), None
    except (ValueError, KeyError, IndexError):
        return sql, None


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name)
    return node.sql_name() if isinstance(node, exp.Func) else type(node).__name__


def _tree_problem(tree: exp.Expression) -> str | None:
    if not isinstance(tree, exp.Query):
        return f"`{_statement(tree)}` is not a query: only one read-only SELECT query is allowed"
    for node in tree.walk():
        if isinstance(node, _WRITES):
            return f"it contains `{_statement(node)}`: only one read-only SELECT query is allowed"
        if isinstance(node, exp.Func) and _FILE_FUNCTIONS.match(_name(node)):
            return f"it calls {_name(node).lower()}(), which reads files, URLs or SQL text: read tables instead"
        if isinstance(node, exp.Table):
            problem = _table_problem(node)
            if problem:
                return problem
    return None


def _table_problem(table: exp.Table) -> str | None:
    if isinstance(table.this, exp.Func | exp.Anonymous):
        return (f"it reads from the table function {_name(table.this).lower()}(): only tables and UNNEST "
                "are allowed after FROM")
    if not isinstance(table.this, exp.Identifier):
        return f"it reads from {table.this.sql(dialect='bigquery')[:80]}, which is not a table name"
    parts = [p for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p is not None]
    for part in parts:
        name = part.name if isinstance(part, exp.Identifier) else part.sql(dialect="bigquery")
        if not _TABLE_PART.match(name):
            return (f"it reads from {'.'.join(str(p.name) for p in parts)!r}, which looks like a file path "
                    "or URL: only `project.dataset.table` names are allowed")
    return None


def _statement(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return {"Into": "SELECT ... INTO", "LoadData": "LOAD DATA", "Alias": "INSTALL/LOAD"}.get(
        type(node).__name__, type(node).__name__.upper()
    )
