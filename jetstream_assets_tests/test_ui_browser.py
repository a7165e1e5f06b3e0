"""The Dagster UI and the results report in a real browser (Debian's chromium driven by playwright).

A small demo home is served by `dagster-webserver` with `dagster-daemon` (sensors, the run queue and
backfills), on the queued instance the demo writes. The experimenter sensor's first tick runs
demo-complete's every date; then the test walks every UI path that selects an experiment's dates and
asserts from the instance which cells each one materialized:

* a sensor's run, an asset page's Materialize over a range, a Catalog selection of several assets, and
  one cell launched by hand: exactly the selected cells, each run tagged jetstream/experiment;
* the job page's backfill (Dagster would run its first cell only): refused by the plan step, nothing run;
* a planted failing cell: a failed partition, the run failed; "Backfill only failed and missing" reruns
  only it;
* checks per experiment: demo-live's sample ratio warning (planted) is still there after demo-complete's
  steps passed;
* the report the one-cell launch refreshed (test_report_browser.py opens the reports themselves).

The screenshots it takes are the README's walk-through (docs/screenshots/). One test function on purpose:
pytest-xdist would otherwise start the servers once per worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from jetstream_assets.assets.plan import ANALYSIS_STEPS
from jetstream_assets.definitions import build_definitions
from jetstream_assets.exports.store import report_path
from jetstream_assets.instance import dagster_yaml
from jetstream_assets.partitions import ANALYSIS_PARTITIONS
from jetstream_assets.run_tags import EXPERIMENT_TAG, REASON_TAG
from jetstream_assets.resources import experimenter_file
from jetstream_assets.sql import names
from jetstream_assets.windows import AnalysisPeriod, rerun_dates
from jetstream_assets_tests.worlds import TODAY, demo_files, drop_enrollments, free_port

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SLUG = "demo-complete"
CLIENTS = 20_000  # enough for the planted +10% active hours to clear zero in the first week
GROUPS = ("telemetry", "experiments", "exports", "monitoring")
SRM_SLUG, SRM_BRANCH = "demo-live", "treatment-a"  # half of this branch's enrollments are dropped

TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 120_000
SENSOR_RUN_TIMEOUT_S = 900


def _rerun_dates(record: dict) -> list[dt.date]:
    """Every analysis date of the experiment, as the sensor runs them (start .. min(end + 1, yesterday))."""
    end = dt.date.fromisoformat(record["endDate"]) if record.get("endDate") else None
    return rerun_dates(dt.date.fromisoformat(record["startDate"]), end, TODAY)


def _last_enrollment(record: dict) -> dt.date:
    return dt.date.fromisoformat(record["enrollmentEndDate"]) + dt.timedelta(days=1)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own process group (its code server is a child), the whole group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@contextlib.contextmanager
def _servers(env: dict[str, str], log: Path):
    """dagster-webserver and dagster-daemon (sensors, run queue, backfills), each in its own process group."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    procs = []
    with log.open("wb") as out:
        for command in (["dagster-webserver", "-h", "127.0.0.1", "-p", str(port)], ["dagster-daemon", "run"]):
            procs.append(subprocess.Popen(
                [str(bin_dir / command[0]), *command[1:], "-w", "workspace.yaml"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            ))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if any(p.poll() is not None for p in procs):
                pytest.fail(f"a Dagster server exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        for proc in procs:
            _stop(proc)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A demo home with demo-complete in Experimenter (the sensor analyses it once the daemon runs), and
    demo-live's enrollments computed with half of one branch's enrollments dropped (a sample ratio
    mismatch), after which demo-live left Experimenter (its partitions and results are kept)."""
    home = tmp_path_factory.mktemp("ui_home")
    (home / "dagster").mkdir()
    # the instance the demo writes: the queue with one run per experiment, run monitoring
    (home / "dagster" / "dagster.yaml").write_text(dagster_yaml(monitoring_seconds=2))
    with demo_files(home, CLIENTS) as (env, experiments):
        env = {**env, "JETSTREAM_SENSOR_INTERVAL_SECONDS": "5"}
        records = {e["slug"]: e for e in experiments}
        drop_enrollments(home / "warehouse" / "telemetry" / "events.parquet", SRM_SLUG, SRM_BRANCH, keep_every=2)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        instance.add_dynamic_partitions("experiments", [SRM_SLUG])
        srm_day = _last_enrollment(records[SRM_SLUG])
        result = build_definitions(home).resolve_job_def("analysis").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": f"{srm_day}|{SRM_SLUG}",
                  "dagster/asset_partition_range_end": f"{srm_day}|{SRM_SLUG}"},
            asset_selection=[dg.AssetKey("analysis_plan"), dg.AssetKey("enrollments")],
        )
        assert result.success
        kept = [r for r in json.loads(experimenter_file(home).read_text()) if r["slug"] == SLUG]
        experimenter_file(home).write_text(json.dumps(kept))
        yield home, env, records, instance
        instance.dispose()


COMMUNITY_DIALOG = "Join the Dagster community"  # Dagster's first-visit newsletter dialog


def _dismiss_community_dialog(page) -> None:
    """A fresh instance greets its first visitor with a newsletter dialog; Skip is remembered server-side."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dialog = page.get_by_text(COMMUNITY_DIALOG)
    with contextlib.suppress(PlaywrightTimeout):
        dialog.wait_for(timeout=10_000)
        page.get_by_role("button", name="Skip").click()
    dialog.wait_for(state="hidden")


def _shot(page, name: str, **kwargs) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), **kwargs)


