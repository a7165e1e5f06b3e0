"""The demo world: experiments, synthetic telemetry and the demo metric-hub repository."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import pytz
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import LocalConfigCollection
from metric_config_parser.experiment import Branch, Experiment

from jetstream_assets.demo.config_repo import ConfigRepoError, create_config_repo, demo_config_files
from jetstream_assets.demo.experiments import (
    ACTIVE_HOURS,
    PLANTED_EFFECTS,
    TAB_OPEN,
    URI_COUNT,
    demo_experiments,
    expected_uplift,
    write_experimenter_file,
)
from jetstream_assets.demo.telemetry import PRE_ENROLLMENT_DAYS, TelemetryError, generate_telemetry

TODAY = date(2026, 6, 15)
YESTERDAY = TODAY - timedelta(days=1)
TABLES = ("events", "clients_daily", "clients_last_seen")


def _records() -> dict[str, dict]:
    return {r["slug"]: r for r in demo_experiments(TODAY)}


def _d(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("warehouse")
    counts = generate_telemetry(root, clients=20_000, today=TODAY, experiments=demo_experiments(TODAY), seed=7)
    return root, counts


def _con(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{root / 'telemetry' / table}.parquet')")
    con.execute(
        "CREATE TABLE enrolled AS SELECT event_string_value AS slug, client_id, "
        "event_map_values['branch'] AS branch, MIN(submission_date) AS enrollment_date, COUNT(*) AS n "
        "FROM events WHERE event_method = 'enroll' GROUP BY ALL"
    )
    return con


# -- experiments ----------------------------------------------------------------------------------


def test_demo_experiments_cover_the_states_the_demo_needs():
    records = _records()
    assert {"demo-complete", "demo-live", "demo-custom", "demo-rollout", "demo-enrolling"} <= set(records)

    complete = records["demo-complete"]
    start, end = _d(complete["startDate"]), _d(complete["endDate"])
    enrollment = (_d(complete["enrollmentEndDate"]) - start).days + 1
    assert end < TODAY and (TODAY - end).days <= 8  # Complete, ended about a week ago
    assert enrollment == 7
    overall_days = (end - start).days - enrollment
    assert overall_days >= 14  # at least two weekly windows and an overall window

    live = records["demo-live"]
    assert live["endDate"] is None and len(live["branches"]) == 3
    assert 14 <= (TODAY - _d(live["startDate"])).days <= 28

    custom = records["demo-custom"]
    assert custom["outcomes"] == [{"slug": "demo_engagement"}]
    assert records["demo-rollout"]["isRollout"] is True
    assert records["demo-enrolling"]["enrollmentEndDate"] is None
    assert records["demo-enrolling"]["isEnrollmentPaused"] is False

    # Every record has the fields the Experimenter v8 parser reads.
    for r in records.values():
        for field in ("slug", "branches", "startDate", "proposedEnrollment", "referenceBranch", "appName",
                      "appId", "bucketConfig", "isRollout", "outcomes", "segments"):
            assert field in r, (r["slug"], field)
        assert r["referenceBranch"] in {b["slug"] for b in r["branches"]}


def test_demo_has_about_a_hundred_analysis_cells():
    cells = 0
    for r in demo_experiments(TODAY):
        start = _d(r["startDate"])
        last = min(_d(r["endDate"]) + timedelta(days=1), YESTERDAY) if r["endDate"] else YESTERDAY
        cells += (last - start).days + 1
    assert 90 <= cells <= 120


def test_demo_experiment_dates_move_with_today():
    a = {r["slug"]: r for r in demo_experiments(date(2025, 1, 1))}
    b = {r["slug"]: r for r in demo_experiments(date(2025, 1, 11))}
    for slug in a:
        assert (_d(b[slug]["startDate"]) - _d(a[slug]["startDate"])).days == 10


def test_records_parse_with_the_project_experimenter_model():
    from jetstream_assets.experimenter.models import Experiment as ProjectExperiment

    for r in demo_experiments(TODAY):
        parsed = ProjectExperiment.from_v8(r)
        assert parsed.slug == r["slug"]


def test_expected_uplift_follows_planted_effects():
    assert expected_uplift("demo-complete", "treatment", "active_hours") == pytest.approx(
        PLANTED_EFFECTS["demo-complete"]["treatment"][ACTIVE_HOURS] - 1
    )
    assert expected_uplift("demo-custom", "treatment", "tabs_opened") == pytest.approx(
        PLANTED_EFFECTS["demo-custom"]["treatment"][TAB_OPEN] - 1
    )
    assert expected_uplift("demo-complete", "control", "active_hours") == 0.0
    assert expected_uplift("demo-complete", "treatment", "days_of_use") == 0.0
    assert expected_uplift("demo-live", "treatment-a", "active_hours") == 0.0
    with pytest.raises(ValueError, match="no-such-experiment"):
        expected_uplift("no-such-experiment", "treatment", "active_hours")
    with pytest.raises(ValueError, match="branch 'nope'"):
        expected_uplift("demo-live", "nope", "active_hours")


def test_write_experimenter_file(tmp_path):
    path = write_experimenter_file(tmp_path / "sub" / "experiments.json", TODAY)
    assert json.loads(path.read_text()) == demo_experiments(TODAY)
    assert [p.name for p in path.parent.iterdir()] == ["experiments.json"]  # no temporary file left


# -- telemetry ------------------------------------------------------------------------------------


def test_tables_and_row_counts(world):
    root, counts = world
    assert set(counts) == {f"telemetry.{t}" for t in TABLES}
    for table in TABLES:
        path = root / "telemetry" / f"{table}.parquet"
        assert pq.ParquetFile(path).metadata.num_rows == counts[f"telemetry.{table}"] > 0
    assert sorted(p.name for p in (root / "telemetry").iterdir()) == sorted(f"{t}.parquet" for t in TABLES)

    con = _con(root)
    earliest = min(_d(r["startDate"]) for r in demo_experiments(TODAY))
    first, last = con.execute("SELECT MIN(submission_date), MAX(submission_date) FROM clients_daily").fetchone()
    assert first == earliest - timedelta(days=PRE_ENROLLMENT_DAYS)
    assert last == YESTERDAY
    # One clients_daily and one clients_last_seen row per client and active day.
    assert con.execute(
        "SELECT COUNT(*) FROM (SELECT client_id, submission_date FROM clients_daily GROUP BY ALL HAVING COUNT(*) > 1)"
    ).fetchone()[0] == 0
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE events)").fetchall())
    assert types["event_map_values"] == "MAP(VARCHAR, VARCHAR)"
    assert types["experiments"] == "MAP(VARCHAR, STRUCT(branch VARCHAR))"
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE clients_daily)").fetchall())
    assert types["experiments"] == "MAP(VARCHAR, VARCHAR)" and types["submission_date"] == "DATE"


def test_enrollments_follow_the_experiments(world):
    root, _ = world
    con = _con(root)
    records = _records()
    assert con.execute("SELECT MAX(n) FROM enrolled").fetchone()[0] == 1  # one enroll event per client
    for slug, r in records.items():
        start = _d(r["startDate"])
        last = _d(r["enrollmentEndDate"]) or YESTERDAY
        lo, hi, total = con.execute(
            "SELECT MIN(enrollment_date), MAX(enrollment_date), COUNT(*) FROM enrolled WHERE slug = ?", [slug]
        ).fetchone()
        assert start <= lo and hi <= last, slug
        share = r["bucketConfig"]["count"] / r["bucketConfig"]["total"]
        assert 0.5 * share * 20_000 < total <= share * 20_000 * 1.05, slug
        by_branch = dict(
            con.execute("SELECT branch, COUNT(*) FROM enrolled WHERE slug = ? GROUP BY 1", [slug]).fetchall()
        )
        assert set(by_branch) == {b["slug"] for b in r["branches"]}
        for n in by_branch.values():
            assert n / total == pytest.approx(1 / len(by_branch), abs=0.03), (slug, by_branch)
    # Exposure events come from enrolled clients of the same branch, never before they enrolled.
    bad = con.execute(
        "SELECT COUNT(*) FROM events e LEFT JOIN enrolled x ON x.client_id = e.client_id "
        "AND x.slug = e.event_string_value WHERE e.event_method = 'expose' AND (x.client_id IS NULL "
        "OR e.submission_date < x.enrollment_date OR e.event_map_values['branchSlug'] != x.branch)"
    ).fetchone()[0]
    assert bad == 0
    exposed = con.execute(
        "SELECT COUNT(DISTINCT client_id) FROM events WHERE event_method = 'expose' "
        "AND event_string_value = 'demo-complete'"
    ).fetchone()[0]
    enrolled = con.execute("SELECT COUNT(*) FROM enrolled WHERE slug = 'demo-complete'").fetchone()[0]
    assert 0.4 < exposed / enrolled < 0.95


def test_experiments_column_marks_enrolled_clients_from_their_enrollment_date(world):
    root, _ = world
    con = _con(root)
    wrong = con.execute(
        "SELECT COUNT(*) FROM clients_daily d JOIN enrolled x USING (client_id) WHERE "
        "(d.submission_date >= x.enrollment_date AND d.experiments[x.slug] IS DISTINCT FROM x.branch) OR "
        "(d.submission_date < x.enrollment_date AND d.experiments[x.slug] IS NOT NULL)"
    ).fetchone()[0]
    assert wrong == 0
    strays = con.execute(
        "SELECT COUNT(*) FROM (SELECT client_id, UNNEST(map_keys(experiments)) AS slug FROM clients_daily) s "
        "ANTI JOIN enrolled USING (client_id, slug)"
    ).fetchone()[0]
    assert strays == 0
    native = con.execute(
        "SELECT COUNT(*) FROM events e JOIN enrolled x ON x.client_id = e.client_id AND x.slug = e.event_string_value "
        "WHERE e.experiments[x.slug].branch IS DISTINCT FROM x.branch"
    ).fetchone()[0]
    assert native == 0


def test_segment_fields_agree_with_days_seen_bits(world):
    root, _ = world
    con = _con(root)
    bad = con.execute(
        "SELECT COUNT(*) FROM clients_last_seen WHERE days_seen_bits & 1 != 1 OR days_seen_bits >= (1 << 28) "
        "OR is_new_or_resurrected_v3 != ((days_seen_bits >> 1) = 0) "
        "OR is_regular_user_v3 != (bit_count((days_seen_bits >> 1) & ((1 << 27) - 1)) >= 14)"
    ).fetchone()[0]
    assert bad == 0
    share_regular, share_new = con.execute(
        "SELECT AVG(is_regular_user_v3::INT), AVG(is_new_or_resurrected_v3::INT) FROM clients_last_seen"
    ).fetchone()
    assert 0.3 < share_regular < 0.9 and 0 < share_new < 0.2


def test_activity_is_realistic(world):
    root, _ = world
    con = _con(root)
    zero_ads, median_hours, p99_hours, clients = con.execute(
        "SELECT AVG((ad_clicks_count_all = 0)::INT), MEDIAN(active_hours_sum), "
        "QUANTILE_CONT(active_hours_sum, 0.99), COUNT(DISTINCT client_id) FROM clients_daily"
    ).fetchone()
    assert zero_ads > 0.8  # ad clicks are mostly zero
    assert p99_hours > 5 * median_hours  # heavy tail
    first_week, last_week = con.execute(
        "SELECT COUNT(DISTINCT client_id) FILTER (WHERE submission_date < (SELECT MIN(submission_date) + 7 FROM clients_daily)),"
        " COUNT(DISTINCT client_id) FILTER (WHERE submission_date > (SELECT MAX(submission_date) - 7 FROM clients_daily))"
        " FROM clients_daily"
    ).fetchone()
    assert first_week < clients and last_week < clients  # churn and new profiles


def test_generation_is_deterministic(tmp_path):
    exps = demo_experiments(TODAY)
    a = generate_telemetry(tmp_path / "a", clients=1_500, today=TODAY, experiments=exps, seed=3)
    b = generate_telemetry(tmp_path / "b", clients=1_500, today=TODAY, experiments=exps, seed=3)
    generate_telemetry(tmp_path / "c", clients=1_500, today=TODAY, experiments=exps, seed=4)
    assert a == b
    for table in TABLES:
        ta = pq.read_table(tmp_path / "a" / "telemetry" / f"{table}.parquet")
        tb = pq.read_table(tmp_path / "b" / "telemetry" / f"{table}.parquet")
        tc = pq.read_table(tmp_path / "c" / "telemetry" / f"{table}.parquet")
        assert ta.equals(tb), table
        assert not ta.equals(tc), table
    # Regenerating replaces the files in place.
    again = generate_telemetry(tmp_path / "a", clients=1_500, today=TODAY, experiments=exps, seed=3)
    assert again == a
    assert len(list((tmp_path / "a" / "telemetry").iterdir())) == 3


def test_effects_change_only_post_enrollment_data_of_treated_branches(tmp_path):
    exps = demo_experiments(TODAY)
    effect = {"demo-complete": {"treatment": {ACTIVE_HOURS: 1.25, URI_COUNT: 1.5}}}
    generate_telemetry(tmp_path / "fx", clients=4_000, today=TODAY, experiments=exps, effects=effect, seed=5)
    generate_telemetry(tmp_path / "no", clients=4_000, today=TODAY, experiments=exps, effects={}, seed=5)
    con = _con(tmp_path / "fx")
    con.execute(f"CREATE VIEW base AS SELECT * FROM read_parquet('{tmp_path / 'no' / 'telemetry'}/clients_daily.parquet')")
    rows = con.execute(
        f"""
        SELECT
            COALESCE(x.branch, 'not enrolled') AS branch,
            d.submission_date >= x.enrollment_date AS after,
            COUNT(*) AS n,
            SUM(d.{ACTIVE_HOURS}) / SUM(b.{ACTIVE_HOURS}) AS hours_ratio,
            SUM(d.{URI_COUNT}) / SUM(b.{URI_COUNT}) AS uri_ratio,
            COUNT(*) FILTER (WHERE d.{ACTIVE_HOURS} != b.{ACTIVE_HOURS} OR d.{URI_COUNT} != b.{URI_COUNT}) AS changed,
            COUNT(*) FILTER (WHERE d.search_count_all != b.search_count_all) AS other_changed
        FROM clients_daily d
        JOIN base b USING (client_id, submission_date)
        LEFT JOIN enrolled x ON x.client_id = d.client_id AND x.slug = 'demo-complete'
        GROUP BY ALL
        """
    ).fetchall()
    seen = set()
    for branch, after, n, hours_ratio, uri_ratio, changed, other_changed in rows:
        seen.add((branch, after))
        assert other_changed == 0
        if branch == "treatment" and after:
            assert hours_ratio == pytest.approx(1.25, rel=1e-6)
            assert uri_ratio == pytest.approx(1.5, rel=0.01)  # counts are rounded, unbiasedly
        else:
            assert changed == 0, (branch, after)  # before enrollment, control, not enrolled: untouched
    assert {("treatment", True), ("treatment", False), ("control", True), ("not enrolled", None)} <= seen
    base_rows = pq.ParquetFile(tmp_path / "no" / "telemetry" / "clients_daily.parquet").metadata.num_rows
    assert con.execute("SELECT COUNT(*) FROM clients_daily").fetchone()[0] == base_rows  # activity unchanged


def test_planted_uplift_is_visible_in_a_quick_mean_comparison(world):
    """Difference in differences of per-branch totals: 28 days after enrollment over the 28 days before.

    Ad clicks are left out here (mostly zero, too noisy for 20,000 clients); the exact effect on every
    column is checked against effect-free telemetry above.
    """
    root, _ = world
    con = _con(root)
    checked = 0
    for slug, branches in PLANTED_EFFECTS.items():
        reference = _records()[slug]["referenceBranch"]
        for branch in branches:
            if branch == reference:
                continue
            for metric, column in (("active_hours", ACTIVE_HOURS), ("uri_count", URI_COUNT),
                                   ("search_count", "search_count_all"), ("tabs_opened", TAB_OPEN)):
                ratio = dict(
                    con.execute(
                        f"SELECT x.branch, SUM({column}) FILTER (WHERE d.submission_date >= x.enrollment_date) "
                        f"/ SUM({column}) FILTER (WHERE d.submission_date < x.enrollment_date) "
                        "FROM enrolled x JOIN clients_daily d USING (client_id) "
                        "WHERE x.slug = ? AND d.submission_date >= x.enrollment_date - 28 "
                        "AND d.submission_date < x.enrollment_date + 28 GROUP BY 1",
                        [slug],
                    ).fetchall()
                )
                observed = ratio[branch] / ratio[reference] - 1
                expected = expected_uplift(slug, branch, metric)
                assert observed == pytest.approx(expected, abs=0.05), (slug, branch, metric, observed)
                checked += expected != 0
    assert checked >= 6


def test_mozanalysis_sql_over_the_demo_tables(world):
    """mozanalysis' Normandy enrollments and metrics SQL, run by the local warehouse on the demo tables."""
    from mozanalysis.experiment import EnrollmentsQueryType, TimeLimits
    from mozanalysis.experiment import Experiment as MozExperiment
    from mozanalysis.metrics import DataSource, Metric

    from jetstream_assets.warehouse.local import LocalWarehouse

    root, _ = world
    warehouse = LocalWarehouse(root=str(root))
    r = _records()["demo-complete"]
    experiment = MozExperiment(r["slug"], r["startDate"], 7, app_id="firefox-desktop", app_name="firefox_desktop")
    clients_daily = DataSource(name="clients_daily", from_expr="mozdata.telemetry.clients_daily")
    metrics = [
        Metric(name="active_hours", data_source=clients_daily, select_expr=f"COALESCE(SUM({ACTIVE_HOURS}), 0)"),
        Metric(name="days_of_use", data_source=clients_daily, select_expr="COUNT(submission_date)"),
    ]
    results = {}
    for name, start, length in (("pre", -7, 7), ("post", 0, 14)):
        limits = TimeLimits.for_single_analysis_window(
            first_enrollment_date=r["startDate"], last_date_full_data=str(YESTERDAY),
            analysis_start_days=start, analysis_length_dates=length, num_dates_enrollment=7,
        )
        enrollments = warehouse.query(experiment.build_enrollments_query(limits, EnrollmentsQueryType.NORMANDY))
        con = _con(root)
        expected = dict(con.execute("SELECT branch, COUNT(*) FROM enrolled WHERE slug = 'demo-complete' GROUP BY 1").fetchall())
        assert enrollments["analysis_id"].is_unique
        assert enrollments.groupby("branch").size().to_dict() == expected
        warehouse.write_dataframe(enrollments, f"enrollments_demo_test_{name}")
        sql = experiment.build_metrics_query(
            metrics, limits, enrollments_table=warehouse.table_ref(f"enrollments_demo_test_{name}")
        )
        results[name] = warehouse.query(sql).groupby("branch")[["active_hours", "days_of_use"]].mean()
    assert (results["post"]["days_of_use"] >= 1).all()  # every enrolled client is seen on its enrollment day
    ratio = results["post"]["active_hours"] / results["pre"]["active_hours"]
    observed = ratio["treatment"] / ratio["control"] - 1
    assert observed == pytest.approx(expected_uplift("demo-complete", "treatment", "active_hours"), abs=0.06)


