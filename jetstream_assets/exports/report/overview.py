"""The report's overview and bookkeeping: the experiment as Experimenter describes it, enrolled and exposed
clients with the sample ratio check, the dates of the windows shown, the metrics without results and the
errors logged for the experiment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.checks.enrollments import sample_ratio_mismatch
from jetstream_assets.exports.report.format import PERIODS, count, label
from jetstream_assets.windows import PERIOD_DAYS, AnalysisWindow, closing_date

MAX_MESSAGE = 600


@dataclass(frozen=True)
class Timeline:
    """What dates the windows of an experiment close on: its start, enrollment period and end."""

    start_date: dt.date
    enrollment_period: int
    end_date: dt.date | None = None

    def closed_on(self, period: str, window: int) -> dt.date | None:
        """The analysis date on which `window` of `period` was computed."""
        if period == "overall":
            return self.end_date
        try:
            kind = AnalysisPeriod(period)
        except ValueError:
            return None
        days = PERIOD_DAYS.get(kind, 1)
        start, end = ((window - 1) * days, window * days - 1) if kind in PERIOD_DAYS else (-days, -1)
        return closing_date(AnalysisWindow(kind, window, start, end), self.start_date, self.enrollment_period)


@dataclass
class BranchInfo:
    slug: str
    description: str
    ratio: str
    color: str
    is_reference: bool
    enrolled: int | None
    share: str
    expected: str
    exposed: int | None


@dataclass
class Check:
    """A sample ratio check, shown as a verdict box."""

    what: str
    state: str  # pass, fail, na
    title: str
    text: str
    p_value: str = ""


@dataclass
class Overview:
    name: str
    description: str
    status: str
    dates: list[tuple[str, str]]
    branches: list[BranchInfo]
    outcomes: list[tuple[str, str]]
    checks: list[Check]
    total_enrolled: int
    total_exposed: int | None
    features: list[str] = field(default_factory=list)


def _text(value: Any, limit: int = 2000) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _check(what: str, clients: Mapping[str, int], ratios: Mapping[str, float | None]) -> Check:
    try:
        srm = sample_ratio_mismatch(dict(clients), dict(ratios))
    except ValueError as e:
        return Check(what, "na", f"Sample ratio of {what} clients: not tested.", str(e))
    state = "pass" if srm.passed else "fail"
    title = f"Sample ratio check of {what} clients {'passed' if srm.passed else 'failed'}."
    return Check(what, state, title, srm.description.replace("enrolled clients", f"{what} clients"), "" if srm.p_value is None else f"{srm.p_value:.4g}")


def _status(record: Mapping[str, Any], today: dt.date | None) -> str:
    if record.get("isRollout"):
        return "Rollout"
    end = record.get("endDate")
    if end and today is not None and str(end) <= today.isoformat():
        return "Complete"
    if not record.get("isEnrollmentPaused") and not record.get("enrollmentEndDate"):
        return "Live, enrolling"
    return "Live"


def overview(
    slug: str,
    record: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    branches: Sequence[str],
    reference: str,
    colors: Mapping[str, str],
    enrollments: Mapping[str, int],
    exposures: Mapping[str, int] | None,
    ratios: Mapping[str, float | None],
    today: dt.date | None,
) -> Overview:
    """Name, dates, status, branches, outcomes from the Experimenter record, with the enrollment figures."""
    record = record if isinstance(record, Mapping) else {}
    described = {}
    for branch in record.get("branches") or []:
        if isinstance(branch, Mapping) and isinstance(branch.get("slug"), str):
            features = [f.get("featureId") for f in branch.get("features") or [] if isinstance(f, Mapping)]
            text = branch.get("description") or branch.get("name") or ""
            if features:
                text = f"{text} (features: {', '.join(str(f) for f in features if f)})".strip()
            described[branch["slug"]] = _text(text)
    total = sum(enrollments.values())
    checks = [_check("enrolled", enrollments, ratios)]
    if exposures and sum(exposures.values()):
        checks.append(_check("exposed", exposures, ratios))
    try:
        expected = sample_ratio_mismatch(dict(enrollments), dict(ratios)).expected
    except ValueError:
        expected = {}
    infos = []
    for slug_ in branches:
        ratio = ratios.get(slug_)
        clients = enrollments.get(slug_, 0)
        infos.append(BranchInfo(
            slug=slug_,
            description=described.get(slug_, ""),
            ratio="not configured" if slug_ not in ratios else ("1 (none given)" if ratio is None else f"{ratio:g}"),
            color=colors.get(slug_, "#777"),
            is_reference=slug_ == reference,
            enrolled=clients,
            share=f"{clients / total:.1%}" if total else "n/a",
            expected=count(expected[slug_]) if slug_ in expected else "n/a",
            exposed=None if exposures is None else exposures.get(slug_, 0),
        ))
    outcomes = [
        (_text(o.get("friendly_name") or o.get("slug") or name, 200), _text(o.get("description") or "", 1000))
        for name, o in ((metadata or {}).get("outcomes") or {}).items() if isinstance(o, Mapping)
    ]
    dates = [(what, str(record[key])) for what, key in (
        ("Start", "startDate"), ("Enrollment ended", "enrollmentEndDate"), ("End", "endDate"))
        if record.get(key)]
    if record.get("proposedDuration"):
        dates.append(("Planned duration", f"{record['proposedDuration']} days"))
    return Overview(
        name=_text(record.get("userFacingName") or record.get("name") or slug, 300),
        description=_text(record.get("userFacingDescription") or record.get("publicDescription") or ""),
        status=_status(record, today) if record else "unknown (no Experimenter record)",
        dates=dates,
        branches=infos,
        outcomes=outcomes,
        checks=checks,
        total_enrolled=total,
        total_exposed=None if exposures is None else sum(exposures.values()),
        features=[str(f) for f in record.get("featureIds") or []][:20],
    )


# ------------------------------------------------------------------------------------ errors, missing


def window_label(analysis_period: Any) -> str:
    """`week_2` -> `Weekly 2`; `overall_1` -> `Overall`; anything else as logged."""
    text = str(analysis_period or "")
    period, _, index = text.rpartition("_")
    if period in PERIODS and index.isdigit():
        return PERIODS[period][0] if period == "overall" else f"{PERIODS[period][0]} {index}"
    return PERIODS[text][0] if text in PERIODS else text


def message(row: Mapping[str, Any]) -> str:
    text = str(row.get("message") or row.get("exception") or "")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ..."


def with_log_fields(errors: Sequence[Mapping[str, Any]], log_rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The errors export's rows with the window (`analysis_period`) the logs table recorded for each.

    The errors export follows Experimenter's schema, which has no window; the logs table has it. Rows are
    matched by message, metric and the timestamp to the second.
    """
    def key(row: Mapping[str, Any]) -> tuple:
        stamp = row.get("timestamp")
        if isinstance(stamp, str):
            try:
                stamp = dt.datetime.fromisoformat(stamp)
            except ValueError:
                stamp = None
        if isinstance(stamp, dt.datetime):
            stamp = (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
            stamp = stamp.replace(microsecond=0, tzinfo=None)
        return str(row.get("message") or ""), str(row.get("metric") or ""), stamp

    periods = {key(r): r.get("analysis_period") for r in log_rows if r.get("analysis_period")}
    return [{**row, "analysis_period": row.get("analysis_period") or periods.get(key(row))} for row in errors]


def explains(row: Mapping[str, Any], metric: str, period: str) -> bool:
    """A log row about this metric in this period (or in no particular period)."""
    if row.get("metric") != metric:
        return False
    logged = str(row.get("analysis_period") or "")
    return not logged or logged == period or logged.startswith(f"{period}_")


@dataclass
class MissingRow:
    metric: str
    friendly: str
    statistic: str
    period: str
    windows: str
    reasons: list[str]


def missing_results(
    present: Mapping[str, Mapping[tuple[str, str], set[int]]],
    windows: Mapping[str, list[int]],
    expected: Mapping[str, Sequence[tuple[str, str]]] | None,
    errors: Sequence[Mapping[str, Any]],
    friendly: Any,
    statistic_labels: Mapping[str, str],
) -> list[MissingRow]:
    """Configured (metric, statistic) pairs of a period without results in some of its windows, and why."""
    rows = []
    for period in PERIODS:
        if period not in windows or not expected or not expected.get(period):
            continue
        for metric, statistic in dict.fromkeys(expected[period]):
            have = present.get(period, {}).get((metric, statistic), set())
            missing = [w for w in windows[period] if w not in have]
            if not missing:
                continue
            why = [f"{r.get('log_level') or ''} {window_label(r.get('analysis_period'))} "
                   f"{r.get('segment') or ''}: {message(r)}".strip()
                   for r in errors if explains(r, metric, period)][:5]
            rows.append(MissingRow(metric, friendly(metric), label(statistic, dict(statistic_labels)),
                                   PERIODS[period][0], ", ".join(str(w) for w in missing), why))
    return rows
