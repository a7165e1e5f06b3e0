"""The Dagster UI and the results report in a real browser (Debian's chromium driven by playwright).

A small demo home (one experiment analysed up to its first weekly window, in a persistent instance) is
served by `dagster-webserver`; the test walks what a data scientist does: the lineage graph from the
telemetry tables to the exports, the experiment's partitions, and a materialization launched by clicking
through the UI that refreshes the results report (test_report_browser.py opens the reports). The screenshots it
takes are the README's walk-through (docs/screenshots/).

One test function on purpose: pytest-xdist would otherwise start the webserver once per worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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

from jetstream_assets.definitions import build_definitions
from jetstream_assets.exports.store import report_path
from jetstream_assets.runner import run_experiment
from jetstream_assets_tests.worlds import TODAY, demo_files, free_port

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SLUG = "demo-complete"
CLIENTS = 20_000  # enough for the planted +10% active hours to clear zero in the first week
GROUPS = ("telemetry", "experiments", "exports", "monitoring")
# A manual launch runs at once with the default coordinator; the demo's queue would need the daemon.
DAGSTER_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""
TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 120_000



def _analysis_dates(record: dict) -> list[dt.date]:
    """From the start to the day the first weekly window closes (last enrollment date + 6)."""
    start = dt.date.fromisoformat(record["startDate"])
    enrollment = (dt.date.fromisoformat(record["enrollmentEndDate"]) - start).days + 1
    return [start + dt.timedelta(days=i) for i in range(enrollment + 7)]


@contextlib.contextmanager
def _webserver(env: dict[str, str], log: Path):
    """dagster-webserver in its own process group (its code server is a child), killed as a group."""
    port = free_port()
    binary = Path(sys.executable).parent / "dagster-webserver"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A demo home whose persistent instance holds one experiment's run over its first 14 dates."""
    home = tmp_path_factory.mktemp("ui_home")
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML)
    with demo_files(home, CLIENTS) as (env, experiments):
        record = next(e for e in experiments if e["slug"] == SLUG)
        dates = _analysis_dates(record)
        instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        summary = run_experiment(instance, build_definitions(home), SLUG, dates)
        assert summary.success, summary.errors
        yield home, env, dates, instance
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


def _check_partitions(page, url: str, dates: list[dt.date]) -> None:
    last = dates[-1]
    page.goto(f"{url}/assets/statistics?view=partitions&partition={last}%7C{SLUG}")
    selection = page.get_by_placeholder(re.compile(r"ex: "))
    selection.wait_for()
    selection.fill(f"[{dates[0]}...{last}]")
    selection.press("Enter")
    page.get_by_text(f"{len(dates)} Partitions Selected", exact=True).wait_for()
    # every date of the experiment's run, and no other, counts as materialized
    page.get_by_text(f"Materialized ({len(dates)})", exact=True).wait_for()
    page.get_by_text("Missing (0)", exact=True).wait_for()
    # each analysis date of the run is listed with the green "materialized" dot
    for day in (dates[0], dates[len(dates) // 2], last):
        row = page.locator(f'[title="{day}"]').first
        row.wait_for()
        dot = row.locator("xpath=ancestor::div[1]/following-sibling::div[1]")
        assert "accent-green" in (dot.get_attribute("style") or ""), f"{day} is not shown as materialized"
    # the selected cell shows its materialization's metadata (the statistics preview)
    page.get_by_text("comparisons", exact=True).first.wait_for()
    _shot(page, "partitions.png")


def _launch_from_ui(page, url: str, day: dt.date, instance: dg.DagsterInstance) -> str:
    """Materialize statistics_export for one cell: Materialize -> pick the partition -> Launch 1 run."""
    page.goto(f"{url}/assets/statistics_export")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dates = dialog.get_by_placeholder(re.compile(r"ex: "))
    dates.wait_for()
    item = page.get_by_role("menuitem").filter(has_text=SLUG)
    for _ in range(5):  # the dialog reflows while its warnings load; a click then may miss the picker
        dialog.get_by_text("Select a partition or create one").first.click()
        with contextlib.suppress(Exception):
            item.wait_for(timeout=3000)
            break
    item.click()
    dates.click()
    dates.fill(day.isoformat())
    dates.press("Tab")
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
    # the export's materialization links the report it refreshed
    event = instance.get_latest_materialization_event(dg.AssetKey("statistics_export"))
    assert event.run_id == run_id
    materialization = event.asset_materialization
    assert materialization.partition == f"{day}|{SLUG}"
    return materialization.metadata["report"].value


def test_ui_lineage_partitions_launch_and_report(demo_home, tmp_path):
    from playwright.sync_api import sync_playwright

    home, env, dates, instance = demo_home
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does it)"
    report = home / "exports" / report_path(SLUG)
    assert report.exists(), "statistics_export wrote no report"
    written = report.stat().st_mtime_ns
    log = tmp_path / "webserver.log"
    with _webserver(env, log) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            _check_lineage(page, url)
            _check_partitions(page, url, dates)
            link = _launch_from_ui(page, url, dates[-1], instance)
            assert link == report.resolve().as_uri()
            assert report.stat().st_mtime_ns > written, "the UI run did not refresh the report"
            # the report itself is checked in a browser by test_report_browser.py
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"page at failure: {page.url} (screenshot {tmp_path / 'failure.png'})")
            print(f"webserver log:\n{log.read_text()[-4000:]}")
            raise
        finally:
            browser.close()
