"""Hostile metric-hub configs and Experimenter payloads, as an attacker would send them.

A corpus of configs (sandbox escapes in every templated field, SQL that writes or reads files, oversized and
deeply nested files, runaway templates) goes through `validate-config`, a pipeline run and a metric-hub sensor
tick: each is one clean `file:line: field: cause` error, the canary file a payload would create is never
created, the secret file the SQL tries to read never reaches an output, and the other experiments still
produce results. Then two slugs that share table names, and a slug Experimenter lists twice.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.demo.config_repo import SOURCE, create_config_repo
from jetstream_assets.demo.experiments import write_experimenter_file
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.resources import experimenter_file, metric_hub_dir
from jetstream_assets.sensors.experimenter import experimenter_sensor
from jetstream_assets.sensors.metric_hub import metric_hub_sensor
from jetstream_assets.sql import names
from jetstream_assets_tests.worlds import TODAY, build_world, run

SECRET_NUMBER = 424242424242


def _escape(canary: Path) -> dict[str, str]:
    """The usual Jinja sandbox escapes; the first two would create `canary`."""
    shell = f"touch {canary}"
    return {
        "cycler": f"{{{{ cycler.__init__.__globals__.os.popen('{shell}').read() }}}}",
        "lipsum": f"{{{{ lipsum.__globals__['os'].popen('{shell}').read() }}}}",
        "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "template_reference": "{{ self._TemplateReference__context }}",
        "format_globals": "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    }


def hostile_metrics(tmp: Path) -> dict[str, tuple[str, str | None, str]]:
    """case -> (select_expression, a data source it defines (from_expression) or None, field to blame)."""
    canary, secret = tmp / "canary", tmp / "secret.csv"
    cases: dict[str, tuple[str, str | None, str]] = {
        f"jinja-{kind}": (payload, None, "metrics.{name}") for kind, payload in _escape(canary).items()
    }
    cases["jinja-range"] = ("{% for i in range(100000000) %}x{% endfor %}", None, "metrics.{name}")
    cases["jinja-nested-loops"] = (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}1", None, "metrics.{name}")
    cases["jinja-output"] = ("{{ 'x' * 10000000000 }}", None, "metrics.{name}")
    cases["sql-read-csv"] = (f"COUNT(*) + (SELECT MAX(secret) FROM read_csv('{secret}'))", None,
                             "metrics.{name}.select_expression")
    cases["sql-from-read-text"] = (
        "COUNT(*)",
        f"(SELECT content AS client_id, DATE '2026-10-01' AS submission_date FROM read_text('{secret}'))",
        "data_sources.{ds}.from_expression")
    cases["sql-quoted-path"] = ("COUNT(*)", f"'{secret}'", "data_sources.{ds}.from_expression")
    return cases


def metrics_toml(metrics: dict[str, tuple[str, str | None, str]], keep: str | None = None) -> str:
    """A config listing `keep` (a good metric) and each hostile metric as m_<i>, each with its data source."""
    names_ = [f"m_{i}" for i in range(len(metrics))]
    lines = ["[metrics]", f"weekly = {json.dumps(([keep] if keep else []) + names_)}", ""]
    if keep:
        lines += [f"[metrics.{keep}]", 'data_source = "clients_daily"',
                  "select_expression = '{{agg_sum(\"scalar_parent_browser_engagement_tab_open_event_count_sum\")}}'",
                  f"[metrics.{keep}.statistics.bootstrap_mean]", ""]
    for name, (select, from_expression, _) in zip(names_, metrics.values(), strict=True):
        source = f"source_{name}" if from_expression else "clients_daily"
        lines += [f"[metrics.{name}]", f"data_source = {json.dumps(source)}",
                  f"select_expression = {json.dumps(select)}", f"[metrics.{name}.statistics.bootstrap_mean]", ""]
        if from_expression:
            lines += [f"[data_sources.{source}]", f"from_expression = {json.dumps(from_expression)}",
                      'experiments_column_type = "none"', ""]
    return "\n".join(lines)


def hostile_segments(tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (TOML of a segment `evil_<case>` and whatever it needs, field to blame)."""
    return {
        "jinja-segment": (textwrap.dedent(f"""
            [segments.evil_jinja]
            data_source = "clients_last_seen"
            select_expression = {json.dumps(_escape(tmp / "canary")["lipsum"])}
        """), "segments.evil_jinja"),
        "sql-segment-glob": (textwrap.dedent(f"""
            [segments.evil_glob]
            data_source = "files"
            select_expression = "COUNT(*) > 0"
            [segments.data_sources.files]
            from_expression = "(SELECT file AS client_id, DATE '2026-10-01' AS submission_date FROM read_parquet('{tmp}/*.parquet'))"
        """), "segments.data_sources.files.from_expression"),
    }