def test_bad_input_is_named(tmp_path):
    exps = demo_experiments(TODAY)
    with pytest.raises(TelemetryError, match="clients"):
        generate_telemetry(tmp_path, clients=0, today=TODAY, experiments=exps)
    no_start = [dict(exps[0], startDate=None)]
    with pytest.raises(TelemetryError, match="demo-complete.*startDate"):
        generate_telemetry(tmp_path, clients=10, today=TODAY, experiments=no_start)
    with pytest.raises(TelemetryError, match="'demo-live' branch 'control'.*no_such_column"):
        generate_telemetry(
            tmp_path, clients=10, today=TODAY, experiments=exps,
            effects={"demo-live": {"control": {"no_such_column": 2.0}}},
        )
    assert not (tmp_path / "telemetry").exists() or not any((tmp_path / "telemetry").iterdir())


# -- config repository ------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _configs(repo: Path):
    """metric-hub's layout: shared definitions at the root, Jetstream's configs under jetstream/."""
    configs = LocalConfigCollection.from_local_path(str(repo))
    configs.merge(LocalConfigCollection.from_local_path(str(repo / "jetstream")))
    return configs


def _parser_experiment(r: dict) -> Experiment:
    def when(value):
        return pytz.utc.localize(dt.datetime.fromisoformat(value)) if value else None

    return Experiment(
        experimenter_slug=None, normandy_slug=r["slug"], type="v6",
        status="Complete" if r["endDate"] and _d(r["endDate"]) < TODAY else "Live",
        branches=[Branch(slug=b["slug"], ratio=b["ratio"]) for b in r["branches"]],
        start_date=when(r["startDate"]), end_date=when(r["endDate"]),
        proposed_enrollment=r["proposedEnrollment"], reference_branch=r["referenceBranch"],
        is_high_population=False, app_name=r["appName"], app_id=r["appId"],
        outcomes=[o["slug"] for o in r["outcomes"]], segments=[s["slug"] for s in r["segments"]],
        enrollment_end_date=when(r["enrollmentEndDate"]), is_enrollment_paused=r["isEnrollmentPaused"],
        is_rollout=r["isRollout"],
    )


