"""The demo experiments: Experimenter v8 records with dates relative to `today`, and the effects planted in
the synthetic telemetry for each of their branches.

Dates move with `today` so a fresh demo always has one Complete experiment whose overall window has
closed, Live ones part-way through their weekly windows, and experiments the checks skip. The whole set
stays near 100 (experiment, analysis date) cells so the demo runs in minutes on a laptop.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

# Telemetry columns (clients_daily) that the demo metrics read; effects are planted on these.
ACTIVE_HOURS = "active_hours_sum"
URI_COUNT = "scalar_parent_browser_engagement_total_uri_count_sum"
SEARCH_COUNT = "search_count_all"
AD_CLICKS = "ad_clicks_count_all"
SEARCH_WITH_ADS = "search_with_ads_count_all"
TAB_OPEN = "scalar_parent_browser_engagement_tab_open_event_count_sum"

# Which clients_daily column each demo metric sums (metric-hub's `agg_sum` metrics); the metrics not
# listed (days_of_use, retained, ...) count active days, which no planted effect changes.
METRIC_COLUMNS: dict[str, str] = {
    "active_hours": ACTIVE_HOURS,
    "uri_count": URI_COUNT,
    "search_count": SEARCH_COUNT,
    "ad_clicks": AD_CLICKS,
    "searches_with_ads": SEARCH_WITH_ADS,
    "tabs_opened": TAB_OPEN,
}

# slug -> branch -> clients_daily column -> multiplier applied from each client's enrollment date on.
# Sizes are chosen so that 100,000 demo clients show them clearly and nothing else moves.
PLANTED_EFFECTS: dict[str, dict[str, dict[str, float]]] = {
    "demo-complete": {
        "treatment": {ACTIVE_HOURS: 1.10, URI_COUNT: 1.06},
    },
    "demo-live": {
        "treatment-a": {SEARCH_COUNT: 1.12, SEARCH_WITH_ADS: 1.12},
        "treatment-b": {ACTIVE_HOURS: 0.94, AD_CLICKS: 0.80},
    },
    "demo-custom": {
        "treatment": {TAB_OPEN: 1.20, SEARCH_COUNT: 1.08, SEARCH_WITH_ADS: 1.08},
    },
    "demo-rollout": {
        "enabled": {ACTIVE_HOURS: 1.02},
    },
}

# Share of all demo clients each experiment tries to enroll (the first day a client is active in the
# enrollment period), and the share of enrolled clients that later send a Nimbus exposure event.
ENROLLMENT_SHARE: dict[str, float] = {
    "demo-complete": 0.35,
    "demo-live": 0.35,
    "demo-custom": 0.35,
    "demo-rollout": 0.20,
    "demo-enrolling": 0.10,
}
EXPOSURE_SHARE: dict[str, float] = {
    "demo-complete": 0.7,
    "demo-live": 0.5,
    "demo-custom": 0.6,
    "demo-rollout": 0.9,
    "demo-enrolling": 0.5,
}


def _d(day: date) -> str:
    return day.isoformat()


def _record(
    slug: str,
    *,
    start: date,
    enrollment_days: int | None,
    end: date | None,
    branches: list[tuple[str, int]],
    reference: str | None,
    proposed_enrollment: int,
    outcomes: tuple[str, ...] = (),
    segments: tuple[str, ...] = (),
    is_rollout: bool = False,
    bucket_start: int = 0,
) -> dict[str, Any]:
    enrollment_end = start + timedelta(days=enrollment_days - 1) if enrollment_days else None
    return {
        "schemaVersion": "1.12.0",
        "slug": slug,
        "id": slug,
        "appName": "firefox_desktop",
        "appId": "firefox-desktop",
        "channel": "release",
        "userFacingName": slug.replace("-", " ").title(),
        "userFacingDescription": f"Demo experiment {slug} with synthetic telemetry.",
        "isEnrollmentPaused": enrollment_end is not None,
        "isRollout": is_rollout,
        "bucketConfig": {
            "randomizationUnit": "normandy_id",
            "namespace": f"firefox-desktop-{slug}-release-1",
            "start": bucket_start,
            "count": int(ENROLLMENT_SHARE[slug] * 10000),
            "total": 10000,
        },
        "featureIds": ["demo-feature"],
        "branches": [{"slug": b, "ratio": r} for b, r in branches],
        "referenceBranch": reference,
        "startDate": _d(start),
        "enrollmentEndDate": _d(enrollment_end) if enrollment_end else None,
        "endDate": _d(end) if end else None,
        "proposedDuration": 28,
        "proposedEnrollment": proposed_enrollment,
        "targeting": "true",
        "outcomes": [{"slug": o} for o in outcomes],
        "segments": [{"slug": s} for s in segments],
        "localizations": None,
        "locales": None,
        "publishedDate": _d(start),
    }


def demo_experiments(today: date) -> list[dict[str, Any]]:
    """Experimenter v8 records of the demo, dated so that on `today` each is in the state its slug says.

    - demo-complete: Complete, 7-day enrollment, ended 7 days ago: weekly windows 1-3 and the overall window.
    - demo-live: Live for 3 weeks, three branches, enrollment ended: weekly windows 1-2.
    - demo-custom: Live for 30 days with a custom `jetstream/demo-custom.toml` (segments, exposure signal,
      custom metric) and the `demo_engagement` outcome from Experimenter.
    - demo-rollout: a rollout; the checks skip it.
    - demo-enrolling: still enrolling (no enrollment end date); the checks skip it.
    """
    if not isinstance(today, date):
        raise TypeError(f"demo_experiments(today=...) needs a datetime.date, got {today!r}")
    t = today
    return [
        _record(
            "demo-complete",
            start=t - timedelta(days=38),
            enrollment_days=7,
            end=t - timedelta(days=7),
            branches=[("control", 1), ("treatment", 1)],
            reference="control",
            proposed_enrollment=7,
            bucket_start=0,
        ),
        _record(
            "demo-live",
            start=t - timedelta(days=21),
            enrollment_days=7,
            end=None,
            branches=[("control", 1), ("treatment-a", 1), ("treatment-b", 1)],
            reference="control",
            proposed_enrollment=7,
            bucket_start=3500,
        ),
        _record(
            "demo-custom",
            start=t - timedelta(days=30),
            enrollment_days=7,
            end=None,
            branches=[("control", 1), ("treatment", 1)],
            reference="control",
            proposed_enrollment=7,
            outcomes=("demo_engagement",),
            bucket_start=7000,
        ),
        _record(
            "demo-rollout",
            start=t - timedelta(days=14),
            enrollment_days=7,
            end=None,
            branches=[("enabled", 1)],
            reference="enabled",
            proposed_enrollment=7,
            is_rollout=True,
            bucket_start=0,
        ),
        _record(
            "demo-enrolling",
            start=t - timedelta(days=4),
            enrollment_days=None,
            end=None,
            branches=[("control", 1), ("treatment", 1)],
            reference="control",
            proposed_enrollment=14,
            bucket_start=9000,
        ),
    ]


def expected_uplift(slug: str, branch: str, metric: str) -> float:
    """True relative uplift of a demo metric in `branch` over the experiment's reference branch.

    Exact in expectation for the summed metrics (active_hours, uri_count, ...): activity is not changed by
    any branch, so the ratio of means is the ratio of multipliers. 0.0 where nothing is planted.
    """
    records = {r["slug"]: r for r in demo_experiments(date(2000, 1, 1))}
    if slug not in records:
        raise ValueError(f"Unknown demo experiment {slug!r}; the demo has {sorted(records)}.")
    record = records[slug]
    branches = [b["slug"] for b in record["branches"]]
    if branch not in branches:
        raise ValueError(f"Demo experiment {slug!r} has no branch {branch!r}; its branches are {branches}.")
    column = METRIC_COLUMNS.get(metric)
    if column is None:
        return 0.0
    effects = PLANTED_EFFECTS.get(slug, {})
    reference = record["referenceBranch"] or branches[0]
    treated = effects.get(branch, {}).get(column, 1.0)
    baseline = effects.get(reference, {}).get(column, 1.0)
    return treated / baseline - 1.0


def write_experimenter_file(path: Path, today: date) -> Path:
    """Write the demo records as the JSON list the Experimenter resource reads (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(demo_experiments(today), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
