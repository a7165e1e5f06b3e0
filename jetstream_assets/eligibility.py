"""Checks before an experiment is analysed on date D.

A failed check is a Skip, not an exception: the (experiment, date) cell materializes as a no-op whose metadata
says why, and only an unsupported application is logged as an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from .experimenter.models import Experiment
from .windows import enrollment_period as _enrollment_period
from .windows import last_enrollment_date


@dataclass(frozen=True)
class Skip:
    """Why an experiment is not analysed on a date."""

    code: str
    reason: str
    level: str  # "warning" for validation skips, "error" for an unsupported app, "info" for not_yet


def check_runnable(
    experiment: Experiment,
    analysis_date: dt.date,
    *,
    skip: bool = False,
    enrollment_period_override: int | None = None,
    supported_apps: Collection[str],
) -> Skip | None:
    """The first check the experiment fails on D, in Jetstream's order, or None when it can be analysed.

    Pass the experiment with any config override of start/end date already applied; `skip` and
    `enrollment_period_override` come from the experiment's config.
    """
    slug = experiment.slug
    d = analysis_date

    def warn(code: str, reason: str) -> Skip:
        return Skip(code, reason, "warning")

    if not slug or not slug.strip():
        return warn("no_slug", f"An experiment without a slug cannot be analysed (on {d}).")
    if skip:
        return warn(
            "skip",
            f"Experiment {slug} is configured with skip = true in its config file; not analysed on {d}.",
        )
    period = _enrollment_period(experiment, enrollment_period_override)
    if not period or period < 1:
        return warn(
            "no_enrollment_period",
            f"Experiment {slug} has no enrollment period (enrollmentEndDate "
            f"{experiment.enrollment_end_date}, proposedEnrollment {experiment.proposed_enrollment}, "
            f"config enrollment_period {enrollment_period_override}, giving {period!r}); set "
            "`enrollment_period` in its config to analyse it.",
        )
    if experiment.start_date is None:
        return warn(
            "no_start_date",
            f"Experiment {slug} has no start date (startDate is empty in Experimenter); "
            f"nothing to analyse on {d}.",
        )
    if experiment.end_date is not None and experiment.end_date < d:
        return warn(
            "ended",
            f"Experiment {slug} ended on {experiment.end_date}, before the analysis date {d}.",
        )
    if experiment.is_rollout:
        return warn("rollout", f"Experiment {slug} is a rollout (isRollout); rollouts are not analysed.")
    if experiment.app_name not in supported_apps:
        return Skip(
            "unsupported_app",
            f"Experiment {slug} targets appName {experiment.app_name!r}, which has no platform "
            f"configuration (supported: {', '.join(sorted(supported_apps)) or 'none'}).",
            "error",
        )
    if experiment.enrollment_end_date is None and enrollment_period_override is None:
        return warn(
            "enrollment_not_complete",
            f"Experiment {slug} has not finished enrollment on {d} (Experimenter has no "
            "enrollmentEndDate and its config does not set `enrollment_period`).",
        )
    last_enrollment = last_enrollment_date(experiment.start_date, period)
    if d < last_enrollment:
        return Skip(
            "not_yet",
            f"Experiment {slug} enrolls clients until {last_enrollment}; its first analysis window "
            f"closes on that date, not yet on {d}.",
            "info",
        )
    return None
