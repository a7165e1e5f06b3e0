"""Analysis periods and window arithmetic: which analysis windows close on an analysis date D.

All window bounds are days relative to each client's own enrollment date. S is the experiment start date,
E the enrollment period, L = S + E the last enrollment date (Jetstream enrolls clients on E + 1 dates).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metric_config_parser.metric import AnalysisPeriod
from mozanalysis.experiment import TimeLimits

if TYPE_CHECKING:
    from .experimenter.models import Experiment

__all__ = [
    "ALL_PERIODS",
    "AnalysisPeriod",
    "AnalysisWindow",
    "EnrollmentLongerThanAnalysisError",
    "PERIOD_DAYS",
    "closing_date",
    "enrollment_period",
    "last_enrollment_date",
    "rerun_dates",
    "time_limits",
    "windows_closing_on",
]

ALL_PERIODS: tuple[AnalysisPeriod, ...] = tuple(AnalysisPeriod)

# Length P of each window of the time-series periods: window k covers days [(k-1)P, kP-1].
PERIOD_DAYS: dict[AnalysisPeriod, int] = {
    AnalysisPeriod.DAY: 1,
    AnalysisPeriod.WEEK: 7,
    AnalysisPeriod.DAYS_28: 28,
}

# Pre-enrollment windows: the days before each client's enrollment.
PREENROLLMENT_DAYS: dict[AnalysisPeriod, int] = {
    AnalysisPeriod.PREENROLLMENT_WEEK: 7,
    AnalysisPeriod.PREENROLLMENT_DAYS_28: 28,
}


class EnrollmentLongerThanAnalysisError(ValueError):
    """The experiment ended before any day after enrollment was observed, so `overall` has no window."""


@dataclass(frozen=True)
class AnalysisWindow:
    """One analysis window of a period; `index` is the 1-based suffix of its tables."""

    period: AnalysisPeriod
    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        """Days in the window; normalize_over_analysis_period divides by it."""
        return self.end - self.start + 1

    @property
    def table_suffix(self) -> str:
        """Suffix of the views that union this period's windows (`daily`, `weekly`, ...)."""
        return self.period.table_suffix


def enrollment_period(experiment: "Experiment", override: int | None) -> int | None:
    """E: the config's `enrollment_period`, else the observed enrollment dates, else the proposed one.

    Pass an experiment whose start date already carries any config override: E counts from it.
    """
    if override is not None:
        return override
    if experiment.enrollment_end_date is not None and experiment.start_date is not None:
        return (experiment.enrollment_end_date - experiment.start_date).days + 1
    return experiment.proposed_enrollment


def last_enrollment_date(start_date: dt.date, enrollment_period: int) -> dt.date:
    """L = S + E (Jetstream takes E + 1 dates of enrollments)."""
    return start_date + dt.timedelta(days=enrollment_period)


def _check_enrollment_period(enrollment_period: int) -> None:
    if enrollment_period is None or enrollment_period < 1:
        raise ValueError(
            f"Enrollment period must be a positive number of days, got {enrollment_period!r}; "
            "check the experiment's enrollment dates or the config's `enrollment_period`."
        )


def _overall_length(start_date: dt.date, enrollment_period: int, end_date: dt.date) -> int:
    return (end_date - start_date).days - enrollment_period


def windows_closing_on(
    start_date: dt.date,
    enrollment_period: int,
    end_date: dt.date | None,
    is_complete: bool,
    analysis_date: dt.date,
    periods: Iterable[AnalysisPeriod] = ALL_PERIODS,
) -> list[AnalysisWindow]:
    """The windows whose data becomes complete on D: only the newly closed window of each period.

    Nothing closes after the end date (Jetstream no longer analyses an ended experiment); `overall` closes
    only on the end date of a Complete experiment.
    """
    _check_enrollment_period(enrollment_period)
    d = analysis_date
    if end_date is not None and d > end_date:
        return []
    last_enrollment = last_enrollment_date(start_date, enrollment_period)
    days_observed = (d - last_enrollment).days + 1  # full days of data for the last enrolled clients

    windows: list[AnalysisWindow] = []
    for period in periods:
        period = AnalysisPeriod(period)
        if period in PERIOD_DAYS:
            p = PERIOD_DAYS[period]
            if days_observed >= p and days_observed % p == 0:
                k = days_observed // p
                windows.append(AnalysisWindow(period, k, (k - 1) * p, k * p - 1))
        elif period in PREENROLLMENT_DAYS:
            if d == last_enrollment + dt.timedelta(days=1):
                n = PREENROLLMENT_DAYS[period]
                windows.append(AnalysisWindow(period, 1, -n, -1))
        elif period == AnalysisPeriod.OVERALL:
            if is_complete and end_date is not None and d == end_date:
                length = _overall_length(start_date, enrollment_period, end_date)
                if length < 1:
                    # Jetstream refuses a negative length and mozanalysis an empty window (length 0).
                    raise EnrollmentLongerThanAnalysisError(
                        f"The overall window cannot be computed: the experiment started {start_date} and "
                        f"ended {end_date}, but enrollment runs {enrollment_period} days until "
                        f"{last_enrollment}, leaving {length} days to analyse. Fix the end date or the "
                        "enrollment period (config `enrollment_period`, `end_date`)."
                    )
                windows.append(AnalysisWindow(period, 1, 0, length - 1))
    return windows


def closing_date(window: AnalysisWindow, start_date: dt.date, enrollment_period: int) -> dt.date:
    """The analysis date on which `window` is computed (the inverse of windows_closing_on)."""
    last_enrollment = last_enrollment_date(start_date, enrollment_period)
    if window.period in PERIOD_DAYS:
        return last_enrollment + dt.timedelta(days=window.end)
    if window.period in PREENROLLMENT_DAYS:
        return last_enrollment + dt.timedelta(days=1)
    return last_enrollment + dt.timedelta(days=window.end + 1)


def time_limits(
    window: AnalysisWindow, start_date: dt.date, enrollment_period: int, analysis_date: dt.date
) -> TimeLimits:
    """mozanalysis TimeLimits holding exactly this one window, as Jetstream hands it to build_metrics_query.

    Data for time-series windows runs up to D; overall and pre-enrollment windows only use data up to the
    day before D, as Jetstream does. Enrollment dates are S .. L either way, so the result also serves the
    enrollments query.
    """
    _check_enrollment_period(enrollment_period)
    last_full_data = analysis_date
    if window.period not in PERIOD_DAYS:
        last_full_data = analysis_date - dt.timedelta(days=1)
    try:
        return TimeLimits.for_single_analysis_window(
            first_enrollment_date=start_date.isoformat(),
            last_date_full_data=last_full_data.isoformat(),
            analysis_start_days=window.start,
            analysis_length_dates=window.length,
            num_dates_enrollment=enrollment_period + 1,
        )
    except (ValueError, AssertionError) as e:
        raise ValueError(
            f"The {window.period.value} window {window.index} (days {window.start}..{window.end}) of an "
            f"experiment started {start_date} with a {enrollment_period}-day enrollment period is not "
            f"complete on {analysis_date}: {e}"
        ) from e


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every date from `first` to `last`, both included (none when `last` is before `first`)."""
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def rerun_dates(start_date: dt.date, end_date: dt.date | None, today: dt.date) -> list[dt.date]:
    """The analysis dates a full rerun covers: S .. min(end + 1 day, yesterday)."""
    last = today - dt.timedelta(days=1)
    if end_date is not None:
        last = min(last, end_date + dt.timedelta(days=1))
    return days(start_date, last)