def _shown(name: str, labels: list[str]) -> bool:
    """The graph shortens long names in the middle (`exper…_experiments`)."""
    for label in labels:
        if label == name:
            return True
        if "…" in label:
            head, _, tail = label.partition("…")
            if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                return True
    return False


def _check_lineage(page, url: str) -> None:
    graph = build_definitions().resolve_asset_graph()
    wanted = sorted(
        key.path[-1] for key in graph.get_all_asset_keys() if graph.get(key).group_name in GROUPS
    )
    assert {"clients_daily", "events", "enrollments", "statistics", "statistics_export"} <= set(wanted)
    page.goto(f"{url}/asset-groups")
    page.get_by_text("Materialize all").first.wait_for()
    _dismiss_community_dialog(page)
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups" shortcut
    names = page.locator('[class*="AssetNode_assetName"]')
    page.wait_for_function(
        "n => document.querySelectorAll('[class*=\"AssetNode_assetName\"]').length >= n", arg=len(wanted)
    )
    labels = [t.strip() for t in names.all_inner_texts()]
    missing = [n for n in wanted if not _shown(n, labels)]
    assert not missing, f"assets missing from the lineage graph: {missing}; shown: {labels}"
    _shot(page, "lineage.png")


def _check_partitions(page, url: str, dates: list[dt.date], instance: dg.DagsterInstance, shown: dt.date) -> None:
    last = dates[-1]
    page.goto(f"{url}/assets/statistics?view=partitions&partition={shown}%7C{SLUG}")
    selection = page.get_by_placeholder(re.compile(r"ex: "))
    selection.wait_for()
    selection.fill(f"[{dates[0]}...{last}]")
    selection.press("Enter")
    # the range selects every experiment's cells of those dates (Dagster's counts do not follow the
    # experiment filter: the analysis_plan's experiment_dates does); demo-complete's are all materialized
    experiments = len(instance.get_dynamic_partitions("experiments"))
    page.get_by_text(f"{len(dates) * experiments} Partitions Selected", exact=True).wait_for()
    page.get_by_text(f"Materialized ({len(dates)})", exact=True).wait_for()
    page.get_by_text(f"Missing ({len(dates) * (experiments - 1)})", exact=True).wait_for()
    # each analysis date of the run is listed with a green "materialized" dot (and demo-live's gray one)
    for day in (shown - dt.timedelta(days=1), shown, shown + dt.timedelta(days=1)):  # the list scrolls to `shown`
        row = page.locator(f'[title="{day}"]').first
        row.wait_for()
        dots = row.locator("xpath=ancestor::div[1]/..").inner_html()
        assert "accent-green" in dots, f"{day} is not shown as materialized"
    # the selected cell shows its materialization's metadata (the statistics preview)
    page.get_by_text("comparisons", exact=True).first.wait_for()
    _shot(page, "partitions.png")