def hostile_experiments(tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (an [experiment] table, field to blame)."""
    canary, secret = tmp / "canary", tmp / "secret.csv"
    copy = ("SELECT 'a' AS analysis_id, 'control' AS branch, DATE '2026-10-01' AS enrollment_date, "
            "1 AS num_enrollment_events) SELECT 1; COPY (SELECT content FROM read_text('/etc/hostname')) "
            f"TO '{canary}'; WITH raw_enrollments AS (SELECT 1")
    queries = {
        "sql-copy": copy,
        "jinja-enrollment-query": _escape(canary)["cycler"],
        "sql-attach": f"ATTACH '{canary}' AS x",
        "sql-install": "INSTALL httpfs",
        "sql-load": "LOAD httpfs",
        "sql-pragma": "PRAGMA version",
        "sql-set": "SET threads = 1",
        "sql-create": "CREATE TABLE t AS SELECT 1",
        "sql-insert": "INSERT INTO t SELECT 1",
        "sql-glob": "SELECT file AS analysis_id FROM glob('/etc/*')",
    }
    cases = {case: (f"[experiment]\nenrollment_query = {json.dumps(q)}\n", "experiment.enrollment_query")
             for case, q in queries.items()}
    cases["sql-exposure"] = (textwrap.dedent(f"""
        [experiment.exposure_signal]
        name = "leaky_exposure"
        friendly_name = "x"
        description = "x"
        data_source = "clients_daily"
        select_expression = "(SELECT COUNT(*) FROM read_json_auto('{secret}')) > 0"
        window_start = 0
        window_end = "analysis_window_end"
    """), "experiment.exposure_signal.select_expression")
    return cases


def corpus(tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (TOML of one experiment config, field its error must name)."""
    cases = {}
    for case, metric in hostile_metrics(tmp).items():
        _, from_expression, field = metric
        cases[case] = (metrics_toml({case: metric}), field.format(name="m_0", ds="source_m_0"))
    for case, (text, field) in hostile_segments(tmp).items():
        name = re.search(r"\[segments\.(evil_\w+)\]", text).group(1)
        cases[case] = (f'[experiment]\nsegments = ["{name}"]\n{text}', field)
    cases.update(hostile_experiments(tmp))
    big = "".join(f'[metrics.m{i}]\ndata_source = "clients_daily"\nselect_expression = "SUM(x)"\n'
                  for i in range(20000))
    cases["size"] = (big, "(file)")
    cases["deep-arrays"] = ("[metrics]\nweekly = " + "[" * 50000 + "]" * 50000 + "\n", "(file)")
    cases["long-key"] = ("[" + ".".join(f"k{i}" for i in range(3000)) + "]\na = 1\n", "(file)")
    cases["deep-tables"] = ("[metrics]\n" + ".".join(f"k{i}" for i in range(40)) + " = 1\n", "(file)")
    cases["many-entries"] = ("[metrics]\nweekly = [" + ", ".join(['"active_hours"'] * 50_000) + "]\n", "(file)")
    return cases


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Two demo metric-hubs holding the corpus, one file per case (the payloads in one, the files that
    exhaust resources in the other: neither hides what the other would do), each validated once."""
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "secret.csv").write_text(f"secret\n{SECRET_NUMBER}\n")
    cases = corpus(tmp)
    paths, runs = {}, []
    for group, cases_ in (("payloads", [c for c in cases if c not in RUNAWAY]), ("runaway", sorted(RUNAWAY))):
        hub = tmp / group / "metric-hub"
        shutil.copytree(SOURCE, hub)
        files = []
        for case in cases_:
            paths[case] = hub / "jetstream" / f"{case}.toml"
            paths[case].write_text(cases[case][0])
            files.append(str(paths[case]))
        if group == "payloads":
            paths["functions"] = hub / "definitions" / "functions.toml"
            paths["functions"].write_text(
                paths["functions"].read_text() + '\n[functions.agg_evil]\ndefinition = "{select_expr.__class__}"\n'
            )
            files.append(str(paths["functions"]))
        # a subprocess, as metric-hub's CI runs it: on code that hangs, the test fails instead of the suite
        runs.append(subprocess.run(
            [sys.executable, "-m", "jetstream_assets.cli", "validate-config", "--synthetic", "--platform",
             "firefox_desktop", *files],
            capture_output=True, text=True, timeout=600, cwd=tmp,
        ))
    return tmp, paths, cases, runs


#: cases that exhaust memory, time or the stack rather than run a payload
RUNAWAY = {"jinja-range", "jinja-nested-loops", "jinja-output", "size", "deep-arrays", "long-key", "deep-tables",
           "many-entries"}


def _report(stdout: str, path: str) -> list[str]:
    """The summary line and the problem lines validate-config printed for one file."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{path}:"))
    out = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line)
    return out