def test_config_repo_is_a_git_repo_and_idempotent(tmp_path):
    repo = tmp_path / "metric-hub"
    sha = create_config_repo(repo)
    assert _git(repo, "rev-parse", "HEAD") == sha
    assert _git(repo, "log", "-1", "--format=%an") == "jetstream-assets demo"
    tracked = set(_git(repo, "ls-files").splitlines())
    assert tracked == {str(p) for p in demo_config_files()}
    assert {"definitions/firefox_desktop.toml", "definitions/functions.toml", "jetstream/demo-custom.toml",
            "jetstream/defaults/firefox_desktop.toml"} <= tracked
    assert create_config_repo(repo) == sha  # same content: no new commit
    assert _git(repo, "rev-list", "--count", "HEAD") == "1"

    # An uncommitted edit of a demo file is simply reset: HEAD already holds the demo content.
    (repo / "jetstream" / "demo-custom.toml").write_text("[experiment]\nskip = true\n")
    assert create_config_repo(repo) == sha
    assert "skip = true" not in (repo / "jetstream" / "demo-custom.toml").read_text()

    # A committed edit is reset by a new commit; the user's own files stay untouched.
    (repo / "jetstream" / "demo-custom.toml").write_text("[experiment]\nskip = true\n")
    _git(repo, "-c", "user.name=someone", "-c", "user.email=someone@example.com", "commit", "-qam", "edit")
    (repo / "notes.txt").write_text("mine")
    new_sha = create_config_repo(repo)
    assert new_sha != sha and _git(repo, "rev-list", "--count", "HEAD") == "3"
    assert "skip = true" not in (repo / "jetstream" / "demo-custom.toml").read_text()
    assert (repo / "notes.txt").read_text() == "mine"
    assert "notes.txt" not in _git(repo, "ls-files")