def _launch_from_ui(page, url: str, day: dt.date, instance: dg.DagsterInstance) -> str:
    """Materialize statistics_export for one cell: Materialize -> pick the partition -> Launch 1 run."""
    page.goto(f"{url}/assets/statistics_export")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_placeholder(re.compile(r"ex: ")).wait_for()
    _pick(page, dialog, SLUG, day.isoformat())
    launch = dialog.get_by_role("button", name="Launch 1 run")
    launch.wait_for()
    _shot(page, "launch.png")
    launch.click()
    view = page.get_by_role("link", name="View", exact=True)
    view.wait_for()
    href = view.get_attribute("href")
    run_id = href.rsplit("/", 1)[-1]
    page.goto(f"{url}{href}")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=RUN_TIMEOUT_MS)
    _shot(page, "run.png")
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    assert run.tags.get("dagster/from_ui") == "true"
    assert run.tags.get("dagster/partition") == f"{day}|{SLUG}"
    # the queue tagged it like a sensor's run: the one-run-per-experiment limit applies
    assert run.tags.get(EXPERIMENT_TAG) == SLUG and run.tags.get(REASON_TAG) == "launched from the Dagster UI"
    # the export's materialization links the report it refreshed
    event = instance.get_latest_materialization_event(dg.AssetKey("statistics_export"))
    assert event.run_id == run_id
    materialization = event.asset_materialization
    assert materialization.partition == f"{day}|{SLUG}"
    return materialization.metadata["report"].value


def _cells(slug: str, dates) -> set[str]:
    return {f"{d}|{slug}" for d in dates}


def _date_range(dates: list[dt.date]) -> str:
    return f"[{dates[0]}...{dates[-1]}]"