def test_validate_config_refuses_every_hostile_file_with_file_line_field_and_cause(hostile):
    tmp, paths, cases, runs = hostile
    for proc in runs:
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    stdout = "\n".join(proc.stdout for proc in runs)
    for case, (_, field) in cases.items():
        path = str(paths[case])
        report = _report(stdout, path)
        assert "problem(s)" in report[0], (case, report)
        line = r"(:\d+)?" if field == "(file)" else r":\d+"
        pattern = re.compile(rf"^  {re.escape(path)}{line}: {re.escape(field)}: \S")
        assert any(pattern.match(problem) for problem in report[1:]), (case, report)
    functions = _report(stdout, str(paths["functions"]))
    assert any("functions.agg_evil.definition" in line and "{select_expr}" in line for line in functions)


def test_validate_config_says_what_was_refused(hostile):
    tmp, paths, cases, runs = hostile
    stdout = "\n".join(proc.stdout for proc in runs)

    def problems(case: str) -> str:
        return "\n".join(_report(stdout, str(paths[case]))[1:])

    for case in ("jinja-cycler", "jinja-lipsum", "jinja-subclasses", "jinja-template_reference",
                 "jinja-format_globals", "jinja-enrollment-query", "jinja-segment"):
        assert "unsafe" in problems(case) or "not allowed" in problems(case), problems(case)
    assert "100,000,000 items" in problems("jinja-range")
    assert "loop iterations" in problems("jinja-nested-loops")
    assert "characters" in problems("jinja-output")
    assert "read_csv()" in problems("sql-read-csv") and "read_text()" in problems("sql-from-read-text")
    assert "file path" in problems("sql-quoted-path") and "read_parquet()" in problems("sql-segment-glob")
    assert "read_json_auto()" in problems("sql-exposure") and "`;`" in problems("sql-copy")
    for case in ("sql-attach", "sql-install", "sql-load", "sql-pragma", "sql-set", "sql-create", "sql-insert",
                 "sql-glob"):
        assert "refused" in problems(case), problems(case)
    assert "1 MiB" in problems("size")
    assert all("nested" in problems(case) for case in ("deep-arrays", "long-key", "deep-tables"))
    assert "50,000 entries" in problems("many-entries")


def test_validate_config_never_runs_a_payload_nor_reads_the_secret(hostile):
    tmp, _, _, runs = hostile
    assert not (tmp / "canary").exists()
    assert all(str(SECRET_NUMBER) not in proc.stdout + proc.stderr for proc in runs)


