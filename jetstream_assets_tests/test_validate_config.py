"""validate-config on every experiment config of the real metric-hub sample (40 files).

The expected outcome of each file is asserted, with its reason class; the reasons were checked against
metric-config-parser's own resolution where it fails too (template, unknown metric / data source).
"""

from pathlib import Path

import pytest

from jetstream_assets.validation.report import (
    NO_STATISTICS,
    SQL,
    TEMPLATE,
    UNKNOWN_DATA_SOURCE,
    UNKNOWN_METRIC,
)
from jetstream_assets.validation import validate_configs

SAMPLE = Path("/work/shared/metric-hub-sample")

#: file -> problem kinds; every sample experiment config not listed here must validate.
INVALID = {
    # [parameters] of the experiment config are not merged by metric-config-parser (only an outcome's
    # are), so '{{ parameters.message_id }}' does not render: Jetstream fails the same way
    "account-spotlight-modal-english-holdback-esr": {TEMPLATE},
    "account-spotlight-modal-english-holdback": {TEMPLATE},
    "accounts-vpn-promotion": {TEMPLATE},
    # custom enrollment_query returns client_id, but mozanalysis' exposures join needs analysis_id
    "backgroundtaskmessage-notification-release-4pct-fr": {SQL},
    "pdfjs-feature-callout": {SQL},
    # data source urlbar_events_unnested_results is not defined in this slice of metric-hub
    "fakespot-in-suggest": {UNKNOWN_DATA_SOURCE},
    "sponsored-suggestion-placement-phase-2": {UNKNOWN_DATA_SOURCE, NO_STATISTICS},
    # metrics listed (or given statistics) but defined nowhere the config can see (some only in an
    # outcome the config does not use); some listed metrics have no statistics
    "impact-of-race-cache-with-network-feature": {UNKNOWN_METRIC},
    "shortcuts-visual-refresh": {UNKNOWN_METRIC},
    "speculative-connect-sockets-increased-population": {UNKNOWN_METRIC, NO_STATISTICS},
}
#: platforms inferred for configs that are not desktop's (the rest resolve as firefox_desktop)
PLATFORMS = {
    "android-private-window-visual-refresh": "fenix",
    "enhanced-cross-platform-suggest-android-relaunch": "fenix",
    "firefox-android-sponsored-shortcuts-experiment": "fenix",
    "sent-from-firefox-android-1-rollout": "fenix",
    "remove-all-cfrs": "fenix",  # its only setting is the `new_users` segment, defined for fenix
    "ios-sent-from-firefox-rollout-increase-to-5": "firefox_ios",
}


@pytest.fixture(scope="module")
def reports():
    files = sorted((SAMPLE / "jetstream").glob("*.toml"))
    assert len(files) == 40
    return {Path(r.path).stem: r for r in validate_configs(files, synthetic=True)}


def test_every_sample_experiment_config(reports):
    """One test (one xdist worker) so the 40-file sweep runs once."""
    outcome = {slug: r.kinds for slug, r in reports.items() if not r.valid}
    assert outcome == INVALID
    assert sum(r.valid for r in reports.values()) == 30
    # every valid config was resolved, built and dry-run (enrollments + metrics per basis)
    for slug, report in reports.items():
        assert report.kind == "experiment"
        assert report.platform == PLATFORMS.get(slug, "firefox_desktop"), slug
        if report.valid:
            assert report.dry_runs >= 2, slug
    # each problem names a file, a field and a cause; the custom enrollment query's one says what to do
    for report in reports.values():
        for problem in report.problems:
            assert problem.file and problem.field and problem.cause
    [enrollment] = reports["pdfjs-feature-callout"].problems
    assert enrollment.field == "experiment.enrollment_query"
    assert "client_id AS analysis_id" in enrollment.cause
    unknown = {p.cause.split("'")[1] for p in reports["impact-of-race-cache-with-network-feature"].problems}
    assert unknown == {"tls_successful_first_try_connections"}
    lines = {p.line for p in reports["fakespot-in-suggest"].problems}
    assert None not in lines  # problems point at the metric's table in the file
