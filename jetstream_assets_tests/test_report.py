"""The results report (reports/<slug>.html): what it shows, drawn from which numbers, and that configs
cannot inject markup into it. Parsed with the standard library's HTML parser; the browser test renders it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from jetstream_assets.exports.report import ReportError, build_report, nice_ticks, pct, verdict

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


METADATA = {
    "metrics": {
        "active_hours": {"friendly_name": "Active hours", "description": "Hours of use.", "bigger_is_better": True,
                         "analysis_bases": ["enrollments"]},
        "crashes": {"friendly_name": "Crashes", "description": "Crash count.", "bigger_is_better": False,
                    "analysis_bases": ["enrollments"]},
    },
    "outcomes": {"stability": {"slug": "stability", "friendly_name": "Stability", "metrics": ["crashes"]}},
}


def _weekly():
    rows = []
    for w, (p, lo, hi) in enumerate([(0.05, 0.01, 0.09), (0.08, 0.03, 0.13)], start=1):
        rows += [
            _row("active_hours", "mean", "control", point=2.0, lower=1.9, upper=2.1, window=str(w)),
            _row("active_hours", "mean", "treatment", point=2.1, lower=2.0, upper=2.2, window=str(w)),
            _uplift("active_hours", "treatment", p, lo, hi, window=str(w)),
            # the reverse comparison is in the export too; the report shows uplift against the reference only
            _uplift("active_hours", "control", -p, -hi, -lo, window=str(w), to="treatment"),
            _uplift("crashes", "treatment", -0.2, -0.3, -0.1, window=str(w)),
            _uplift("active_hours", "treatment", 0.5, 0.4, 0.6, window=str(w), segment="us"),
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
    )
    args.update(overrides)
    return build_report(SLUG, **args)


class _Collect(HTMLParser):
    """Every element with its attributes, and whether the document has anything that loads or runs."""

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


def test_one_ci_per_branch_and_window_against_the_reference_with_the_exported_numbers():
    doc = _parse(_report())
    cis = doc.find("g", **{"data-metric": "active_hours", "data-segment": "all"})
    assert [(c["data-branch"], c["data-window"]) for c in cis] == [("treatment", "1"), ("treatment", "2")]
    assert all(c["data-reference"] == "control" and c["data-period"] == "week" for c in cis)
    assert [float(c["data-lower"]) for c in cis] == [0.01, 0.03]
    assert [float(c["data-upper"]) for c in cis] == [0.09, 0.13]
    # the segment gets its own plot, tucked under the population's
    assert len(doc.find("g", **{"data-metric": "active_hours", "data-segment": "us"})) == 2
    # one SVG plot per (metric, statistic, segment, basis); identity counts are not a metric to plot
    assert len([e for e in doc.elements if e[0] == "svg"]) == 3
    assert not doc.find("div", **{"data-metric": "identity"})


def _plot_of(html: str, metric: str) -> str:
    block = re.search(rf'<div class="metric" data-metric="{metric}">(.*?)</figure>', html, re.S).group(1)
    return block


def test_the_better_side_of_zero_is_shaded_as_bigger_is_better_says():
    html = _report()
    for metric, better_above in (("active_hours", True), ("crashes", False)):
        svg = _plot_of(html, metric)
        zero = float(re.search(r'class="zero"[^>]*y1="([\d.]+)"', svg).group(1))
        rect = re.search(r'<rect class="better" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"', svg)
        top, height = float(rect.group(1)), float(rect.group(2))
        if better_above:
            assert top + height == pytest.approx(zero, abs=0.2) and top < zero
        else:
            assert top == pytest.approx(zero, abs=0.2)
    assert "&#8593; bigger is better" in _plot_of(html, "active_hours").split("<svg")[0]
    assert "&#8595; smaller is better" in _plot_of(html, "crashes").split("<svg")[0]
    # a crash decrease whose whole interval is below zero reads as better; the class colours it
    assert 'class="ci good"' in _plot_of(html, "crashes")
    # a metric without metadata has no side to shade
    html = _report(metadata=None)
    assert 'class="better"' not in _plot_of(html, "active_hours")


def test_points_sit_where_their_values_are():
    svg = _plot_of(_report(), "active_hours")
    zero = float(re.search(r'class="zero"[^>]*y1="([\d.]+)"', svg).group(1))
    circles = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert len(circles) == 2 and all(y < zero for y in circles)  # positive uplifts are above zero
    assert circles[1] < circles[0]  # +8% is higher than +5%


def test_enrollment_counts_and_the_sample_ratio_check():
    doc = _parse(_report())
    cells = {c["data-branch"]: c["data-clients"] for c in doc.find("td", **{"class": "n clients"})}
    assert cells == {"control": "1000", "treatment": "1010"}
    srm = doc.find("div", id="srm")[0]
    assert srm["data-passed"] == "true" and float(srm["data-p-value"]) > 0.001
    mismatch = _parse(_report(enrollments={"control": 1000, "treatment": 1300}))
    assert mismatch.find("div", id="srm")[0]["data-passed"] == "false"
    assert "Sample ratio check failed" in "".join(mismatch.text)
    stray = _parse(_report(enrollments={"control": 1000, "treatment": 1000, "renamed": 5}))
    assert stray.find("div", id="srm")[0]["data-passed"] == "false"
    assert "renamed" in {c["data-branch"] for c in stray.find("td", **{"class": "n clients"})}
    broken = _parse(_report(ratios={"control": 1, "treatment": -1}))
    assert broken.find("div", id="srm")[0]["data-passed"] == "unknown"
    assert "ratio -1" in "".join(broken.text)


def test_metrics_left_without_results_are_listed_with_the_logged_reason():
    errors = [
        {"timestamp": "2026-01-02T00:00:00+00:00", "metric": "search_count", "analysis_period": "week_2",
         "log_level": "ERROR", "message": "Metric search_count has an SQL error and was left out: no column x"},
        {"timestamp": "2026-01-02T00:00:00+00:00", "metric": "search_count", "analysis_period": "day_3",
         "log_level": "ERROR", "message": "a daily problem"},
    ]
    rows = _weekly() + [_uplift("search_count", "treatment", 0.0, -0.1, 0.1, window="1")]
    expected = {"week": [("active_hours", "mean"), ("search_count", "mean"), ("crashes", "mean")]}
    doc = _parse(_report(statistics={"week": rows}, errors=errors, expected=expected))
    table = re.search(r'<table id="missing">.*?</table>', _report(statistics={"week": rows}, errors=errors,
                                                                    expected=expected), re.S).group(0)
    assert doc.find("td", **{"data-metric": "search_count"})
    assert not doc.find("td", **{"data-metric": "active_hours"}) and not doc.find("td", **{"data-metric": "crashes"})
    assert "<td>2</td>" in table  # the window without results
    assert "no column x" in table and "a daily problem" not in table  # only the week's errors explain it
    # every error is still listed in the log section
    assert "a daily problem" in "".join(doc.text)
    assert "Every configured metric" in _report(expected={"week": [("active_hours", "mean")]})


def test_configured_values_are_escaped_everywhere():
    evil = '<script>alert("x")</script>'
    metadata = {"metrics": {"active_hours": {"friendly_name": f"Hours {evil}", "bigger_is_better": True,
                                              "description": '"><img src=x onerror=alert(1)>'}}}
    rows = [_uplift("active_hours", f"treat{evil}", 0.1, 0.05, 0.15, segment=f"seg{evil}")]
    html = build_report(
        f"exp{evil}", statistics={"week": rows}, metadata=metadata, enrollments={f"treat{evil}": 5, "control": 5},
        ratios={"control": 1, f"treat{evil}": 1}, reference_branch="control",
        errors=[{"timestamp": "2026-01-01T00:00:00", "message": evil, "metric": evil}],
    )
    doc = _parse(html)
    assert not doc.find("script") and not doc.find("img")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # the escaped values still arrive intact as text and attributes
    assert any(a.get("data-branch") == f"treat{evil}" for _, a in doc.elements)
    assert f"Hours {evil}" in "".join(doc.text)


def test_self_contained_no_script_no_network():
    html = _report()
    doc = _parse(html)
    assert not doc.find("script") and not doc.find("link") and not doc.find("img") and not doc.find("iframe")
    assert all("src" not in attrs for _, attrs in doc.elements)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, never fetched
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html


def test_deciles_are_drawn_over_the_parameter_of_the_latest_window():
    rows = [
        _uplift("uri_count", "treatment", 0.01 * d, -0.1, 0.2, window=w, statistic="deciles", parameter=d / 10)
        for w in ("1", "2") for d in range(1, 10)
    ]
    html = _report(statistics={"week": rows})
    svg = _plot_of(html, "uri_count")
    assert "deciles (parameter), window 2" in svg
    assert len(re.findall(r'data-window="2"', svg)) == 9 and 'data-window="1"' not in svg.split("</svg>")[0]


def test_periods_in_order_and_the_summary_uses_the_most_complete_one():
    overall = [_uplift("active_hours", "treatment", 0.07, 0.02, 0.12, window="1", statistic="mean_lm"),
               _uplift("active_hours", "treatment", 0.06, 0.01, 0.11, window="1", statistic="mean")]
    pre = [_uplift("active_hours", "treatment", 0.0, -0.05, 0.05)]
    html = _report(statistics={"preenrollment_week": pre, "week": _weekly(), "overall": overall})
    order = [m.group(1) for m in re.finditer(r'<details class="period" id="period-(\w+)"', html)]
    assert order == ["overall", "week", "preenrollment_week"]
    summary = re.search(r'<table id="summary-table">.*?</table>', html, re.S).group(0)
    assert "mean_lm" in summary and "overall" in summary and "+7.0%" in summary
    assert "Crashes" in summary and "weekly 2" in summary  # crashes only has weekly results


def test_bad_input_names_the_experiment_and_what_to_pass():
    with pytest.raises(ReportError, match=r"my-exp.*'weekly'.*periods, not table suffixes"):
        _report(statistics={"weekly": _weekly()})
    with pytest.raises(ReportError, match=r"my-exp.*period 'week'.*row 0 lacks \['point'"):
        _report(statistics={"week": [{"metric": "a", "statistic": "mean", "branch": "b", "comparison": None}]})
    with pytest.raises(ReportError, match=r"my-exp.*row 0: window_index 'w1'"):
        _report(statistics={"week": [_uplift("a", "treatment", 0, 0, 0, window="w1")]})
    with pytest.raises(ReportError, match=r"my-exp.*row 1: window_index 'x'"):
        _report(statistics={"week": [_row("a", "mean", "control"), _row("a", "mean", "treatment", window="x")]})
    with pytest.raises(ReportError, match="my-exp.*errors"):
        _report(errors=["boom"])


def test_number_helpers():
    assert pct(0.1234) == "+12.3%" and pct(-0.05) == "-5.0%" and pct(None) == "n/a"
    ticks = nice_ticks(-0.031, 0.172)
    assert ticks[0] <= -0.031 and ticks[-1] >= 0.172 and 0.0 in ticks and 4 <= len(ticks) <= 8
    assert verdict(0.01, 0.2, True) == ("good", "increase, better")
    assert verdict(0.01, 0.2, False) == ("bad", "increase, worse")
    assert verdict(-0.01, 0.2, True)[0] == "neutral"