# ---- a pipeline run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("untrusted_run")
    tmp = tmp_path_factory.mktemp("untrusted_payloads")
    (tmp / "secret.csv").write_text(f"secret\n{SECRET_NUMBER}\n")
    with build_world(home, 4_000) as w:
        repo = metric_hub_dir(home)
        # demo-live: a good metric of its own next to every hostile metric and segment of the corpus
        segments = hostile_segments(tmp)
        names_ = [re.search(r"\[segments\.(evil_\w+)\]", text).group(1) for text, _ in segments.values()]
        (repo / "jetstream" / "demo-live.toml").write_text(
            f"[experiment]\nsegments = {json.dumps(names_)}\n\n"
            + metrics_toml(hostile_metrics(tmp), keep="tabs_opened")
            + "".join(text for text, _ in segments.values())
        )
        # demo-custom and demo-enrolling: enrollment queries that copy a file, escape the sandbox
        experiments = hostile_experiments(tmp)
        (repo / "jetstream" / "demo-custom.toml").write_text(experiments["sql-copy"][0])
        (repo / "jetstream" / "demo-enrolling.toml").write_text(experiments["jinja-enrollment-query"][0])
        w.extra["tmp"] = tmp
        live = next(e for e in w.experiments if e["slug"] == "demo-live")
        last = dt.date.fromisoformat(live["enrollmentEndDate"]) + dt.timedelta(days=1)
        week = [last + dt.timedelta(days=i) for i in range(7)]
        w.extra["live"] = run(w, "demo-live", week)
        w.extra["custom"] = run(w, "demo-custom", [week[-1]])
        w.extra["enrolling"] = run(w, "demo-enrolling", [week[-1]])
        complete = next(e for e in w.experiments if e["slug"] == "demo-complete")
        first_week = dt.date.fromisoformat(complete["enrollmentEndDate"]) + dt.timedelta(days=7)
        w.extra["complete"] = run(w, "demo-complete", [first_week])
        yield w


def test_a_run_drops_each_hostile_metric_and_segment_and_analyses_the_rest(world):
    live = world.extra["live"]
    assert live.success, live.errors
    stats = world.warehouse.read_table(names.statistics_table("demo-live", AnalysisPeriod.WEEK, 1))
    assert set(stats["metric"]) >= {"tabs_opened", "active_hours"}
    assert not any(m.startswith("m_") for m in stats["metric"])
    enrollments = world.warehouse.read_table(names.enrollments_table("demo-live"))
    assert len(enrollments) > 0 and not {"evil_jinja", "evil_glob"} & set(enrollments.columns)
    assert world.extra["complete"].success
    assert world.warehouse.table_exists(names.statistics_table("demo-complete", AnalysisPeriod.WEEK, 1))


def test_a_run_never_runs_a_payload_nor_reads_the_secret(world):
    assert not (world.extra["tmp"] / "canary").exists()
    for table in world.warehouse.list_tables():
        frame = world.warehouse.read_table(table)
        assert not (frame.select_dtypes("number").abs() >= SECRET_NUMBER).any().any(), table
        assert not frame.astype(str).apply(lambda col: col.str.contains(str(SECRET_NUMBER))).any().any(), table
    for path in (world.home / "exports").rglob("*"):
        if path.is_file():
            assert str(SECRET_NUMBER) not in path.read_text(errors="ignore"), path


def test_a_hostile_enrollment_query_stops_only_its_experiment_naming_file_and_field(world):
    for key, slug in (("custom", "demo-custom"), ("enrolling", "demo-enrolling")):
        text = "\n".join(world.extra[key].errors)
        assert f"jetstream/{slug}.toml" in text and "experiment.enrollment_query" in text, text
        assert not world.warehouse.table_exists(names.enrollments_table(slug))


# ---- a metric-hub sensor tick -----------------------------------------------------------------------


