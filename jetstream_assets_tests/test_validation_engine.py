"""The synthetic engine's own costs: macros created only when a query calls them (with the macros they
call), one watchdog thread for every dry run (still interrupting an overrunning one), and no thread left
behind by `validate_configs`."""

import re
import threading
import time

import duckdb
import pytest

from jetstream_assets.config import limits
from jetstream_assets.config.limits import Watchdog
from jetstream_assets.sql.mozfun import MACROS, macros_called
from jetstream_assets.validation import validate_configs
from jetstream_assets.validation.report import SQL
from jetstream_assets.validation.synthetic_engine import SyntheticEngine
from jetstream_assets.warehouse.base import WarehouseError
from jetstream_assets_tests.test_validate_synthetic_types import HUB
from jetstream_assets_tests.worlds import write_hub

_SLOW = "SELECT count(*) FROM range(1000000000000) a, range(1000000) b"


def _macros(engine: SyntheticEngine) -> set[str]:
    rows = engine.con.execute("SELECT function_name FROM duckdb_functions() WHERE function_type = 'macro'")
    return {name for (name,) in rows.fetchall() if name in MACROS}


def test_a_macro_is_created_with_the_first_query_that_calls_it():
    engine = SyntheticEngine()
    try:
        engine.dry_run("SELECT COUNT(*) AS n FROM d.t")
        assert _macros(engine) == set()
        engine.dry_run("SELECT mozfun.map.get_key(m, 'a') AS v FROM d.t")
        assert _macros(engine) == {"mozfun_map_get_key"}
        engine.dry_run("SELECT udf.normalize_search_engine(e) AS f, mozfun.map.get_key(m, 'b') AS v FROM d.u")
        assert _macros(engine) == {"mozfun_map_get_key", "udf_normalize_search_engine"}
        with pytest.raises(WarehouseError, match="does not compile"):  # an unknown one is still unknown
            engine.dry_run("SELECT mozfun.nope.missing(x) AS v FROM d.t")
    finally:
        engine.close()


def test_a_macro_calling_another_gets_it_created_first():
    """`hist.threshold_count` calls `hist.extract`: both, callee first (creating the caller first fails)."""
    assert macros_called("SELECT MOZFUN_HIST_THRESHOLD_COUNT(h, 3) FROM t") == [
        "mozfun_hist_extract", "mozfun_hist_threshold_count"]
    assert macros_called("SELECT mozfun_hist_threshold_count(h, 3), x FROM t") == [
        "mozfun_hist_extract", "mozfun_hist_threshold_count"]
    con = duckdb.connect()
    for name in MACROS:  # every macro, created alone on a fresh connection with what it calls
        con.close()
        con = duckdb.connect()
        for needed in macros_called(f"SELECT {name}(x)"):
            con.execute(f"CREATE MACRO {needed}{MACROS[needed]}")
    con.close()


def test_one_watchdog_thread_serves_many_guards_and_interrupts_an_overrun():
    watchdog = Watchdog()
    con = duckdb.connect()
    before = threading.active_count()
    try:
        for _ in range(20):
            with watchdog.guard(con, 10.0) as fired:
                con.execute("SELECT 1").fetchall()
            assert not fired.is_set()
        assert threading.active_count() == before + 1
        with pytest.raises(duckdb.Error), watchdog.guard(con, 0.2) as fired:
            con.execute(_SLOW).fetchall()
        assert fired.is_set()
        with watchdog.guard(con, 10.0) as fired:  # the connection works on after an interrupt
            assert con.execute("SELECT 2").fetchall() == [(2,)]
    finally:
        watchdog.close()
        con.close()
    assert threading.active_count() == before


def test_an_overrunning_dry_run_is_reported_as_interrupted(monkeypatch):
    monkeypatch.setattr(limits, "DRY_RUN_SECONDS", 0.2)
    monkeypatch.setattr(SyntheticEngine, "_describe", lambda self, sql: self.con.execute(_SLOW).fetchall())
    engine = SyntheticEngine()
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseError, match=r"does not compile within 0\.2 s \(interrupted\)"):
            engine.dry_run("SELECT COUNT(*) AS n FROM d.t")
        assert time.monotonic() - started < 60  # interrupted, not run to its end
    finally:
        engine.close()


