"""Synthetic tables take each column's type from how the SQL uses it (one test per inference case), and a
query's tables come from that query alone: a file's verdict never depends on the others validated with it."""

import pytest

from jetstream_assets.validation import validate_configs
from jetstream_assets.validation.synthetic_engine import SyntheticEngine
from jetstream_assets.validation.synthetic_schemas import table_schemas
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets_tests.worlds import write_hub



def columns(sql: str) -> dict[str, str]:
    """column -> Arrow type of the one table `sql` reads."""
    [cols] = table_schemas([sql]).values()
    return {c.name: str(c.arrow) for c in cols}


@pytest.mark.parametrize("sql, column, arrow", [
    # UNNEST: a list (in a scalar subquery, in FROM, and `value IN UNNEST(list)`)
    ("SELECT (SELECT COUNT(*) FROM UNNEST(tags) AS t) FROM d.t", "tags", "list<item: string>"),
    ("SELECT COUNTIF('search' IN UNNEST(labels)) FROM d.t", "labels", "list<item: string>"),
    ("SELECT COUNTIF(3 IN UNNEST(codes)) FROM d.t", "codes", "list<item: int64>"),
    ("SELECT (SELECT SUM(e.value) FROM UNNEST(events) AS e WHERE e.key = 'a') FROM d.t", "events",
     "list<item: struct<key: string, value: int64>>"),
    # arithmetic and numeric aggregates: numbers
    ("SELECT SUM(clicks * 2) FROM d.t", "clicks", "int64"),
    ("SELECT AVG(duration) FROM d.t", "duration", "int64"),
    ("SELECT SUM(a) / NULLIF(SUM(b), 0) FROM d.t", "a", "int64"),
    # CASE / IF branches: typed like the other branches' literals, then by how the CASE is used
    ("SELECT MAX(CASE WHEN flag THEN amount ELSE 0 END) FROM d.t", "amount", "int64"),
    ("SELECT MAX(IF(flag, ratio, 1.5)) FROM d.t", "ratio", "double"),
    ("SELECT MAX(CASE WHEN flag THEN label ELSE 'none' END) FROM d.t", "label", "string"),
    ("SELECT SUM(CASE WHEN kind = 'a' THEN 1 WHEN kind = 'b' THEN amount END) FROM d.t", "amount", "int64"),
    ("SELECT COUNTIF(CASE code WHEN 3 THEN TRUE ELSE FALSE END) FROM d.t", "code", "int64"),
    # conditions and comparisons
    ("SELECT COUNTIF(flag) FROM d.t", "flag", "bool"),
    ("SELECT COUNTIF(channel = 'release') FROM d.t", "channel", "string"),
])
def test_type_from_usage(sql, column, arrow):
    assert columns(sql)[column] == arrow


def test_a_union_types_the_column_from_every_branch():
    """Before: only the first SELECT of a UNION typed a column, so the second branch's table got a default
    type and DuckDB could not combine them."""
    tables = table_schemas(["""
        SELECT mozfun.map.get_key(u.experiments, 'x').branch FROM (
          SELECT experiments FROM d.first UNION ALL SELECT experiments FROM d.second) u
    """])
    for key in (("d", "first"), ("d", "second")):
        [experiments] = tables[key]
        assert str(experiments.arrow) == "list<item: struct<key: string, value: struct<branch: string>>>"


def test_each_query_is_compiled_against_its_own_tables():
    engine = SyntheticEngine()
    try:
        engine.dry_run("SELECT SUM(x) AS s FROM d.t")  # x: a number here
        engine.dry_run("SELECT COUNTIF(x = 'on') AS n FROM d.t")  # x: text here; both compile
        with pytest.raises(WarehouseError, match="does not compile"):
            engine.dry_run("SELECT SUM(x) + 'a' AS s FROM d.t WHERE x = 'on'")
    finally:
        engine.close()


HUB = {
    "definitions/firefox_desktop.toml": """
        [data_sources.shared_ds]
        from_expression = "mozdata.telemetry.shared"
        experiments_column_type = "none"
    """,
    "jetstream/defaults/firefox_desktop.toml": "[metrics]\nweekly = []\n",
    "jetstream/uses-x-as-number.toml": """
        [metrics]
        weekly = ["x_total"]
        [metrics.x_total]
        select_expression = "SUM(x)"
        data_source = "shared_ds"
        statistics = { bootstrap_mean = {} }
    """,
    "jetstream/uses-x-as-text.toml": """
        [metrics]
        weekly = ["x_on"]
        [metrics.x_on]
        select_expression = "COUNTIF(x = 'on')"
        data_source = "shared_ds"
        statistics = { bootstrap_mean = {} }
    """,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_hub(tmp_path_factory.mktemp("types-hub"), HUB)


def test_verdict_does_not_depend_on_the_other_files(hub):
    """Defect: column types were guessed across every file of the call, so validating a file together
    with another that uses the same column differently flipped its verdict."""
    number, text = hub / "jetstream/uses-x-as-number.toml", hub / "jetstream/uses-x-as-text.toml"
    alone = [r.valid for r in validate_configs([number], synthetic=True, platform="firefox_desktop")]
    together = [r.valid for r in validate_configs([number, text], synthetic=True, platform="firefox_desktop")]
    assert alone == [True] and together == [True, True]


def test_synthetic_engine_reads_no_file():
    """Config SQL is untrusted: the compile-only engine refuses file access, and cannot be switched back."""
    engine = SyntheticEngine()
    try:
        with pytest.raises(WarehouseError, match="Permission"):
            engine.dry_run("SELECT * FROM read_text('/etc/passwd')")
        with pytest.raises(Exception, match="configuration"):
            engine.con.execute("SET enable_external_access = true")
    finally:
        engine.close()


def test_a_column_path_is_followed_once_per_query_with_every_use_typed(monkeypatch):
    """A metrics query names the enrollments' columns and a data source's columns again and again (each
    data source, USING, GROUP BY): each path is followed to its table once, and every use still types it."""
    from jetstream_assets.validation import synthetic_schemas

    lookups = []
    real = synthetic_schemas._Collector._unqualified_source
    monkeypatch.setattr(synthetic_schemas._Collector, "_unqualified_source",
                        lambda self, scope, name, skip=None: lookups.append(name) or real(self, scope, name, skip))
    uses = " + ".join(["clicks"] * 40)
    sql = (f"WITH s AS (SELECT client_id, clicks, tag FROM d.t) "
           f"SELECT client_id, SUM({uses}) AS n, LOGICAL_OR(tag = 'a') AS t, "
           f"(SELECT COUNT(*) FROM d.u AS u WHERE u.client_id = s.client_id AND u.kind = s.tag) AS c "
           f"FROM s GROUP BY client_id")
    schemas = {key: {c.name: str(c.arrow) for c in cols} for key, cols in table_schemas([sql]).items()}
    assert schemas == {("d", "t"): {"client_id": "string", "clicks": "int64", "tag": "string"},
                       ("d", "u"): {"client_id": "string", "kind": "string"}}
    assert lookups.count("clicks") <= 2  # once in the outer query, once in the CTE (not 40 times each)
