"""Every demo results report and the aggregates dashboard in a real browser (Debian's chromium driven by
playwright), as a data scientist reads them.

A small demo home (the three analysable demo experiments, each run on the dates a weekly, pre-enrollment or
overall window closes; a few days of aggregated main pings) is built once. Each report is opened from the
export folder with no server: every absolute value and interval it shows equals the statistics export, the
tabs and the page-wide segment and basis selectors switch what is shown, and nothing is fetched. The
dashboard is served by the aggregates API: what it draws equals what the API answers, for a histogram and a
keyed histogram, after switching family, metric, label and a filter. The screenshots it takes are the
README's walk-through (docs/screenshots/).

One test function on purpose: pytest-xdist would otherwise build the demo home once per worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from pathlib import Path
from urllib.parse import urlencode

import dagster as dg
import pytest
import requests

from jetstream_assets.aggregates.probes import registry_paths
from jetstream_assets.aggregates.rules import Rules
from jetstream_assets.assets.aggregates import materialize_aggregates
from jetstream_assets.demo.pings import write_demo_pings
from jetstream_assets.definitions import build_definitions
from jetstream_assets.demo.experiments import expected_uplift
from jetstream_assets.exports.report.format import PERIODS, num
from jetstream_assets.exports.store import report_path, statistics_path
from jetstream_assets.resources import build_resources, experimenter_file
from jetstream_assets.runner import run_experiment
from jetstream_assets.sql import names
from jetstream_assets.windows import AnalysisPeriod, windows_closing_on
from jetstream_assets_tests.test_aggregates_helpers import running_server
from jetstream_assets_tests.worlds import TODAY, demo_files

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SLUGS = ("demo-complete", "demo-live", "demo-custom")
CLIENTS = 20_000  # enough for the planted +10% active hours of demo-complete to clear zero
SUFFIX = {"overall": "overall", "week": "weekly", "day": "daily", "days28": "days28",
          "preenrollment_week": "preenrollment_weekly", "preenrollment_days28": "preenrollment_days28"}
# demo-custom (segments, exposures, a custom metric) is the slowest to analyse: its first week is enough
DATES_KEPT = {"demo-custom": 2}
PING_DAYS = 4
TIMEOUT_MS = 30_000


def _closing_dates(record: dict) -> list[dt.date]:
    """The dates a weekly, pre-enrollment or overall window closes (daily windows close on those too)."""
    start = dt.date.fromisoformat(record["startDate"])
    enrollment = (dt.date.fromisoformat(record["enrollmentEndDate"]) - start).days + 1
    end = dt.date.fromisoformat(record["endDate"]) if record.get("endDate") else None
    periods = (AnalysisPeriod.WEEK, AnalysisPeriod.OVERALL, AnalysisPeriod.PREENROLLMENT_WEEK)
    last = min(TODAY - dt.timedelta(days=1), end or TODAY)
    days = [start + dt.timedelta(days=n) for n in range((last - start).days + 1)]
    return [d for d in days if windows_closing_on(start, enrollment, end, end is not None and d >= end, d, periods)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("report_home")
    with demo_files(home, CLIENTS) as (_, experiments):
        with dg.instance_for_test() as instance:
            defs = build_definitions(home)
            for slug in SLUGS:
                record = next(e for e in experiments if e["slug"] == slug)
                dates = _closing_dates(record)[:DATES_KEPT.get(slug)]
                summary = run_experiment(instance, defs, slug, dates)
                assert summary.success, summary.errors
            warehouse = build_resources(home)["warehouse"]
            first, _, _ = write_demo_pings(home, warehouse, TODAY, days=PING_DAYS, pings_per_day=1_000)
            materialize_aggregates([first + dt.timedelta(days=n) for n in range(PING_DAYS)], warehouse,
                                   instance=instance, quiet=True, probe_files=registry_paths(home))
            yield home, experiments, warehouse


def _shot(target, name: str, **kwargs) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(SCREENSHOTS / name), **kwargs)


# ------------------------------------------------------------------------------------------------ reports


def _exported(home: Path, slug: str) -> dict[str, list[dict]]:
    found = {}
    for period, suffix in SUFFIX.items():
        path = home / "exports" / statistics_path(slug, suffix)
        if path.exists():
            found[period] = json.loads(path.read_text())
    return found


SHOWN_ROWS = """() => [...document.querySelectorAll('[role=tabpanel]:not([hidden]) .panel:not([hidden]) tr[data-branch]')]
  .map(tr => { const panel = tr.closest('.panel'); const metric = tr.closest('.metric');
    return {metric: metric.dataset.metric, statistic: panel.dataset.statistic, segment: panel.dataset.segment,
            basis: panel.dataset.basis, window: panel.querySelector('h4').textContent.match(/window (\\d+)/)[1],
            branch: tr.dataset.branch, parameter: tr.dataset.parameter, point: tr.dataset.point,
            lower: tr.dataset.lower, upper: tr.dataset.upper,
            value: tr.querySelector('td.value').innerText.replace(/\\s+/g, ' ').trim()}; })"""


def _check_values(page, rows: list[dict], period: str, segment: str, basis: str) -> int:
    """Every branch row shown: value and interval as exported (own estimate, no comparison)."""
    shown = page.evaluate(SHOWN_ROWS)
    checked = 0
    for s in shown:
        assert (s["segment"], s["basis"]) == (segment, basis), s
        match = [r for r in rows if r["metric"] == s["metric"] and r["statistic"] == s["statistic"]
                 and r["segment"] == segment and r["analysis_basis"] == basis and r["window_index"] == s["window"]
                 and r["branch"] == s["branch"] and r["comparison"] is None
                 and (r["parameter"] is None) == (s["parameter"] == "")
                 and (r["parameter"] is None or math.isclose(r["parameter"], float(s["parameter"])))]
        if not match:
            assert s["value"] == "no data" and s["point"] is None, (period, s)
            continue
        row = match[0]
        assert float(s["point"]) == row["point"], (period, s, row)
        if row["lower"] is not None:
            assert (float(s["lower"]), float(s["upper"])) == (row["lower"], row["upper"]), (period, s, row)
            assert s["value"] == f"{num(row['point'])} [{num(row['lower'])}, {num(row['upper'])}]", (s, row)
        checked += 1
    return checked


def _check_report(page, home: Path, slug: str, warehouse) -> None:
    requests_made: list[str] = []
    page.on("request", lambda r: requests_made.append(r.url))
    page.goto((home / "exports" / report_path(slug)).as_uri())
    exported = _exported(home, slug)
    record = json.loads(experimenter_file(home).read_text())
    record = next(r for r in record if r["slug"] == slug)
    assert page.locator("h1").inner_text().startswith(record["userFacingName"])  # the overview from Experimenter
    assert page.locator("#dates").inner_text().split("\n")[0].endswith(record["startDate"])
    tabs = page.locator("[role=tab]")
    assert [tabs.nth(i).get_attribute("data-period") for i in range(tabs.count())] == [
        p for p in PERIODS if p in exported]
    # enrolled clients per branch as in the enrollments table
    table = warehouse.table_ref(names.enrollments_table(slug))
    counts = warehouse.query(f"SELECT branch, COUNT(*) AS n FROM `{table}` GROUP BY branch")
    for branch, n in zip(counts["branch"], counts["n"]):
        cell = page.locator(f'#enrollment-counts td.clients[data-branch="{branch}"]')
        assert cell.get_attribute("data-clients") == str(n) and cell.inner_text() == f"{n:,}"
    assert page.locator("#srm").get_attribute("data-passed") == "true"
    # the header's analysis date is the latest window any tab shows
    closed = [d for d in page.locator(".closed-on").all_inner_texts()]
    assert page.locator("#analysis-date").inner_text() == max(closed)
    checked = 0
    for period in exported:
        page.locator(f'[role=tab][data-period="{period}"]').click()
        assert page.locator(f"#period-{period}").is_visible()
        assert page.locator("[role=tabpanel]:not([hidden])").count() == 1
        checked += _check_values(page, exported[period], period, "all", "enrollments")
    assert checked >= 10, f"{slug}: only {checked} values checked"
    # page-wide selectors: the exposures basis, then another segment (when the config has one)
    page.locator('[role=tab][data-period="week"]').click()
    bases = page.locator("#basis option").all_inner_texts()
    if len(bases) > 1:
        page.select_option("#basis", "exposures")
        assert _check_values(page, exported["week"], "week", "all", "exposures") > 0
        page.select_option("#basis", "enrollments")
    segments = [o.get_attribute("value") for o in page.locator("#segment option").all()]
    for segment in segments[1:2]:
        page.select_option("#segment", segment)
        _check_values(page, exported["week"], "week", segment, "enrollments")
        page.select_option("#segment", "all")
    assert all(u.startswith("file://") for u in requests_made), f"the report fetched {requests_made}"


def _check_planted_effect(page) -> None:
    """demo-complete: the planted +10% active hours sits above zero in the weekly plot, on the better side."""
    assert expected_uplift("demo-complete", "treatment", "active_hours") > 0
    page.locator('[role=tab][data-period="week"]').click()
    ci = page.locator('#period-week g.ci[data-metric="active_hours"][data-window="1"][data-branch="treatment"]'
                      '[data-segment="all"][data-basis="enrollments"]').first
    assert float(ci.get_attribute("data-lower")) > 0
    # the linear model's method: covariate-adjusted by the pre-enrollment week (demo defaults)
    notes = page.locator('#period-week .metric[data-metric="active_hours"] .panel:not([hidden]) .notes').first
    assert "Covariate-adjusted for active_hours in the pre-enrollment week" in notes.inner_text()
    drawn = ci.evaluate("""g => { const svg = g.ownerSVGElement;
        const zero = +svg.querySelector('line.zero').getAttribute('y1');
        return {zero, point: +g.querySelector('circle').getAttribute('cy'), better: !!svg.querySelector('rect.better')}; }""")
    assert drawn["better"] and drawn["point"] < drawn["zero"], drawn


def _report_screenshots(page, home: Path) -> None:
    page.goto((home / "exports" / report_path("demo-complete")).as_uri())
    _shot(page, "report.png")
    page.locator('[role=tab][data-period="week"]').click()
    metric = page.locator('#period-week .metric[data-metric="active_hours"]')
    metric.scroll_into_view_if_needed()
    _shot(metric, "report-results.png")
    page.goto((home / "exports" / report_path("demo-live")).as_uri())
    page.locator("#summary").scroll_into_view_if_needed()
    _shot(page.locator("#summary"), "report-summary.png")


# ---------------------------------------------------------------------------------------------- dashboard


def _api(url: str, path: str, **params) -> dict:
    reply = requests.get(f"{url}/{path}" + (f"?{urlencode(params)}" if params else ""), timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _expected(url: str, page, label: str = "") -> dict:
    """What the page should show, from the same API call it made (its choices are in the URL hash)."""
    choice = dict(p.split("=", 1) for p in page.evaluate("location.hash.slice(1)").split("&") if p)
    from urllib.parse import unquote_plus
    choice = {k: unquote_plus(v) for k, v in choice.items()}
    dates = [r["date"] for r in _api(url, f"aggregates_by/{choice['family']}/channels/{choice['channel']}/dates/")
             if r["version"] == choice["version"] and choice["first"] <= r["date"] <= choice["last"]]
    filters = {k[2:]: v for k, v in choice.items() if k.startswith("f.")}
    reply = _api(url, f"aggregates_by/{choice['family']}/channels/{choice['channel']}/", version=choice["version"],
                 dates=",".join(sorted(dates)), metric=choice["metric"], **filters)
    rows = [d for d in reply["data"] if d["label"] == label]
    histogram = [sum(d["histogram"][i] for d in rows) for i in range(len(reply["buckets"]))]
    samples = sum(histogram)
    return {"pings": sum(d["count"] for d in rows), "samples": samples,
            "mean": sum(d["sum"] for d in rows) / samples, "shares": [h / samples for h in histogram],
            "dates": sorted({d["date"] for d in rows}), "labels": {d["label"] for d in reply["data"]}}


def _shown(page) -> dict:
    return page.evaluate("""() => ({
        pings: +document.getElementById('stat-pings').dataset.value,
        samples: +document.getElementById('stat-samples').dataset.value,
        mean: +document.getElementById('stat-mean').dataset.value,
        shares: [...document.querySelectorAll('#distribution rect.bar')].map(r => +r.dataset.share),
        dates: [...document.querySelectorAll('#per-date tbody tr')].map(r => r.dataset.date)})""")


def _same(shown: dict, expected: dict) -> None:
    assert shown["pings"] == expected["pings"] and shown["samples"] == expected["samples"]
    assert shown["mean"] == pytest.approx(expected["mean"], rel=1e-9)
    assert shown["shares"] == pytest.approx(expected["shares"], rel=1e-9, abs=1e-12)
    assert shown["dates"] == expected["dates"]


def _wait_drawn(page, metric: str) -> None:
    page.wait_for_function("m => !document.getElementById('view').hidden && "
                           "document.getElementById('title').textContent.startsWith(m)", arg=metric)


def _check_dashboard(page, url: str) -> None:
    requests_made: list[str] = []
    page.on("request", lambda r: requests_made.append(r.url))
    page.goto(f"{url}/")
    _wait_drawn(page, "GC_MS")
    assert page.locator("#metric").input_value() == "GC_MS"
    _same(_shown(page), _expected(url, page))
    assert page.locator("#per-date tbody tr").count() >= 2  # the evolution over the chosen dates
    assert page.locator("#evolution polyline").count() == 3
    # a filter, read from /filters/: one operating system
    os_values = [o.get_attribute("value") for o in page.locator("#filter-os option").all()]
    assert os_values[0] == "" and len(os_values) > 2
    page.select_option("#filter-os", os_values[1])
    page.wait_for_function("v => location.hash.includes('f.os=' + encodeURIComponent(v).replace(/%20/g, '+'))",
                           arg=os_values[1])
    _wait_drawn(page, "GC_MS")
    _same(_shown(page), _expected(url, page))
    _shot(page, "dashboard.png", full_page=True)
    page.select_option("#filter-os", "")
    # by build id, a keyed histogram: one label at a time
    page.select_option("#family", "build_id")
    page.wait_for_function("() => location.hash.includes('family=build_id')")
    keyed = "IPC_MESSAGE_SIZE"
    page.fill("#metric-search", "IPC_")
    page.select_option("#metric", keyed)
    _wait_drawn(page, keyed)
    labels = [o.get_attribute("value") for o in page.locator("#label option").all()]
    expected = _expected(url, page, labels[-1])
    assert page.locator("#label").is_visible() and set(labels) == expected["labels"] and len(labels) > 1
    page.select_option("#label", labels[-1])
    _wait_drawn(page, f"{keyed} [{labels[-1]}]")
    _same(_shown(page), expected)
    _shot(page, "dashboard-keyed.png", full_page=True)
    assert all(u.startswith(url) for u in requests_made), f"the dashboard fetched {set(requests_made)}"


def test_reports_and_dashboard_in_chromium(demo_home, tmp_path):
    from playwright.sync_api import sync_playwright

    home, experiments, warehouse = demo_home
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does it)"
    with running_server(warehouse, Rules(allow_all_release_metrics=True)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = None
        try:
            for slug in SLUGS:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(TIMEOUT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                _check_report(page, home, slug, warehouse)
                if slug == "demo-complete":
                    _check_planted_effect(page)
                assert not errors, f"{slug}: script errors {errors}"
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            _report_screenshots(page, home)
            page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            _check_dashboard(page, url)
        except Exception:
            if page is not None:
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"page at failure: {page.url} (screenshot {tmp_path / 'failure.png'})")
            raise
        finally:
            browser.close()