def test_an_overrunning_dry_run_in_a_file_is_a_problem_of_that_file_and_no_thread_outlives_the_call(
        tmp_path, monkeypatch):
    hub = write_hub(tmp_path, HUB)
    before = set(threading.enumerate())
    [report] = validate_configs([hub / "jetstream/uses-x-as-number.toml"], synthetic=True, platform="firefox_desktop")
    assert report.valid, [str(p) for p in report.problems]
    monkeypatch.setattr(limits, "DRY_RUN_SECONDS", 0.2)
    monkeypatch.setattr(SyntheticEngine, "_describe", lambda self, sql: self.con.execute(_SLOW).fetchall())
    [report] = validate_configs([hub / "jetstream/uses-x-as-number.toml"], synthetic=True, platform="firefox_desktop")
    assert not report.valid and all(p.kind == SQL for p in report.problems)
    assert any("within 0.2 s (interrupted)" in p.cause for p in report.problems)
    assert set(threading.enumerate()) == before


#: compile outcomes that matter: missing names, types, functions, ambiguity, grouping, and constants that
#: only fail when run (which an optimizer's constant folding might have tripped on)
_BIND_CASES = [
    "SELECT y FROM t",
    "SELECT x + 1 AS v FROM t",
    "SELECT nope(x) AS v FROM t",
    "SELECT x FROM t, t AS u",
    "SELECT n, x FROM t GROUP BY x",
    "SELECT CAST('abc' AS INTEGER) AS v, 1 / 0 AS w, [1, 2][5] AS z FROM t WHERE d > DATE '2024-01-01'",
    "SELECT CASE WHEN n > 0 THEN CAST('x' AS BIGINT) ELSE n END AS v FROM t",
    "SELECT (SELECT SUM(value) FROM (SELECT UNNEST(l, max_depth := 2))) AS s FROM t",
    "SELECT list_filter(l, lambda e: e.key = 'a')[1].value AS v FROM t LEFT JOIN t AS u USING (x)",
    "SELECT x FROM t WHERE n IN (SELECT n FROM t AS u WHERE u.x = t.x AND u.d > t.d) AND d = 'not a date'",
    "SELECT SUM(n) OVER (PARTITION BY x ORDER BY d) AS v, COUNT(*) FILTER (WHERE n > 1) AS c FROM t GROUP BY ALL",
]


def _describe_outcomes(settings: dict) -> list[str]:
    con = duckdb.connect(":memory:", config=settings)
    con.execute("CREATE TEMP TABLE t (x VARCHAR, n BIGINT, d DATE, l STRUCT(key VARCHAR, value BIGINT)[])")
    out = []
    for sql in _BIND_CASES:
        try:
            out.append(repr(con.execute(f"DESCRIBE {sql}").fetchall()))
        except duckdb.Error as e:
            out.append(f"{type(e).__name__}: {e}")
    con.close()
    return out


def test_the_engine_binds_without_the_optimizer_and_finds_what_it_would_with_it():
    """The engine turns DuckDB's optimizer off (DESCRIBE and CREATE TABLE optimise a plan never run): the
    outcome of every kind of query, failing or not, is the same as with the optimizer on."""
    from jetstream_assets.validation.synthetic_engine import _SETTINGS

    assert _SETTINGS["enable_optimizer"] is False
    without = _describe_outcomes(_SETTINGS)
    assert without == _describe_outcomes({**_SETTINGS, "enable_optimizer": True})
    assert sum(o.startswith(("BinderException", "ConversionException", "CatalogException")) for o in without) >= 4


def test_macro_words_are_the_case_insensitive_patterns_matches():
    """`macros_called` finds macro names with `str.find` rather than the case-insensitive pattern: the same
    words, wherever they are (start of the text, after punctuation, quotes or a dot), in any case, and none
    inside a longer word."""
    from jetstream_assets.sql.mozfun import macro_words

    pattern = re.compile(r"\b(?:mozfun|udf)_\w+", re.IGNORECASE)  # what macros_called used to match

    texts = [
        "MOZFUN_MAP_GET_KEY(m, 'k')", "select udf_json_valid(x), Mozfun_Hist_Extract(h).sum from t",
        "x.mozfun_a + (udf_b) * \"udf_c\" - 'mozfun_d'", "amozfun_x, _udf_y, 1udf_z, mozfun_udf_w, udf_, mozfun",
        "mozfun_ä_x, émozfun_y, udf_1 udf_2\nmozfun_3\tudf_4;mozfun_5", "",
    ]
    for text in texts:
        assert sorted(macro_words(text)) == sorted(w.lower() for w in pattern.findall(text)), text
    assert macro_words(texts[3]) == ["mozfun_udf_w"]
