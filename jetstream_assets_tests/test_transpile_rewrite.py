"""The DuckDB rewrite (`transpile._rewrite`) finds the nodes it changes in one walk of the tree and applies its
steps there, with the semantics of sqlglot's `transform` (which it replaced for speed): a table is replaced
unless a CTE of the statement has its name, each step runs on the node the one before returned, and nothing
under a node already replaced is visited. The oracle below is that `transform`, on statements where each rule
matters. The oracle also keeps what the rewrite drops for speed, each node's meta (parser positions, BigQuery's
spelling of function names): DuckDB's generator must not read it, so the texts stay equal."""

import pytest
from sqlglot import exp

from jetstream_assets.sql import transpile
from jetstream_assets.sql.transpile import parse_bigquery, trees_to_duckdb


def _transform_oracle(sql: str, read) -> str:
    """The rewrite as sqlglot's `transform` did it: one callback per node, pruning what it replaced."""
    out = []
    for tree in parse_bigquery(sql):
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}

        def rewrite(node):
            if not isinstance(node, transpile._REWRITTEN):
                return node
            key = transpile._table_key(node, ctes)
            replacement = read(*key) if key is not None else None
            if replacement is not None:
                node = exp.alias_(replacement, exp.to_identifier(node.alias or key[2]), table=True)
            return transpile._unaliased_unnest(transpile._array_agg_limit(transpile._fold_date_add(node)))

        out.append(tree.transform(rewrite, copy=False).sql(dialect="duckdb", copy=False))
    return ";\n".join(out)


def _read(project, dataset, table):
    if not dataset:
        return None
    return exp.Table(this=exp.to_identifier(f"local_{dataset}_{table}"))


STATEMENTS = {
    "a CTE named like a table is not replaced, the table is": """
        WITH events AS (SELECT * FROM `moz-fx-data-shared-prod.telemetry.events`)
        SELECT client_id FROM events JOIN telemetry.clients_daily AS cd USING (client_id)""",
    "a date bound is folded wherever it is": """
        SELECT COUNT(*) FROM telemetry.main AS m
        WHERE m.submission_date BETWEEN DATE_ADD('2026-10-18', INTERVAL -7 DAY) AND DATE_SUB('2026-10-18', INTERVAL 1 DAY)
          AND m.x IN (SELECT y FROM telemetry.other WHERE d = DATE_ADD('2026-01-31', INTERVAL 1 DAY))""",
    "nothing under a rewritten ARRAY_AGG is visited": """
        SELECT ARRAY_AGG(DATE_ADD('2026-01-01', INTERVAL 1 DAY) ORDER BY ts DESC LIMIT 1)[SAFE_OFFSET(0)] AS latest,
               DATE_ADD('2026-01-01', INTERVAL 2 DAY) AS later
        FROM telemetry.main""",
    "an unaliased UNNEST of structs becomes a projection, an aliased one stays": """
        SELECT (SELECT SUM(value) FROM UNNEST(h.values)) AS total,
               (SELECT COUNT(*) FROM UNNEST(h.values) AS v) AS n
        FROM telemetry.main AS h""",
    "subtrees DuckDB's generator copies (SAFE_DIVIDE, LOGICAL_OR, DATE) keep their text": """
        SELECT SAFE_DIVIDE(SUM(m.x), COUNT(DISTINCT m.client_id)) AS ratio, LOGICAL_OR(m.flag = 'a') AS any_a,
               JSON_EXTRACT_SCALAR(m.payload, '$.sum') AS s, DATE(m.submission_timestamp) AS day
        FROM telemetry.main AS m GROUP BY day  -- a comment""",
    "tables in subqueries, joins and several statements": """
        SELECT * FROM (SELECT a FROM p.d.t1) AS s LEFT JOIN d.t2 AS u ON s.a = u.a;
        SELECT 1 FROM d.t3""",
}


@pytest.mark.parametrize("sql", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_the_one_walk_rewrite_equals_sqlglots_transform(sql):
    assert trees_to_duckdb(parse_bigquery(sql), _read) == _transform_oracle(sql, _read)


def test_the_rewrite_cases_are_exercised():
    """The statements above do hit each rule (so the equality is not between two untouched trees)."""
    sqls = [trees_to_duckdb(parse_bigquery(sql), _read) for sql in STATEMENTS.values()]
    first, dates, array_agg, unnest, copied, several = sqls
    assert "local_telemetry_events" in first and "FROM events" in first and "local_telemetry_clients_daily" in first
    assert "DATE_ADD" not in dates.upper() and "DATE_SUB" not in dates.upper() and "'2026-02-01'" in dates
    assert "LIST_SLICE" in array_agg.upper() and "'2026-01-03'" in array_agg
    assert "DATE_ADD" in array_agg.upper() or "INTERVAL" in array_agg.upper()  # the one inside ARRAY_AGG is left
    assert "max_depth" in unnest
    assert "CASE WHEN" in copied and "BOOL_OR" in copied and "/* a comment */" in copied
    assert several.count(";") == 1 and "local_d_t1" in several and "local_d_t3" in several
