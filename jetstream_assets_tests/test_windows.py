"""Analysis windows: when each window closes, what it covers, and the TimeLimits handed to mozanalysis."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from metric_config_parser.experiment import ExperimentConfiguration, ExperimentSpec
from mozanalysis.experiment import TimeLimits

from jetstream_assets.experimenter.models import Experiment
from jetstream_assets.windows import (
    ALL_PERIODS,
    AnalysisPeriod,
    AnalysisWindow,
    EnrollmentLongerThanAnalysisError,
    closing_date,
    enrollment_period,
    last_enrollment_date,
    rerun_dates,
    time_limits,
    windows_closing_on,
)

D = dt.date
DAY, WEEK, DAYS_28 = AnalysisPeriod.DAY, AnalysisPeriod.WEEK, AnalysisPeriod.DAYS_28
OVERALL = AnalysisPeriod.OVERALL
PRE_WEEK, PRE_28 = AnalysisPeriod.PREENROLLMENT_WEEK, AnalysisPeriod.PREENROLLMENT_DAYS_28


def experiment(**kw) -> Experiment:
    fields = dict(
        slug="my-exp",
        branches=[],
        start_date=D(2019, 12, 1),
        end_date=None,
        proposed_enrollment=14,
        enrollment_end_date=D(2019, 12, 7),
        reference_branch="control",
    )
    fields.update(kw)
    return Experiment(**fields)


def closing(start, e, end, complete, d, periods=ALL_PERIODS) -> dict:
    return {
        (w.period, w.index): (w.start, w.end)
        for w in windows_closing_on(start, e, end, complete, d, periods)
    }


def all_windows(start, e, end, complete, first, last, periods=ALL_PERIODS) -> dict:
    """(period, index) -> [(date, start, end), ...] over every analysis date first..last."""
    seen: dict = {}
    d = first
    while d <= last:
        for w in windows_closing_on(start, e, end, complete, d, periods):
            seen.setdefault((w.period, w.index), []).append((d, w.start, w.end))
        d += dt.timedelta(days=1)
    return seen


# --- REFERENCE worked example: S=2019-12-01, enrollment end 2019-12-07, end 2020-03-01 --------------------

S = D(2019, 12, 1)
END = D(2020, 3, 1)


def test_worked_example_enrollment_period_and_last_enrollment_date():
    e = enrollment_period(experiment(), override=None)
    assert e == 7
    assert last_enrollment_date(S, e) == D(2019, 12, 8)


def test_worked_example_first_windows_of_every_period():
    seen = all_windows(S, 7, END, True, S, END)
    assert seen[(DAY, 1)] == [(D(2019, 12, 8), 0, 0)]
    assert seen[(DAY, 2)] == [(D(2019, 12, 9), 1, 1)]
    assert seen[(WEEK, 1)] == [(D(2019, 12, 14), 0, 6)]
    assert seen[(WEEK, 2)] == [(D(2019, 12, 21), 7, 13)]
    assert seen[(DAYS_28, 1)] == [(D(2020, 1, 4), 0, 27)]
    assert seen[(DAYS_28, 2)] == [(D(2020, 2, 1), 28, 55)]
    assert seen[(PRE_WEEK, 1)] == [(D(2019, 12, 9), -7, -1)]
    assert seen[(PRE_28, 1)] == [(D(2019, 12, 9), -28, -1)]
    assert seen[(OVERALL, 1)] == [(END, 0, 83)]
    # Nothing at all closes before the last enrollment date.
    assert not any(d < D(2019, 12, 8) for occ in seen.values() for d, _, _ in occ)


def test_worked_example_only_newly_closed_window_per_period():
    assert closing(S, 7, END, True, D(2019, 12, 21)) == {(DAY, 14): (13, 13), (WEEK, 2): (7, 13)}
    assert closing(S, 7, END, True, D(2019, 12, 9)) == {
        (DAY, 2): (1, 1),
        (PRE_WEEK, 1): (-7, -1),
        (PRE_28, 1): (-28, -1),
    }
    assert closing(S, 7, END, True, D(2019, 12, 7)) == {}


def test_worked_example_time_limits_match_jetstream():
    day1 = time_limits(AnalysisWindow(DAY, 1, 0, 0), S, 7, D(2019, 12, 8))
    assert (day1.first_enrollment_date, day1.last_enrollment_date) == ("2019-12-01", "2019-12-08")
    assert (day1.first_date_data_required, day1.last_date_data_required) == ("2019-12-01", "2019-12-08")

    week2 = time_limits(AnalysisWindow(WEEK, 2, 7, 13), S, 7, D(2019, 12, 21))
    assert len(week2.analysis_windows) == 1
    assert (week2.analysis_windows[0].start, week2.analysis_windows[0].end) == (7, 13)
    assert (week2.first_date_data_required, week2.last_date_data_required) == ("2019-12-08", "2019-12-21")

    # overall and pre-enrollment use data up to the day before D
    overall = time_limits(AnalysisWindow(OVERALL, 1, 0, 83), S, 7, END)
    assert overall.last_date_data_required == "2020-02-29"
    pre = time_limits(AnalysisWindow(PRE_28, 1, -28, -1), S, 7, D(2019, 12, 9))
    assert (pre.first_date_data_required, pre.last_date_data_required) == ("2019-11-03", "2019-12-07")


def test_time_limits_refuses_a_window_not_yet_complete():
    with pytest.raises(ValueError, match=r"week window 2 .* not complete on 2019-12-20"):
        time_limits(AnalysisWindow(WEEK, 2, 7, 13), S, 7, D(2019, 12, 20))
    # overall only trusts data up to the day before D, so it is not complete a day early
    with pytest.raises(ValueError, match="overall window 1"):
        time_limits(AnalysisWindow(OVERALL, 1, 0, 83), S, 7, D(2020, 2, 29))


def test_window_length_is_what_normalization_divides_by():
    lengths = {
        (w.period, w.index): w.length
        for d in (D(2019, 12, 9), D(2019, 12, 14), D(2020, 1, 4), END)
        for w in windows_closing_on(S, 7, END, True, d)
    }
    assert lengths[(DAY, 2)] == 1
    assert lengths[(WEEK, 1)] == 7
    assert lengths[(DAYS_28, 1)] == 28
    assert lengths[(PRE_WEEK, 1)] == 7
    assert lengths[(PRE_28, 1)] == 28
    assert lengths[(OVERALL, 1)] == 84


# --- overall and end dates ----------------------------------------------------------------------------


def test_overall_only_on_end_date_of_complete_experiment():
    assert (OVERALL, 1) in closing(S, 7, END, True, END)
    assert (OVERALL, 1) not in closing(S, 7, END, False, END)  # still Live on its end date
    assert (OVERALL, 1) not in closing(S, 7, None, True, END)
    assert (OVERALL, 1) not in closing(S, 7, END, True, END - dt.timedelta(days=1))


def test_end_date_equal_to_d_still_closes_windows_and_nothing_after():
    end = D(2019, 12, 14)
    assert closing(S, 7, end, True, end) == {(DAY, 7): (6, 6), (WEEK, 1): (0, 6), (OVERALL, 1): (0, 5)}
    assert closing(S, 7, end, True, end + dt.timedelta(days=1)) == {}
    assert closing(S, 7, end, True, end + dt.timedelta(days=7)) == {}


def test_end_before_enrollment_ends_is_an_error_naming_the_dates():
    end = D(2019, 12, 5)
    with pytest.raises(EnrollmentLongerThanAnalysisError, match=r"2019-12-01.*2019-12-05.*2019-12-08"):
        windows_closing_on(S, 7, end, True, end)
    # without the overall period the same date is simply empty
    assert closing(S, 7, end, True, end, [DAY, WEEK]) == {}


def test_overall_of_zero_days_is_an_error_too():
    # end == L: (end - S) - E = 0 days after enrollment; mozanalysis cannot express an empty window
    with pytest.raises(EnrollmentLongerThanAnalysisError):
        windows_closing_on(S, 7, D(2019, 12, 8), True, D(2019, 12, 8))
    assert closing(S, 7, D(2019, 12, 9), True, D(2019, 12, 9))[(OVERALL, 1)] == (0, 0)


def test_enrollment_period_zero_is_refused():
    with pytest.raises(ValueError, match="positive"):
        windows_closing_on(S, 0, None, False, D(2019, 12, 8))
    with pytest.raises(ValueError, match="positive"):
        time_limits(AnalysisWindow(DAY, 1, 0, 0), S, 0, D(2019, 12, 8))


def test_one_day_enrollment():
    seen = all_windows(S, 1, D(2019, 12, 31), True, S, D(2019, 12, 31))
    assert seen[(DAY, 1)] == [(D(2019, 12, 2), 0, 0)]
    assert seen[(PRE_WEEK, 1)] == [(D(2019, 12, 3), -7, -1)]
    assert seen[(OVERALL, 1)] == [(D(2019, 12, 31), 0, 28)]


# --- enrollment period ----------------------------------------------------------------------------------


def test_enrollment_period_precedence():
    assert enrollment_period(experiment(), override=3) == 3
    assert enrollment_period(experiment(), override=None) == 7
    assert enrollment_period(experiment(enrollment_end_date=None), override=None) == 14
    assert enrollment_period(experiment(enrollment_end_date=None, proposed_enrollment=None), None) is None


@pytest.mark.parametrize(
    "kw,override",
    [
        ({}, None),
        ({}, 21),
        ({"enrollment_end_date": None}, None),
        ({"enrollment_end_date": D(2020, 3, 2), "start_date": D(2020, 2, 25)}, None),
    ],
)
def test_enrollment_period_agrees_with_metric_config_parser(kw, override):
    exp = experiment(**kw)
    config = ExperimentConfiguration(
        experiment_spec=ExperimentSpec(enrollment_period=override),
        experiment=exp.to_config_experiment(D(2020, 1, 1)),
        segments=[],
    )
    assert enrollment_period(exp, override) == config.enrollment_period
    assert str(last_enrollment_date(exp.start_date, config.enrollment_period)) == (
        config.last_enrollment_date_str
    )


# --- leap days and long windows -------------------------------------------------------------------------


def test_enrollment_over_leap_day_2020():
    exp = experiment(start_date=D(2020, 2, 26), enrollment_end_date=D(2020, 3, 3))
    e = enrollment_period(exp, None)
    assert e == 7  # 02-26 .. 03-03 spans 02-29
    assert enrollment_period(experiment(start_date=D(2019, 2, 26), enrollment_end_date=D(2019, 3, 3)), None) == 6
    seen = all_windows(exp.start_date, e, None, False, exp.start_date, D(2020, 4, 30))
    assert seen[(DAY, 1)] == [(D(2020, 3, 4), 0, 0)]
    assert seen[(WEEK, 1)] == [(D(2020, 3, 10), 0, 6)]
    assert seen[(DAYS_28, 1)] == [(D(2020, 3, 31), 0, 27)]


def test_overall_across_leap_day_2024():
    # S=2024-02-01, E=7 -> L=2024-02-08; 2024-03-01 - S = 29 days (February has 29), so 22 days analysed
    assert closing(D(2024, 2, 1), 7, D(2024, 3, 1), True, D(2024, 3, 1))[(OVERALL, 1)] == (0, 21)
    assert closing(D(2023, 2, 1), 7, D(2023, 3, 1), True, D(2023, 3, 1))[(OVERALL, 1)] == (0, 20)
    tl = time_limits(AnalysisWindow(OVERALL, 1, 0, 21), D(2024, 2, 1), 7, D(2024, 3, 1))
    assert tl.last_date_data_required == "2024-02-29"


def test_days28_windows_follow_each_other():
    seen = all_windows(S, 7, None, False, S, D(2020, 4, 24), [DAYS_28])
    assert seen == {
        (DAYS_28, 1): [(D(2020, 1, 4), 0, 27)],
        (DAYS_28, 2): [(D(2020, 2, 1), 28, 55)],
        (DAYS_28, 3): [(D(2020, 2, 29), 56, 83)],
        (DAYS_28, 4): [(D(2020, 3, 28), 84, 111)],
    }


# --- property: against mozanalysis TimeLimits.for_ts -----------------------------------------------------

_LABEL = {DAY: "daily", WEEK: "weekly", DAYS_28: "28_day"}


def _for_ts(start: dt.date, e: int, d: dt.date, period) -> TimeLimits | None:
    try:
        return TimeLimits.for_ts(
            first_enrollment_date=start.isoformat(),
            last_date_full_data=d.isoformat(),
            time_series_period=_LABEL[period],
            num_dates_enrollment=e + 1,
        )
    except ValueError:
        return None


def test_every_window_closes_on_exactly_one_date_as_mozanalysis_says():
    rng = random.Random(20191201)
    for _ in range(25):
        start = D(2019, 1, 1) + dt.timedelta(days=rng.randrange(0, 2200))
        e = rng.choice([1, 6, 7, 8, 13, 14, 27, 28, 29, rng.randrange(1, 45)])
        end = None if rng.random() < 0.3 else start + dt.timedelta(days=rng.randrange(e + 1, e + 130))
        complete = end is not None and rng.random() < 0.8
        last = end if end is not None else start + dt.timedelta(days=e + 100)
        scan_to = last + dt.timedelta(days=5)
        seen = all_windows(start, e, end, complete, start - dt.timedelta(days=3), scan_to)

        for (period, index), occurrences in seen.items():
            assert len(occurrences) == 1, (start, e, end, period, index, occurrences)
            d, w_start, w_end = occurrences[0]
            window = AnalysisWindow(period, index, w_start, w_end)
            assert closing_date(window, start, e) == d
            tl = time_limits(window, start, e, d)
            assert len(tl.analysis_windows) == 1
            assert (tl.analysis_windows[0].start, tl.analysis_windows[0].end) == (w_start, w_end)
            assert tl.first_enrollment_date == start.isoformat()
            assert tl.last_enrollment_date == (start + dt.timedelta(days=e)).isoformat()
            if period in _LABEL:
                # Jetstream: a window is due when for_ts on D has one more window than on D - 1
                now, before = _for_ts(start, e, d, period), _for_ts(start, e, d - dt.timedelta(days=1), period)
                assert now is not None and len(now.analysis_windows) == index
                assert before is None or len(before.analysis_windows) == index - 1
                last_w = now.analysis_windows[-1]
                assert (last_w.start, last_w.end) == (w_start, w_end)
                assert tl.last_date_data_required == now.last_date_data_required
                assert tl.first_date_data_required == (
                    dt.date.fromisoformat(now.first_enrollment_date) + dt.timedelta(days=w_start)
                ).isoformat()

        # indices of each time-series period are 1..K with K what for_ts reports on the last date
        for period in _LABEL:
            indices = sorted(i for p, i in seen if p == period)
            final = _for_ts(start, e, end or scan_to, period)
            assert indices == list(range(1, (len(final.analysis_windows) if final else 0) + 1))
        for period in (PRE_WEEK, PRE_28):
            assert [d for d, _, _ in seen[(period, 1)]] == [start + dt.timedelta(days=e + 1)]
        if complete:
            assert seen[(OVERALL, 1)] == [(end, 0, (end - start).days - e - 1)]
        else:
            assert (OVERALL, 1) not in seen


# --- reruns ---------------------------------------------------------------------------------------------


def test_rerun_dates():
    assert rerun_dates(S, D(2019, 12, 10), today=D(2020, 6, 1)) == [
        S + dt.timedelta(days=n) for n in range(11)
    ]  # through end + 1 day
    assert rerun_dates(S, None, today=D(2019, 12, 5))[-1] == D(2019, 12, 4)  # through yesterday
    assert rerun_dates(S, D(2020, 1, 1), today=D(2019, 12, 5))[-1] == D(2019, 12, 4)
    assert rerun_dates(S, None, today=S) == []
