"""BigQuery's implicit UNNEST (`FROM t, t.list`) is rewritten by our own tree walk, not by a parser subclass, so
sqlglot's compiled build (whose parser classes cannot be subclassed) parses validation's SQL."""

import sqlglot
from sqlglot.parsers.bigquery import BigQueryParser

from jetstream_assets.sql.transpile import parse_bigquery, to_duckdb


def test_join_on_a_column_path_becomes_unnest():
    sql = "SELECT e.key FROM `moz-fx-data-shared-prod.telemetry.events` AS t, t.event_map_values AS e"
    duck = to_duckdb(sql, lambda project, dataset, table: None)
    assert "UNNEST(t.event_map_values)" in duck
    # a real table after the comma stays a table
    other = to_duckdb("SELECT 1 FROM a.b AS t, c.d AS u", lambda project, dataset, table: None)
    assert "UNNEST" not in other


def test_nested_selects_are_rewritten_and_the_library_setting_is_left_alone():
    before = BigQueryParser.SUPPORTS_IMPLICIT_UNNEST
    (tree,) = parse_bigquery("SELECT (SELECT COUNT(*) FROM x.y AS s, s.items) AS n FROM (SELECT 1 FROM p.q AS r, r.vals)")
    assert len(list(tree.find_all(sqlglot.exp.Unnest))) == 2
    assert BigQueryParser.SUPPORTS_IMPLICIT_UNNEST == before
    assert sqlglot.parse_one("SELECT 1 FROM t, t.x", read="bigquery").find(sqlglot.exp.Unnest) is not None


def test_the_sql_safety_check_reads_sqlglots_trees_without_its_copying_rewrite(monkeypatch):
    """The safety check parses each config fragment with the parser's implicit-UNNEST rewrite off (it
    deep-copies every joined subquery) and our tree walk instead: the same trees, so the same verdicts."""
    from jetstream_assets.sql import safety, transpile

    settings = []
    real = transpile.sqlglot_parse
    monkeypatch.setattr(
        transpile, "sqlglot_parse", lambda text, **kw: settings.append(kw.get("implicit_unnest")) or real(text, **kw)
    )
    safety._problem.cache_clear()
    fragment = "(SELECT a.x FROM `p.d.t` AS a, a.items AS i JOIN (SELECT 1 AS y FROM p.d.u) AS s ON TRUE)"
    assert safety._problem(fragment, safety.FROM) is None
    assert settings == [False]
    wrapped = f"SELECT * FROM {fragment}"
    assert repr(transpile.parse_with_unnests(wrapped)) == repr(sqlglot.parse(wrapped, read="bigquery"))
    # a file path after the comma is no column path: still a table, still refused
    assert "file path" in safety._problem("(SELECT 1 FROM `p.d.t` AS a, `/etc/passwd`)", safety.FROM)
    safety._problem.cache_clear()
