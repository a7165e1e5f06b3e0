"""`jetstream-assets run`: refuses typos with a suggestion, names the flag in argument errors, warns on future
dates, shows progress, waits for the experiment's run in flight (the queue's rule), prints errors as one
paragraph (the traceback only with --debug), and starts without importing the heavy libraries."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test

from jetstream_assets.cli import main
from jetstream_assets.instance import HOST_TAG, host_tags, prepare_instance
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import EXPERIMENT_TAG
from jetstream_assets.runner import RunProgress, UnknownExperimentError, run_experiment
from jetstream_assets_tests.worlds import TODAY, build_world

CLI = Path(sys.executable).parent / "jetstream-assets"
HEAVY = ("dagster", "pandas", "mozanalysis", "scipy", "duckdb", "numpy", "metric_config_parser")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with build_world(tmp_path_factory.mktemp("cli") / "home", clients=300) as w:
        yield w


@pytest.fixture
def instance(world, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(world.home / "dagster"))  # restored after; prepare_instance sets it
    monkeypatch.setenv("JETSTREAM_HOME", str(world.home))
    return prepare_instance(world.home)


def _cli(*args: str, home: Path) -> list[str]:
    return ["run", *args, "--home", str(home)]


def test_help_starts_without_the_heavy_libraries():
    probe = (
        "import sys\nfrom jetstream_assets.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['demo', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "--experiment" in out and "LOADED []" in out


def test_typo_is_refused_with_a_suggestion_and_creates_no_partition(world, instance, capsys):
    assert main(_cli("--experiment", "demo-lve", "--date", "2026-11-20", home=world.home)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "demo-lve" in err and "Did you mean demo-live" in err and "Traceback" not in err
    assert not instance.has_dynamic_partition(EXPERIMENTS.name, "demo-lve")
    assert instance.get_runs() == []
    with pytest.raises(UnknownExperimentError, match="Did you mean demo-live"):  # the runner refuses it too
        run_experiment(instance, world.defs, "demo-lve", [dt.date(2026, 11, 20)])
    assert not instance.has_dynamic_partition(EXPERIMENTS.name, "demo-lve")


def test_a_bad_date_names_the_flag(world, capsys):
    with pytest.raises(SystemExit) as exited:
        main(_cli("--experiment", "demo-live", "--date", "2026-13-45", home=world.home))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --date: '2026-13-45' is not a date YYYY-MM-DD" in err


def test_a_future_date_warns_and_the_run_shows_its_progress(world, instance, capsys):
    future = TODAY + dt.timedelta(days=2)
    code = main(_cli("--experiment", "demo-live", "--date", future.isoformat(), home=world.home))
    out, err = capsys.readouterr()
    assert f"warning: --date {future} is after today ({TODAY})" in err
    progress = [line.strip() for line in err.splitlines() if "cells done" in line]
    assert any(line.startswith("demo-live: 0/") for line in progress)  # the total is known from the start
    total = progress[-1].split("/")[1].split()[0]
    assert progress[-1].startswith(f"demo-live: {total}/{total} cells done")
    assert any("step enrollments" in line for line in progress) and any("step statistics" in line for line in progress)
    assert f"demo-live: 1 date(s) {future}" in out and code == 0
    [run] = instance.get_runs()
    assert run.tags[EXPERIMENT_TAG] == "demo-live" and run.tags[HOST_TAG]


def _in_flight_run(instance, slug: str, pid: int) -> dg.DagsterRun:
    """A run of `slug` another CLI process (`pid`) is executing."""
    run = create_run_for_test(instance, job_name="analysis", status=dg.DagsterRunStatus.STARTED,
                              tags={EXPERIMENT_TAG: slug, **host_tags()})
    instance.report_engine_event(f"Executing steps in process (pid: {pid})", run, EngineEventData.in_process(pid))
    return run


def test_a_run_waits_for_its_experiments_run_in_flight(world, instance):
    other = _in_flight_run(instance, "demo-enrolling", os.getpid())  # alive: this process
    heard: list[RunProgress] = []
    result = {}
    worker = threading.Thread(target=lambda: result.update(summary=run_experiment(
        instance, world.defs, "demo-enrolling", [TODAY - dt.timedelta(days=1)], progress=heard.append)))
    worker.start()
    deadline = time.monotonic() + 60
    while not any(p.waiting_for for p in heard) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(other.run_id[:8] in w for p in heard for w in p.waiting_for)
    assert [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={EXPERIMENT_TAG: "demo-enrolling"}))] == [other.run_id]
    instance.report_run_canceled(other)  # the other run ends: this one may start
    worker.join(timeout=300)
    summary = result["summary"]
    assert summary.success
    ended = instance.get_run_record_by_id(other.run_id).end_time
    assert instance.get_run_record_by_id(summary.run_id).start_time >= ended


def test_a_run_whose_process_was_killed_is_failed_and_frees_the_slot(world, instance):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = _in_flight_run(instance, "demo-enrolling", gone.pid)
    summary = run_experiment(instance, world.defs, "demo-enrolling", [TODAY - dt.timedelta(days=1)])
    assert summary.success
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    failure = instance.get_records_for_run(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert f"(pid {gone.pid}) is gone" in failure[0].event_log_entry.message


def test_errors_are_one_paragraph_and_debug_shows_the_traceback(world, tmp_path):
    broken = tmp_path / "home"
    (broken / "experimenter").mkdir(parents=True)
    (broken / "experimenter" / "experiments.json").write_text('[{"slug": "x",')
    env = {**os.environ, "JETSTREAM_TODAY": TODAY.isoformat()}
    env.pop("DAGSTER_HOME", None)
    for home, debug, expected in (
        (broken, False, "is not valid JSON"),
        (tmp_path / "missing", False, "does not exist"),
        (tmp_path / "missing", True, "does not exist"),
    ):
        args = [str(CLI), *_cli("--experiment", "demo-live", "--date", "2026-11-20", home=home)]
        done = subprocess.run(args + (["--debug"] if debug else []), capture_output=True, text=True, env=env)
        assert done.returncode == 2 and expected in " ".join(done.stderr.split())
        assert ("Traceback" in done.stderr) == debug
        if not debug:
            assert done.stderr.startswith("error: ") and done.stderr.count("error:") == 1
            assert "\n\n" not in done.stderr.strip()  # one paragraph
    assert not (tmp_path / "missing").exists()  # nothing created for a mistyped home


def test_run_uses_dagster_home_when_it_holds_your_own_instance(tmp_path, monkeypatch):
    from jetstream_assets.instance import dagster_yaml, own_instance

    production = tmp_path / "production"
    production.mkdir()
    (production / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(production))
    assert own_instance(tmp_path / "home").root_directory == str(production)
    (production / "dagster.yaml").write_text(dagster_yaml())  # one jetstream-assets wrote: the home's is used
    assert own_instance(tmp_path / "home") is None


def test_the_command_exits_without_the_interpreter_teardown_but_runs_atexit_handlers(tmp_path):
    """`entry` (the console script) ends the process once the command returned: atexit handlers run and the
    output is complete, but objects are not finalised one by one (after a rerun that took about a second)."""
    probe = (
        "import atexit, os, sys\nfrom jetstream_assets import cli\n"
        "class Finalised:\n    def __del__(self, write=os.write):\n        write(2, b'FINALISED\\n')\n"
        "kept = Finalised()\natexit.register(lambda: sys.stderr.write('ATEXIT\\n'))\n"
        "print('OUTPUT', end='')\n"
        "sys.argv = ['jetstream-assets', 'run', '--experiment', 'demo-live', '--all-dates', '--home', "
        f"{str(tmp_path / 'no')!r}]\n"
        "cli.entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    # the message is wrapped to the terminal width: a long temporary path moves the line breaks
    assert done.returncode == 2 and "does not exist" in " ".join(done.stderr.split())
    assert done.stdout == "OUTPUT" and "ATEXIT" in done.stderr and "FINALISED" not in done.stderr
    # under a profiler (python -m cProfile ...) the interpreter exits normally, so the profile gets written
    profiled = subprocess.run([sys.executable, "-c", "import sys\nsys.setprofile(lambda *a: None)\n" + probe],
                              capture_output=True, text=True)
    assert profiled.returncode == 2 and "FINALISED" in profiled.stderr and "ATEXIT" in profiled.stderr


def test_a_cli_run_closes_the_event_log_and_warehouse_files_before_it_exits(tmp_path):
    with build_world(tmp_path / "home", clients=200) as world:  # its own home: no other process holds its files
        env = {**os.environ, "JETSTREAM_TODAY": TODAY.isoformat()}
        env.pop("DAGSTER_HOME", None)
        args = [str(CLI), *_cli("--experiment", "demo-live", "--date", "2026-11-20", home=world.home)]
        done = subprocess.run(args, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "demo-live: 1 date(s) 2026-11-20" in done.stdout and "(ok, run" in done.stdout
    left = [p.name for p in (world.home / "dagster").rglob("*") if p.name.endswith(("-wal", "-shm", "-journal"))]
    assert left == []  # SQLite checkpointed and closed (the instance disposed), not left to recovery
    tmp = world.home / "warehouse" / ".duckdb_tmp"
    assert not tmp.exists() or [p.name for p in tmp.iterdir() if not p.name.startswith("profile-")] == []