def _git_commit(repo: Path, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
                   cwd=repo, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_metric_hub_tick_over_a_hostile_commit_runs_none_of_it_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("JETSTREAM_TODAY", TODAY.isoformat())
    repo = tmp_path / "metric-hub"
    create_config_repo(repo)
    write_experimenter_file(tmp_path / "experiments.json", TODAY)
    resources = {"experimenter": Experimenter(path=str(tmp_path / "experiments.json")),
                 "metric_hub": MetricHub(path=str(repo))}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(EXPERIMENTS.name, ["demo-complete", "demo-live", "demo-custom"])

        def tick(cursor):
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                return metric_hub_sensor(context), context.cursor

        _, cursor = tick(None)
        (repo / "jetstream" / "demo-live.toml").write_text(metrics_toml(hostile_metrics(tmp_path), keep="tabs_opened"))
        (repo / "jetstream" / "demo-complete.toml").write_text(hostile_experiments(tmp_path)["sql-copy"][0])
        functions = repo / "definitions" / "functions.toml"
        functions.write_text(functions.read_text() + '\n[functions.agg_evil]\ndefinition = "{select_expr.__class__}"\n')
        head = _git_commit(repo, "hostile")
        result, _ = tick(cursor)

    assert not (tmp_path / "canary").exists()
    assert isinstance(result, dg.SensorResult) and json.loads(result.cursor) == {"commit": head}
    reruns = {r.tags["jetstream/experiment"]: r for r in result.run_requests}
    assert {"demo-complete", "demo-live"} <= set(reruns)


# ---- slugs that share table names; a slug listed twice ----------------------------------------------


@pytest.fixture
def payload(tmp_path, monkeypatch):
    monkeypatch.setenv("JETSTREAM_TODAY", TODAY.isoformat())
    create_config_repo(tmp_path / "metric-hub")
    file = tmp_path / "experiments.json"
    write_experimenter_file(file, TODAY)
    records = json.loads(file.read_text())
    resources = {"experimenter": Experimenter(path=str(file)), "metric_hub": MetricHub(path=str(tmp_path / "metric-hub"))}
    with dg.instance_for_test() as instance:
        yield file, records, resources, instance


def _sensor_tick(instance, resources, caplog):
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = experimenter_sensor(context)
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    instance.add_dynamic_partitions(EXPERIMENTS.name, added)  # as the daemon does: UNIQUE keys
    runs = {r.tags["jetstream/experiment"] for r in result.run_requests if r.job_name == "analysis"}
    return added, runs


def test_sensor_refuses_the_later_of_two_slugs_with_the_same_table_names(payload, caplog):
    file, records, resources, instance = payload
    complete = next(r for r in records if r["slug"] == "demo-complete")
    file.write_text(json.dumps([*records, {**complete, "slug": "demo_complete"}]))
    added, runs = _sensor_tick(instance, resources, caplog)
    assert "demo-complete" in added and "demo_complete" not in added
    assert "demo-complete" in runs and "demo_complete" not in runs and "demo-live" in runs
    refusal = [r.getMessage() for r in caplog.records if "demo_complete" in r.getMessage()]
    assert refusal and "demo-complete" in refusal[0] and "refused" in refusal[0]


def test_an_experiment_already_in_the_instance_keeps_its_names_whatever_experimenter_lists_first(payload, caplog):
    file, records, resources, instance = payload
    instance.add_dynamic_partitions(EXPERIMENTS.name, ["demo-complete"])
    complete = next(r for r in records if r["slug"] == "demo-complete")
    file.write_text(json.dumps([{**complete, "slug": "demo_complete"}, *records]))
    added, runs = _sensor_tick(instance, resources, caplog)
    assert "demo_complete" not in added and "demo_complete" not in runs and "demo-complete" in runs


def test_a_slug_listed_twice_is_logged_once_and_the_tick_goes_on(payload, caplog):
    file, records, resources, instance = payload
    live = next(r for r in records if r["slug"] == "demo-live")
    file.write_text(json.dumps([*records, live, {**live, "endDate": None}, live]))
    added, runs = _sensor_tick(instance, resources, caplog)
    assert sorted(added) == sorted(set(added)) and {"demo-live", "demo-complete", "demo-custom"} <= set(added)
    assert {"demo-live", "demo-complete", "demo-custom"} <= runs
    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert len(warnings) == 1 and "demo-live" in warnings[0]


def test_a_run_of_the_later_slug_is_refused_and_the_first_keeps_its_tables_and_exports(tmp_path, monkeypatch, capsys):
    from jetstream_assets.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))
    with build_world(tmp_path / "home", 3_000) as w:
        complete = next(e for e in w.experiments if e["slug"] == "demo-complete")
        day = (dt.date.fromisoformat(complete["enrollmentEndDate"]) + dt.timedelta(days=7)).isoformat()
        records = json.loads(experimenter_file(w.home).read_text())
        experimenter_file(w.home).write_text(json.dumps([*records, {**complete, "slug": "demo_complete"}]))
        assert main(["run", "--experiment", "demo-complete", "--date", day, "--home", str(w.home)]) == 0
        capsys.readouterr()
        enrollments = w.warehouse.table_path(names.enrollments_table("demo-complete"))
        exports = sorted(p for p in (w.home / "exports").rglob("*demo_complete*") if p.is_file())
        before = {p: p.read_bytes() for p in [enrollments, *exports]}
        assert len(pd.read_parquet(enrollments)) > 0 and any("statistics" in p.parts for p in exports)

        assert main(["run", "--experiment", "demo_complete", "--date", day, "--home", str(w.home)]) == 2
        err = capsys.readouterr().err
        assert "'demo_complete' is refused" in err and "'demo-complete'" in err
        assert {p: p.read_bytes() for p in before} == before


