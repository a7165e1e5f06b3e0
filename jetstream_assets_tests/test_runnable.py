"""Checks before an experiment is analysed on date D: which one fires, in which order, at which level."""

from __future__ import annotations

import datetime as dt

import pytest

from jetstream_assets.experimenter.models import Experiment
from jetstream_assets.eligibility import Skip, check_runnable

D = dt.date
APPS = {"firefox_desktop", "fenix"}


def experiment(**kw) -> Experiment:
    fields = dict(
        slug="my-exp",
        branches=[],
        start_date=D(2019, 12, 1),
        end_date=D(2020, 3, 1),
        proposed_enrollment=14,
        enrollment_end_date=D(2019, 12, 7),
        reference_branch="control",
    )
    fields.update(kw)
    return Experiment(**fields)


def check(exp: Experiment, d: dt.date = D(2020, 1, 10), **kw) -> Skip | None:
    kw.setdefault("supported_apps", APPS)
    return check_runnable(exp, d, **kw)


def test_runnable_experiment_passes():
    assert check(experiment()) is None
    assert check(experiment(app_name="fenix")) is None


def test_each_check_alone():
    assert check(experiment(slug="")).code == "no_slug"
    assert check(experiment(), skip=True).code == "skip"
    assert check(experiment(enrollment_end_date=None, proposed_enrollment=None)).code == "no_enrollment_period"
    assert check(experiment(enrollment_end_date=None, proposed_enrollment=0)).code == "no_enrollment_period"
    assert check(experiment(), enrollment_period_override=0).code == "no_enrollment_period"
    assert check(experiment(start_date=None)).code == "no_start_date"
    assert check(experiment(), D(2020, 3, 2)).code == "ended"
    assert check(experiment(is_rollout=True)).code == "rollout"
    assert check(experiment(app_name="klar_ios")).code == "unsupported_app"
    assert check(experiment(enrollment_end_date=None)).code == "enrollment_not_complete"
    assert check(experiment(), D(2019, 12, 7)).code == "not_yet"


def test_checks_run_in_jetstream_order():
    # each experiment fails every later check too; the earliest one must win
    everything = dict(
        start_date=None,
        enrollment_end_date=None,
        proposed_enrollment=None,
        end_date=D(2019, 1, 1),
        is_rollout=True,
        app_name="unknown_app",
    )
    assert check(experiment(slug="", **everything), skip=True).code == "no_slug"
    assert check(experiment(**everything), skip=True).code == "skip"
    assert check(experiment(**everything)).code == "no_enrollment_period"
    everything.pop("proposed_enrollment")
    assert check(experiment(**everything)).code == "no_start_date"
    everything.pop("start_date")
    assert check(experiment(**everything)).code == "ended"
    everything.pop("end_date")
    assert check(experiment(**everything)).code == "rollout"
    everything.pop("is_rollout")
    assert check(experiment(**everything)).code == "unsupported_app"
    everything.pop("app_name")
    assert check(experiment(**everything), D(2019, 12, 2)).code == "enrollment_not_complete"
    everything.pop("enrollment_end_date")
    assert check(experiment(**everything), D(2019, 12, 2)).code == "not_yet"


def test_end_date_itself_is_still_analysed():
    assert check(experiment(), D(2020, 3, 1)) is None
    skip = check(experiment(), D(2020, 3, 2))
    assert skip.code == "ended" and "2020-03-01" in skip.reason and "2020-03-02" in skip.reason


def test_levels_only_unsupported_app_is_an_error():
    assert check(experiment(app_name="klar_ios")).level == "error"
    for skip in (
        check(experiment(), skip=True),
        check(experiment(start_date=None)),
        check(experiment(), D(2021, 1, 1)),
        check(experiment(is_rollout=True)),
        check(experiment(enrollment_end_date=None)),
    ):
        assert skip.level == "warning", skip
    assert check(experiment(), D(2019, 12, 2)).level == "info"


def test_reasons_name_the_experiment_and_what_is_wrong():
    assert "my-exp" in check(experiment(), skip=True).reason
    unsupported = check(experiment(app_name="klar_ios"))
    assert "my-exp" in unsupported.reason and "klar_ios" in unsupported.reason
    not_complete = check(experiment(enrollment_end_date=None))
    assert "enrollmentEndDate" in not_complete.reason and "enrollment_period" in not_complete.reason
    assert "2019-12-08" in check(experiment(), D(2019, 12, 7)).reason


def test_config_enrollment_period_overrides_missing_enrollment_end():
    exp = experiment(enrollment_end_date=None, proposed_enrollment=None)
    assert check(exp, D(2019, 12, 20), enrollment_period_override=7) is None
    # the override also moves the last enrollment date: S + 21 = 2019-12-22
    assert check(exp, D(2019, 12, 20), enrollment_period_override=21).code == "not_yet"


@pytest.mark.parametrize("d,expected", [(D(2019, 12, 7), "not_yet"), (D(2019, 12, 8), None)])
def test_first_analysis_date_is_last_enrollment_date(d, expected):
    skip = check(experiment(), d)
    assert (skip.code if skip else None) == expected