def _materialized_in(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """asset -> the cells the run materialized (what Dagster recorded, not what the run was asked)."""
    found: dict[str, set[str]] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        event = record.event_log_entry.dagster_event
        found.setdefault(event.asset_key.to_user_string(), set()).add(event.partition)
    return found


def _wait_for_runs(instance: dg.DagsterInstance, tags: dict[str, str], timeout_s: float) -> list:
    """The runs carrying `tags` once at least one exists and all have finished."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags=tags))
        if runs and all(r.is_finished for r in runs):
            return runs
        time.sleep(1)
    pytest.fail(f"runs tagged {tags} did not finish within {timeout_s} s: {[r.status for r in runs]}")


def _open_materialize(page, url: str, *, asset: str | None = None, catalog: list[str] = (), job: bool = False):
    """The launch dialog of an asset page, of a Catalog selection, or of the analysis job's page."""
    if asset:
        page.goto(f"{url}/assets/{asset}")
        page.get_by_role("button", name="Materialize…").click()
    elif catalog:
        page.goto(f"{url}/assets?view=table")
        for name in catalog:
            box = page.locator(f'[data-testid="checkbox-{name}"]')
            box.wait_for(state="attached")
            box.evaluate("e => e.click()")  # the virtualized table keeps rows outside its viewport
            assert box.is_checked(), name
        page.get_by_role("button", name=re.compile("Materialize selected")).click()
    else:
        page.goto(f"{url}/locations/jetstream_assets.definitions/jobs/analysis")
        page.get_by_role("button", name=re.compile("Materialize all")).first.click()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # "upstream not materialized" warning of some dates
        page.get_by_role("button", name="Confirm").click(timeout=3000)
    dialog = page.get_by_role("dialog")
    dialog.get_by_placeholder(re.compile(r"ex: ")).wait_for()
    return dialog


def _pick(page, dialog, slug: str, dates: str) -> None:
    """In a launch dialog: pick the experiment, then type the dates."""
    item = page.get_by_role("menuitem").filter(has_text=slug)
    for _ in range(5):  # the dialog reflows while its warnings load; a click then may miss the picker
        dialog.get_by_text("Select a partition or create one").first.click()
        with contextlib.suppress(Exception):
            item.wait_for(timeout=3000)
            break
    item.click()
    picker = dialog.get_by_placeholder(re.compile(r"ex: "))
    picker.click()
    picker.fill(dates)
    picker.press("Tab")


def _launch_backfill(page, dialog, slug: str, dates: list[dt.date], *, failed_only: bool = False,
                     shot: str | None = None) -> str:
    """Pick the experiment and the dates, launch one backfill; returns its id."""
    _pick(page, dialog, slug, _date_range(dates))
    dialog.get_by_text(f"{len(dates)} partitions", exact=True).wait_for()
    if failed_only:  # one failed cell left: the dialog launches it as one run, not a backfill
        dialog.get_by_text("Backfill only failed and missing partitions within selection").click()
        dialog.get_by_text(re.compile(r"Only 1 failed and missing partition")).wait_for()
        dialog.get_by_role("button", name="Launch 1 run").click()
        view = page.get_by_role("link", name="View", exact=True)
        view.wait_for()
        return view.get_attribute("href").rsplit("/", 1)[-1]
    if shot:
        _shot(page, shot)
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill [a-z]+"))
    toast.wait_for()
    return re.search(r"Created backfill ([a-z]+)", toast.inner_text()).group(1)


def _backfill_runs(instance, backfill_id: str) -> list:
    return _wait_for_runs(instance, {"dagster/backfill": backfill_id}, RUN_TIMEOUT_MS / 1000)


def _check_sensor_run(instance, dates: list[dt.date]) -> None:
    """The experimenter sensor's first tick ran every date of demo-complete in one run, and only those."""
    (run,) = _wait_for_runs(instance, {EXPERIMENT_TAG: SLUG, REASON_TAG: "new experiment"}, SENSOR_RUN_TIMEOUT_S)
    assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
    done = _materialized_in(instance, run.run_id)
    assert set(done) == {"analysis_plan", *ANALYSIS_STEPS}
    assert all(cells == _cells(SLUG, dates) for cells in done.values()), {a: len(c) for a, c in done.items()}


def _check_asset_page_and_catalog(page, url: str, instance, dates: list[dt.date]) -> None:
    """An asset page's and a Catalog selection's single-run backfills compute exactly the selected cells."""
    picked = dates[-6:-3]
    backfill = _launch_backfill(page, _open_materialize(page, url, asset="statistics_export"), SLUG, picked,
                                shot="backfill.png")
    (run,) = _backfill_runs(instance, backfill)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert _materialized_in(instance, run.run_id) == {"statistics_export": _cells(SLUG, picked)}
    assert run.tags[EXPERIMENT_TAG] == SLUG and run.tags[REASON_TAG] == f"backfill {backfill}"

    picked = dates[-3:-1]
    backfill = _launch_backfill(page, _open_materialize(page, url, catalog=["statistics", "metadata_export"]),
                                SLUG, picked)
    runs = _backfill_runs(instance, backfill)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    done: dict[str, set[str]] = {}
    for r in runs:
        for asset, cells in _materialized_in(instance, r.run_id).items():
            done.setdefault(asset, set()).update(cells)
    assert done == {"statistics": _cells(SLUG, picked), "metadata_export": _cells(SLUG, picked)}


def _check_job_page_refused(page, url: str, instance, dates: list[dt.date]) -> None:
    """The job page's backfill would run only its first cell; the plan step refuses it and nothing runs."""
    picked = dates[1:3]
    backfill = _launch_backfill(page, _open_materialize(page, url, job=True), SLUG, picked)
    runs = _backfill_runs(instance, backfill)
    assert runs and all(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    for r in runs:
        assert _materialized_in(instance, r.run_id) == {}
        failures = [e for e in instance.all_logs(r.run_id) if e.dagster_event and e.dagster_event.is_step_failure]
        assert any("job page" in e.dagster_event.event_specific_data.error.message for e in failures)


def _check_failed_cell(page, url: str, home: Path, instance, record: dict) -> None:
    """A metrics cell that cannot write its week-1 table fails alone: a failed partition in a failed run;
    after the cause is fixed, "Backfill only failed and missing" reruns only that cell."""
    week_end = _last_enrollment(record) + dt.timedelta(days=6)
    picked = [week_end - dt.timedelta(days=1), week_end, week_end + dt.timedelta(days=1)]
    table = home / "warehouse" / "mozanalysis" / f"{names.metrics_table(SLUG, 'enrollments', AnalysisPeriod.WEEK, 1)}.parquet"
    saved = table.read_bytes()
    table.unlink()
    table.mkdir()  # the table cannot be replaced: only the cell whose week-1 window closes fails
    try:
        backfill = _launch_backfill(page, _open_materialize(page, url, asset="metrics"), SLUG, picked)
        (run,) = _backfill_runs(instance, backfill)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert _materialized_in(instance, run.run_id) == {"metrics": _cells(SLUG, [picked[0], picked[2]])}
        status = instance.get_status_by_partition(dg.AssetKey("metrics"), sorted(_cells(SLUG, picked)),
                                                  ANALYSIS_PARTITIONS)
        assert status[f"{week_end}|{SLUG}"] == dg.AssetPartitionStatus.FAILED
        page.goto(f"{url}/assets/metrics?view=partitions&partition={week_end}%7C{SLUG}")
        selection = page.get_by_placeholder(re.compile(r"ex: "))
        selection.wait_for()
        selection.fill(_date_range(picked))
        selection.press("Enter")
        page.get_by_text("Failed (1)", exact=True).wait_for()
        _shot(page, "failed-cell.png")
    finally:
        table.rmdir()
        table.write_bytes(saved)
    run_id = _launch_backfill(page, _open_materialize(page, url, asset="metrics"), SLUG, picked, failed_only=True)
    (run,) = _wait_for_runs(instance, {"dagster/partition": f"{week_end}|{SLUG}"}, RUN_TIMEOUT_MS / 1000)
    assert run.run_id == run_id and run.status == dg.DagsterRunStatus.SUCCESS
    assert _materialized_in(instance, run.run_id) == {"metrics": {f"{week_end}|{SLUG}"}}


def _check_checks_per_experiment(page, url: str, instance, records: dict) -> None:
    """demo-live's sample ratio warning stays on its cell after demo-complete's enrollments passed."""
    check = dg.AssetCheckKey(dg.AssetKey("enrollments"), "sample_ratio_mismatch")
    storage = instance.event_log_storage
    latest = {
        slug: storage.get_latest_asset_check_execution_by_key(
            [check], partition_filter=PartitionKeyFilter(key=f"{_last_enrollment(records[slug])}|{slug}"))[check]
        for slug in (SRM_SLUG, SLUG)
    }
    assert latest[SRM_SLUG].status == AssetCheckExecutionRecordStatus.FAILED
    assert latest[SRM_SLUG].evaluation.severity == dg.AssetCheckSeverity.WARN
    assert latest[SLUG].status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert latest[SRM_SLUG].create_timestamp < latest[SLUG].create_timestamp  # demo-complete's came later
    page.goto(f"{url}/assets/enrollments?view=checks&checkDetail=sample_ratio_mismatch")
    page.locator('button[role="tab"]#partitions').click()
    srm_day = _last_enrollment(records[SRM_SLUG])
    selection = page.get_by_placeholder(re.compile(r"ex: "))
    selection.fill(f"[{_last_enrollment(records[SLUG])}...{srm_day}]")
    selection.press("Enter")
    page.locator(f'[title="{srm_day}"]').first.click()
    page.locator(f'[title="{SRM_SLUG}"]').first.click()
    page.get_by_text("Sample ratio mismatch", exact=False).first.wait_for()
    _shot(page, "checks.png")


def _check_experiment_dates(page, url: str, dates: list[dt.date]) -> None:
    """The plan's latest cell of demo-complete lists every date: what it does and which steps are done."""
    page.goto(f"{url}/assets/analysis_plan?view=partitions&partition={dates[-1]}%7C{SLUG}")
    page.get_by_text("experiment_dates", exact=True).first.wait_for()
    page.get_by_text("[Show Markdown]").last.click()
    shown = page.get_by_role("dialog")
    shown.get_by_text(f"{len(dates)} analysis dates", exact=False).first.wait_for()
    for day in (dates[0], dates[-1]):
        assert str(day) in shown.inner_text()
    _shot(page, "experiment-dates.png")
    page.keyboard.press("Escape")


def test_ui_paths_compute_exactly_the_selected_cells(demo_home, tmp_path):
    from playwright.sync_api import sync_playwright

    home, env, records, instance = demo_home
    dates = _rerun_dates(records[SLUG])
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does it)"
    log = tmp_path / "servers.log"
    with _servers(env, log) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            _check_sensor_run(instance, dates)
            report = home / "exports" / report_path(SLUG)
            written = report.stat().st_mtime_ns
            _check_lineage(page, url)
            week_end = _last_enrollment(records[SLUG]) + dt.timedelta(days=6)
            _check_partitions(page, url, dates, instance, shown=week_end)
            _check_experiment_dates(page, url, dates)
            _check_checks_per_experiment(page, url, instance, records)
            _check_asset_page_and_catalog(page, url, instance, dates)
            _check_job_page_refused(page, url, instance, dates)
            _check_failed_cell(page, url, home, instance, records[SLUG])
            link = _launch_from_ui(page, url, week_end, instance)
            assert link == report.resolve().as_uri()
            assert report.stat().st_mtime_ns > written, "the UI run did not refresh the report"
            # the report itself is checked in a browser by test_report_browser.py
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"page at failure: {page.url} (screenshot {tmp_path / 'failure.png'})")
            print(f"server log:\n{log.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