def test_config_repo_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(ConfigRepoError, match="not a git repository"):
        create_config_repo(tmp_path)


def test_demo_configs_parse_and_every_experiment_resolves(tmp_path):
    repo = tmp_path / "metric-hub"
    create_config_repo(repo)
    configs = _configs(repo)
    assert [c.slug for c in configs.configs] == ["demo-custom"]
    assert [o.slug for o in configs.outcomes] == ["demo_engagement"]
    assert configs.functions is not None
    for r in demo_experiments(TODAY):
        experiment = _parser_experiment(r)
        spec = AnalysisSpec.default_for_experiment(experiment, configs)
        custom = configs.spec_for_experiment(r["slug"])
        if custom is not None:
            spec.merge(custom)
        resolved = spec.resolve(experiment, configs)
        by_period = {p.value: {m.metric.name for m in ms} for p, ms in resolved.metrics.items()}
        assert {"active_hours", "retained"} <= by_period["day"]
        assert {"active_hours", "uri_count"} <= by_period["preenrollment_week"]
        for metrics in resolved.metrics.values():
            for m in metrics:
                assert "{{" not in m.metric.select_expression  # Jinja helpers rendered
        if r["slug"] == "demo-custom":
            assert [s.name for s in resolved.experiment.segments] == ["regular_users_v3", "windows_users"]
            assert resolved.experiment.exposure_signal.name == "demo_feature_exposure"
            assert {"tabs_opened", "any_ad_click", "searches_with_ads"} <= by_period["week"]
            assert {"tabs_opened", "any_ad_click"} <= by_period["overall"]
            stats = {m.statistic.name for m in resolved.metrics[next(p for p in resolved.metrics if p.value == "week")]
                     if m.metric.name == "tabs_opened"}
            assert stats == {"bootstrap_mean"}
