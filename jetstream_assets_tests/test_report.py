"""The results report (reports/<slug>.html): what it shows, drawn from which numbers, every input that can
happen, and that configs cannot inject markup into it. Parsed with the standard library's HTML parser; the
browser test (test_report_browser.py) renders the demo's reports."""

from __future__ import annotations

import datetime as dt
import logging
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from jetstream_assets.exports.report import (
    ReportError,
    Timeline,
    build_report,
    nice_ticks,
    pct,
    reading,
    with_log_fields,
)
from jetstream_assets.exports.report.format import num
from jetstream_assets.exports.store import LocalExportStore, report_path

SLUG = "my-exp"


def _row(metric, statistic, branch, comparison=None, to=None, point=0.0, lower=None, upper=None,
         window="1", segment="all", basis="enrollments", parameter=None):
    return {
        "metric": metric, "statistic": statistic, "parameter": parameter, "branch": branch,
        "comparison": comparison, "comparison_to_branch": to, "ci_width": 0.95 if lower is not None else None,
        "point": point, "lower": lower, "upper": upper, "segment": segment, "analysis_basis": basis,
        "window_index": window,
    }


def _uplift(metric, branch, point, lower, upper, window="1", statistic="mean", to="control", **kw):
    return _row(metric, statistic, branch, "relative_uplift", to, point, lower, upper, window, **kw)


def _difference(metric, branch, point, lower, upper, window="1", statistic="mean", to="control", **kw):
    return _row(metric, statistic, branch, "difference", to, point, lower, upper, window, **kw)


METADATA = {
    "metrics": {
        "active_hours": {"friendly_name": "Active hours", "description": "Hours of use.", "bigger_is_better": True,
                         "analysis_bases": ["enrollments"]},
        "crashes": {"friendly_name": "Crashes", "description": "Crash count.", "bigger_is_better": False,
                    "analysis_bases": ["enrollments"]},
    },
    "outcomes": {"stability": {"slug": "stability", "friendly_name": "Stability", "description": "Crashes and hangs.",
                               "metrics": ["crashes"]}},
}
RECORD = {
    "slug": SLUG, "userFacingName": "My experiment", "userFacingDescription": "Does the new button help?",
    "startDate": "2026-10-01", "enrollmentEndDate": "2026-10-07", "endDate": None, "isEnrollmentPaused": True,
    "branches": [{"slug": "control", "ratio": 1, "description": "Old button"},
                 {"slug": "treatment", "ratio": 1, "features": [{"featureId": "new-button"}]}],
}


def _weekly():
    rows = []
    for w, (p, lo, hi) in enumerate([(0.05, 0.01, 0.09), (0.08, 0.03, 0.13)], start=1):
        rows += [
            _row("active_hours", "mean", "control", point=2.0, lower=1.9, upper=2.1, window=str(w)),
            _row("active_hours", "mean", "treatment", point=2.16, lower=2.05, upper=2.27, window=str(w)),
            _difference("active_hours", "treatment", 0.16, 0.06, 0.26, window=str(w)),
            _uplift("active_hours", "treatment", p, lo, hi, window=str(w)),
            # the reverse comparison is in the export too; the report shows differences against the reference
            _uplift("active_hours", "control", -p, -hi, -lo, window=str(w), to="treatment"),
            _uplift("crashes", "treatment", -0.2, -0.3, -0.1, window=str(w)),
            _uplift("active_hours", "treatment", 0.5, 0.4, 0.6, window=str(w), segment="us"),
            _uplift("active_hours", "treatment", 0.07, 0.02, 0.12, window=str(w), basis="exposures"),
            _row("identity", "count", "control", point=100.0, window=str(w)),
        ]
    return rows


def _report(**overrides):
    args = dict(
        statistics={"week": _weekly()},
        metadata=METADATA,
        enrollments={"control": 1000, "treatment": 1010},
        exposures={"control": 600, "treatment": 610},
        ratios={"control": 1, "treatment": 1},
        reference_branch="control",
        errors=[],
        experiment=RECORD,
    )
    args.update(overrides)
    return build_report(SLUG, **args)