# ---- the pieces the corpus relies on ----------------------------------------------------------------


def test_metric_hub_jinja_helpers_render_in_the_sandbox_as_before():
    """Every function of the real metric-hub's functions.toml expands exactly as Python's format does."""
    import tomllib

    from jetstream_assets.config import sandbox
    from metric_config_parser.config import ConfigCollection
    from metric_config_parser.function import FunctionsSpec

    assert sandbox.installed()
    data = tomllib.loads(Path("/work/shared/metric-hub-sample/definitions/functions.toml").read_text())
    collection = ConfigCollection([], [], [], [], functions=FunctionsSpec.from_dict(data))
    env = collection.get_env()
    assert isinstance(env, sandbox.BoundedSandbox)
    for slug, function in data["functions"].items():
        rendered = env.from_string(f'{{{{{slug}("payload.histogram_x")}}}}').render()
        assert rendered == function["definition"].format(select_expr="payload.histogram_x"), slug


def test_local_engine_reads_and_writes_only_inside_its_home(tmp_path):
    """Behind the SQL check: whatever SQL reaches a DuckDB connection of the local engine, files outside the
    warehouse folder stay out of reach, and the SQL cannot switch that off."""
    import duckdb

    from jetstream_assets.warehouse.local import LocalWarehouse

    outside = tmp_path / "outside.csv"
    outside.write_text(f"secret\n{SECRET_NUMBER}\n")
    warehouse = LocalWarehouse(root=str(tmp_path / "home"))
    warehouse.write_dataframe(pd.DataFrame({"x": [1, 2]}), "t")  # temporary file + rename inside the home
    assert list(warehouse.read_table("t")["x"]) == [1, 2]
    con = warehouse._connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{warehouse.table_path('t')}')").fetchone() == (2,)
    for sql in (f"SELECT * FROM read_csv('{outside}')", f"SELECT * FROM '{outside}'",
                f"SELECT content FROM read_text('{tmp_path / 'home' / '..' / 'outside.csv'}')",
                f"COPY (SELECT 1) TO '{tmp_path / 'canary.csv'}'", f"ATTACH '{tmp_path / 'x.db'}' AS x",
                "SET enable_external_access = true", "SET allowed_directories = ['/']", "INSTALL httpfs"):
        with pytest.raises(duckdb.Error, match="Permission|locked|Catalog|not exist"):
            con.execute(sql)
    assert not (tmp_path / "canary.csv").exists() and not (tmp_path / "x.db").exists()


def test_a_dry_run_over_its_time_bound_is_interrupted():
    import duckdb

    from jetstream_assets.config.limits import interrupt_after

    con = duckdb.connect(":memory:")
    with pytest.raises(duckdb.Error), interrupt_after(con, 0.2) as interrupted:
        con.execute("SELECT count(*) FROM range(1000000000000) a, range(1000000) b").fetchall()
    assert interrupted.is_set()