class _Collect(HTMLParser):
    """Every element with its attributes, the text, and whether the document has anything that loads."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _parse(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    return parser


def _text(html: str) -> str:
    return " ".join("".join(_parse(html).text).split())


def _cells(row: str) -> list[str]:
    return [" ".join(" ".join(_parse(c).text).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def _panel(html: str, metric: str, period: str = "week", segment: str = "all", basis: str = "enrollments",
           statistic: str | None = None) -> str:
    tab = re.search(rf'<div role="tabpanel" class="period" id="period-{period}".*?(?=<div role="tabpanel"|</section>)',
                    html, re.S).group(0)
    block = re.search(rf'<div class="metric" data-metric="{metric}">.*?<p class="muted none"', tab, re.S).group(0)
    stat = rf'data-statistic="{statistic}"' if statistic else r'data-statistic="[^"]*"'
    return re.search(rf'<div class="panel" {stat} data-segment="{segment}" data-basis="{basis}".*?</svg>',
                     block, re.S).group(0)


# ------------------------------------------------------------------------------------------ content


def test_overview_from_experimenter_with_branches_outcomes_and_enrollment():
    html = _report()
    text = _text(html)
    assert "My experiment" in text and "Does the new button help?" in text
    assert "2026-10-01" in text and "2026-10-07" in text
    assert "Old button" in text and "new-button" in text  # branch descriptions (v6) or features (v8)
    assert "Stability: Crashes and hangs." in text
    doc = _parse(html)
    assert {c["data-branch"]: c["data-clients"] for c in doc.find("td", **{"class": "n clients"})} == {
        "control": "1000", "treatment": "1010"}
    assert doc.find("div", id="srm")[0]["data-passed"] == "true"
    assert doc.find("div", id="srm-exposed")[0]["data-passed"] == "true"
    mismatch = _parse(_report(enrollments={"control": 1000, "treatment": 1300}))
    assert mismatch.find("div", id="srm")[0]["data-passed"] == "false"
    broken = _parse(_report(ratios={"control": 1, "treatment": -1}))
    assert broken.find("div", id="srm")[0]["data-passed"] == "unknown"


def test_each_branch_absolute_value_and_differences_with_intervals_and_a_reading():
    panel = _panel(_report(), "active_hours")
    rows = dict(re.findall(r'<tr data-branch="(\w+)"(.*?)</tr>', panel, re.S))
    assert 'data-point="2.0" data-lower="1.9" data-upper="2.1"' in rows["control"]
    assert "Reference branch" in rows["control"]
    # the latest window (2): value, absolute difference, relative difference, each with its interval
    assert _cells(rows["treatment"]) == ["treatment", "2.16 [2.05, 2.27]", "+0.16 [+0.06, +0.26]",
                                         "+8.0% [+3.0%, +13.0%]", "Significantly better (up)"]
    # the plot has one interval per window against the reference, with the exported numbers
    cis = re.findall(r'<g class="ci (\w+)" data-metric="active_hours"[^>]*data-window="(\d)"[^>]*'
                     r'data-lower="([\d.e-]+)" data-upper="([\d.e-]+)"', panel)
    assert [(w, float(lo), float(hi)) for _, w, lo, hi in cis] == [("1", 0.01, 0.09), ("2", 0.03, 0.13)]


def test_grouped_by_outcome_with_friendly_names_and_labels_not_internal_names():
    html = _report()
    results = html[html.index('<section id="results">'):html.index('<section id="missing-results">')]
    groups = re.findall(r'<div class="group"><h3>([^<]+)</h3>', results)
    assert groups == ["Stability", "Other metrics"]
    headings = set(re.findall(r"<h4>([^<]+) <span", results))
    assert headings == {"Mean (bootstrap)"}
    lm = [_uplift("active_hours", "treatment", 0.1, 0.0, 0.2, statistic=s) for s in ("mean_lm", "binomial")]
    text = _text(_report(statistics={"overall": lm}).split('<section id="results">')[1].split("<script>")[0])
    assert "Mean (linear model)" in text and "Share of clients" in text and "All enrolled clients" in text
    assert "mean_lm" not in text and "binomial" not in text and "enrollments" not in text


def test_tabs_in_order_and_page_wide_segment_and_basis_selectors():
    overall = [_uplift("active_hours", "treatment", 0.07, 0.02, 0.12, statistic="mean_lm")]
    pre = [_uplift("active_hours", "treatment", 0.0, -0.05, 0.05)]
    day = [_uplift("active_hours", "treatment", 0.01, -0.05, 0.05, window=str(w)) for w in range(1, 4)]
    html = _report(statistics={"preenrollment_week": pre, "week": _weekly(), "overall": overall, "day": day})
    assert re.findall(r'role="tab" id="tab-(\w+)"', html) == ["overall", "week", "day", "preenrollment_week"]
    panels = re.findall(r'role="tabpanel" class="period" id="period-(\w+)"[^>]*?( hidden)?>', html)
    assert panels == [("overall", ""), ("week", " hidden"), ("day", " hidden"), ("preenrollment_week", " hidden")]
    assert re.findall(r'<option value="(\w+)">', html.split('id="segment"')[1].split("</select>")[0]) == ["all", "us"]
    assert re.findall(r'<option value="(\w+)">', html.split('id="basis"')[1].split("</select>")[0]) == [
        "enrollments", "exposures"]
    # only the selected segment and basis are shown at first; the others wait for the selectors
    shown = re.findall(r'<div class="panel" data-statistic="\w+" data-segment="(\w+)" data-basis="(\w+)"( hidden)?',
                       html)
    assert all((s, b) == ("all", "enrollments") for s, b, hidden in shown if not hidden)
    assert any(hidden for s, b, hidden in shown if s == "us")
    summary = re.search(r'<table id="summary-table">.*?</table>', html, re.S).group(0)
    assert "Mean (linear model)" in summary and ">overall<" in summary and "+7.0%" in summary
    assert "weekly 2" in summary and "significant in 2 of 2 weekly windows" in summary  # crashes: weekly only


def test_a_null_effect_reads_zero_not_minus_zero():
    assert pct(-0.0) == "0.0%" and pct(-0.00001) == "0.0%" and pct(0.00001) == "0.0%"
    assert pct(0.1234) == "+12.3%" and pct(-0.05) == "-5.0%" and pct(None) == "n/a"
    assert num(-0.0) == "0" and num(-1e-20, signed=True) == "-1e-20" and num(0.0, signed=True) == "0"
    rows = [_uplift("active_hours", "treatment", -0.0, -0.00001, 0.00002)]
    panel = _panel(_report(statistics={"week": rows}), "active_hours")
    assert _cells(re.search(r'<tr data-branch="treatment".*?</tr>', panel, re.S).group(0))[3] == "0.0% [0.0%, 0.0%]"
    assert "-0.0%" not in _text(panel) and "+0.0%" not in _text(panel)


def test_method_notes_statistic_pre_treatments_and_covariate_fallback():
    rows = [_uplift("active_hours", "treatment", 0.05, 0.01, 0.09, window=str(w), statistic="mean_lm")
            for w in (1, 2)]
    methods = {"week": [{"metric": "active_hours", "output": "mean_lm", "statistic": "linear_model_mean",
                         "pre_treatments": ["remove_nulls", "censor_highest_values"],
                         "covariate": {"metric": "active_hours", "period": "preenrollment_week"}}]}
    # the statistics step logs the fallback per window; the report reads the window from the logs
    errors = [{"timestamp": "2026-10-20T00:00:00+00:00", "log_level": "WARNING", "metric": "active_hours",
               "statistic": "linear_model_mean", "analysis_basis": "enrollments", "analysis_period": "week_2",
               "message": "Covariate table x is missing; active_hours falls back to unadjusted inferences."}]
    html = _report(statistics={"week": rows}, methods=methods, errors=errors)
    text = _text(_panel(html, "active_hours"))
    assert "Statistic: Mean (linear model) (linear_model_mean)." in text
    assert "Pre-treatments: missing values dropped, highest values capped." in text
    assert "Covariate-adjusted for active_hours in the pre-enrollment week, except window(s) 2" in text
    adjusted = re.findall(r'data-window="(\d)"[^>]*data-adjusted="(\w+)"', _panel(html, "active_hours"))
    assert adjusted == [("1", "true"), ("2", "false")]
    assert 'fill="#fff"' in _panel(html, "active_hours")  # the unadjusted point is hollow
    clean = _text(_panel(_report(statistics={"week": rows}, methods=methods), "active_hours"))
    assert "Covariate-adjusted for active_hours" in clean and "except" not in clean
    no_covariate = {"week": [{**methods["week"][0], "covariate": None, "pre_treatments": []}]}
    text = _text(_panel(_report(statistics={"week": rows}, methods=no_covariate), "active_hours"))
    assert "Not covariate-adjusted" in text and "Pre-treatments: none." in text


def test_error_table_fills_window_and_basis_from_the_logs():
    errors = [{"timestamp": "2026-01-02T00:00:00+00:00", "metric": "search_count", "log_level": "ERROR",
               "analysis_basis": "exposures", "message": "no column x", "filename": "f", "func_name": "g"}]
    logs = [{"timestamp": dt.datetime(2026, 1, 2, 0, 0, 0, 123000), "metric": "search_count",
             "message": "no column x", "analysis_period": "week_2"}]
    enriched = with_log_fields(errors, logs)
    assert enriched[0]["analysis_period"] == "week_2"
    table = re.search(r'<table id="errors-table">.*?</table>', _report(errors=enriched), re.S).group(0)
    assert '<td class="window">Weekly 2</td>' in table and '<td class="basis">Exposed clients only</td>' in table


def test_metrics_left_without_results_are_listed_with_the_logged_reason():
    errors = [
        {"timestamp": "2026-01-02T00:00:00+00:00", "metric": "search_count", "analysis_period": "week_2",
         "log_level": "ERROR", "message": "Metric search_count has an SQL error and was left out: no column x"},
        {"timestamp": "2026-01-02T00:00:00+00:00", "metric": "search_count", "analysis_period": "day_3",
         "log_level": "ERROR", "message": "a daily problem"},
    ]
    rows = _weekly() + [_uplift("search_count", "treatment", 0.0, -0.1, 0.1, window="1")]
    expected = {"week": [("active_hours", "mean"), ("search_count", "mean"), ("crashes", "mean")]}
    html = _report(statistics={"week": rows}, errors=errors, expected=expected)
    table = re.search(r'<table id="missing">.*?</table>', html, re.S).group(0)
    assert 'data-metric="search_count"' in table and 'data-metric="crashes"' not in table
    assert "<td>2</td>" in table  # the window without results
    assert "no column x" in table and "a daily problem" not in table  # only the week's errors explain it
    assert "a daily problem" in _text(html)  # every error is still in the log section
    assert 'id="missing-none"' in _report(expected={"week": [("active_hours", "mean")]})


def test_header_analysis_date_is_the_latest_window_shown_not_the_run_date():
    """A single-date rerun of an early date must not relabel a page that shows later windows."""
    timeline = Timeline(dt.date(2026, 10, 1), 7, dt.date(2026, 11, 27))
    overall = [_uplift("active_hours", "treatment", 0.07, 0.02, 0.12)]
    html = _report(statistics={"week": _weekly(), "overall": overall}, timeline=timeline,
                   analysis_date=dt.date(2026, 10, 15))
    assert re.search(r'id="analysis-date">([^<]+)<', html).group(1) == "2026-11-27"  # the overall window
    assert "written by the analysis of 2026-10-15" in _text(html)
    assert re.findall(r'class="closed-on">([^<]+)<', html) == ["2026-11-27", "2026-10-21"]  # week 2: L + 13
    only_week = _report(timeline=timeline, analysis_date=dt.date(2026, 10, 21))
    assert re.search(r'id="analysis-date">([^<]+)<', only_week).group(1) == "2026-10-21"
    assert "written by the analysis" not in only_week


# -------------------------------------------------------------------------------- every input that can happen


def test_constant_metric_renders():
    """Every interval within 1e-15 of zero used to divide by zero in nice_ticks."""
    ticks = nice_ticks(-1e-16, 1.5e-16)
    assert len(ticks) >= 2 and ticks[0] < 0 < ticks[-1]
    rows = [_row("active_hours", "mean", b, point=1.0, lower=1.0, upper=1.0) for b in ("control", "treatment")]
    rows += [_uplift("active_hours", "treatment", 0.0, -1e-16, 1.5e-16), _difference("active_hours", "treatment",
                                                                                     0.0, 0.0, 0.0)]
    panel = _panel(_report(statistics={"week": rows}), "active_hours")
    assert _cells(re.search(r'<tr data-branch="treatment".*?</tr>', panel, re.S).group(0))[2:] == [
        "0 [0, 0]", "0.0% [0.0%, 0.0%]", "Not significant"]


def test_empty_branch_renders():
    """A configured branch nobody enrolled in: no rows of its own, zero clients."""
    html = _report(enrollments={"control": 1000, "treatment": 1010, "empty": 0},
                   ratios={"control": 1, "treatment": 1, "empty": 1})
    rows = dict(re.findall(r'<tr data-branch="(\w+)"(.*?)</tr>', _panel(html, "active_hours"), re.S))
    assert "No results for this branch" in _text(rows["empty"]) and "no data" in _text(rows["empty"])
    assert _parse(html).find("td", **{"class": "n clients", "data-branch": "empty"})[0]["data-clients"] == "0"
    assert _parse(html).find("div", id="srm")[0]["data-passed"] == "false"


def test_all_metrics_failed_renders():
    errors = [{"timestamp": "2026-01-02T00:00:00+00:00", "metric": m, "analysis_period": "week_1",
               "log_level": "ERROR", "message": f"{m} failed"} for m in ("active_hours", "crashes")]
    identity_only = [_row("identity", "count", b, point=100.0) for b in ("control", "treatment")]
    html = _report(statistics={"week": identity_only}, errors=errors,
                   expected={"week": [("active_hours", "mean"), ("crashes", "mean")]})
    assert 'id="summary-none"' in html and "No metric has results in this period" in _text(html)
    table = re.search(r'<table id="missing">.*?</table>', html, re.S).group(0)
    assert "active_hours failed" in table and "crashes failed" in table
    assert 'id="results-none"' in _report(statistics={})


def test_one_window_only_renders():
    rows = [r for r in _weekly() if r["window_index"] == "1"]
    html = _report(statistics={"week": rows})
    assert "1 window so far" in _text(html)
    assert len(re.findall(r'<g class="ci', _panel(html, "active_hours"))) == 1


def test_three_or_more_branches_render():
    rows = _weekly() + [
        _row("active_hours", "mean", "treatment-b", point=1.9, lower=1.8, upper=2.0, window="2"),
        _uplift("active_hours", "treatment-b", -0.05, -0.09, -0.01, window="2"),
        _row("active_hours", "mean", "treatment-c", point=2.0, lower=1.9, upper=2.1, window="2"),
        _uplift("active_hours", "treatment-c", 0.0, -0.04, 0.04, window="2"),
    ]
    branches = {"control": 1, "treatment": 1, "treatment-b": 1, "treatment-c": 1}
    html = _report(statistics={"week": rows}, ratios=branches, enrollments=dict.fromkeys(branches, 1000),
                   exposures=None)
    panel = _panel(html, "active_hours")
    assert re.findall(r'<tr data-branch="([\w-]+)"', panel) == ["control", "treatment", "treatment-b", "treatment-c"]
    assert "Significantly worse (down)" in _text(panel) and "Not significant" in _text(panel)
    colors = set(re.findall(r'data-branch="treatment[-\w]*"[^>]*>\s*<title>[^<]*</title>\s*<line[^>]*stroke="(#\w+)"',
                            panel))
    assert len(colors) == 3  # one colour per branch compared


def test_no_exposures_renders():
    rows = [r for r in _weekly() if r["analysis_basis"] == "enrollments"]
    html = _report(statistics={"week": rows}, exposures={"control": 0, "treatment": 0})
    assert 'id="no-exposures"' in html and 'id="srm-exposed"' not in html
    assert re.findall(r'<option value="(\w+)">', html.split('id="basis"')[1].split("</select>")[0]) == ["enrollments"]
    assert 'id="no-exposures"' in _report(exposures=None, statistics={"week": rows})


def test_no_experimenter_record_and_no_metadata_render():
    html = _report(experiment=None, metadata=None)
    assert "no Experimenter record" in _text(html) and "Active Hours" in _text(html)
    assert 'class="better"' not in html  # no metadata: no side of zero to shade


# ------------------------------------------------------------------------------------------ safety, failures


def test_configured_values_are_escaped_everywhere():
    evil = '<script>alert("x")</script>'
    metadata = {"metrics": {"active_hours": {"friendly_name": f"Hours {evil}", "bigger_is_better": True,
                                              "description": '"><img src=x onerror=alert(1)>'}},
                "outcomes": {"o": {"friendly_name": evil, "metrics": ["active_hours"]}}}
    rows = [_uplift("active_hours", f"treat{evil}", 0.1, 0.05, 0.15, segment=f"seg{evil}")]
    html = build_report(
        f"exp{evil}", statistics={"week": rows}, metadata=metadata, enrollments={f"treat{evil}": 5, "control": 5},
        ratios={"control": 1, f"treat{evil}": 1}, reference_branch="control",
        errors=[{"timestamp": "2026-01-01T00:00:00", "message": evil, "metric": evil}],
        experiment={"userFacingName": evil, "branches": [{"slug": "control", "description": evil}]},
    )
    doc = _parse(html)
    assert len(doc.find("script")) == 1 and not doc.find("img")  # only the page's own script
    assert html.count("<script>") == 1 and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert any(a.get("data-branch") == f"treat{evil}" for _, a in doc.elements)
    assert f"Hours {evil}" in "".join(doc.text)


def test_the_template_runs_in_an_immutable_sandbox_with_autoescaping():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from jetstream_assets.exports.report.render import environment

    env = environment()
    assert isinstance(env, ImmutableSandboxedEnvironment) and env.autoescape is True


def test_self_contained_no_network():
    html = _report()
    doc = _parse(html)
    assert not doc.find("link") and not doc.find("img") and not doc.find("iframe")
    assert all("src" not in attrs for _, attrs in doc.elements)
    assert not re.search(r"fetch\(|XMLHttpRequest|import\(", html)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    # and the browser is told so: nothing may be loaded, whatever the page held
    policy = doc.find("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    assert "default-src 'none'" in policy and "connect-src" not in policy


def test_deciles_are_shown_per_parameter_of_the_latest_window():
    rows = [
        _uplift("uri_count", "treatment", 0.01 * d, -0.1, 0.2, window=w, statistic="deciles", parameter=d / 10)
        for w in ("1", "2") for d in range(1, 10)
    ]
    panel = _panel(_report(statistics={"week": rows}), "uri_count")
    assert "Deciles, window 2" in panel
    assert len(re.findall(r'<g class="ci[^>]*data-window="2"', panel)) == 9 and 'data-window="1"' not in panel
    assert len(re.findall(r'<tr data-branch="treatment" data-parameter="0.\d"', panel)) == 9


def test_bad_input_names_the_experiment_and_what_to_pass():
    with pytest.raises(ReportError, match=r"my-exp.*'weekly'.*periods, not table suffixes"):
        _report(statistics={"weekly": _weekly()})
    with pytest.raises(ReportError, match=r"my-exp.*period 'week'.*row 0 lacks \['point'"):
        _report(statistics={"week": [{"metric": "a", "statistic": "mean", "branch": "b", "comparison": None}]})
    with pytest.raises(ReportError, match=r"my-exp.*row 0: window_index 'w1'"):
        _report(statistics={"week": [_uplift("a", "treatment", 0, 0, 0, window="w1")]})
    with pytest.raises(ReportError, match="my-exp.*errors"):
        _report(errors=["boom"])


def test_readings_in_words():
    assert reading(0.01, 0.2, True) == ("good", "Significantly better (up)")
    assert reading(0.01, 0.2, False) == ("bad", "Significantly worse (up)")
    assert reading(-0.2, -0.01, None) == ("neutral", "Significant decrease")
    assert reading(-0.01, 0.2, True) == ("neutral", "Not significant")
    ticks = nice_ticks(-0.031, 0.172)
    assert ticks[0] <= -0.031 and ticks[-1] >= 0.172 and 0.0 in ticks and 4 <= len(ticks) <= 8


def test_a_failed_build_replaces_the_old_report_and_is_logged(tmp_path, monkeypatch, caplog):
    """The old report must not stay in place as if it were current."""
    from jetstream_assets.assets import exports

    store = LocalExportStore(root=str(tmp_path))
    store.write_text(report_path(SLUG), "<html>results of last week</html>")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(exports, "write_report", broken)
    warehouse = SimpleNamespace(table_exists=lambda *a, **k: False)
    cell = SimpleNamespace(slug=SLUG, windows=[object()], analysis_date=dt.date(2026, 11, 20))
    with caplog.at_level(logging.ERROR, logger="jetstream_assets"):
        metadata = exports.export_statistics(cell, warehouse, store, metric_hub=object())
    assert "float division by zero" in metadata["report_error"]
    page = store.read_text(report_path(SLUG))
    assert "results of last week" not in page
    assert 'id="report-failed"' in page and "float division by zero" in page and "2026-11-20" in page
    assert any("Results report of my-exp not written" in r.getMessage() for r in caplog.records)
