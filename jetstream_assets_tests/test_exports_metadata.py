"""The metadata export, built from configs resolved out of the metric-hub sample."""

import copy
import datetime as dt
import json
import os
import tomllib
from pathlib import Path

import pytest
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import LocalConfigCollection
from metric_config_parser.experiment import Branch, Experiment
from mozilla_nimbus_schemas.jetstream import Metadata

from jetstream_assets.exports import MetadataExportError, build_metadata, metadata_skip_reason

SAMPLE = Path(os.environ.get("METRIC_HUB_SAMPLE", "/work/shared/metric-hub-sample"))
CUSTOM_SLUG = "firefox-view-update-experiment"  # overrides start/end date and enrollment period
START = dt.datetime(2023, 10, 20, tzinfo=dt.UTC)
ANALYSIS_START = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def configs():
    collection = LocalConfigCollection.from_local_path(str(SAMPLE))  # shared definitions
    collection.merge(LocalConfigCollection.from_local_path(str(SAMPLE / "jetstream")))
    return collection


def experiment(slug: str, outcomes: list[str], app_name: str = "firefox_desktop") -> Experiment:
    return Experiment(
        experimenter_slug=None,
        normandy_slug=slug,
        type="v6",
        status="Live",
        branches=[Branch(slug="control", ratio=1), Branch(slug="treatment", ratio=1)],
        start_date=START,
        end_date=None,
        proposed_enrollment=14,
        reference_branch="control",
        is_high_population=False,
        app_name=app_name,
        outcomes=outcomes,
    )


def resolve(configs, exp: Experiment, *extra_specs: AnalysisSpec):
    # Resolution merges into the collection's outcome specs in place: resolve against a copy so the
    # collection handed to build_metadata still describes the outcome files.
    configs = copy.deepcopy(configs)
    spec = AnalysisSpec.default_for_experiment(exp, configs)
    custom = configs.spec_for_experiment(exp.normandy_slug)
    if custom is not None:
        spec.merge(custom)
    for extra in extra_specs:
        spec.merge(extra)
    return spec.resolve(exp, configs)


def outcome_file(platform: str, slug: str) -> dict:
    return tomllib.loads((SAMPLE / "jetstream" / "outcomes" / platform / f"{slug}.toml").read_text())


def test_custom_config_with_an_outcome(configs):
    # An inline addition to the custom config: a metric without friendly name or description.
    extra = AnalysisSpec.from_dict(
        {
            "metrics": {
                "weekly": ["my_custom_metric"],
                "my_custom_metric": {
                    "select_expression": "COUNT(*)",
                    "data_source": "clients_daily",
                    "statistics": {"bootstrap_mean": {}},
                },
            }
        }
    )
    config = resolve(configs, experiment(CUSTOM_SLUG, ["pdf"]), extra)
    meta = build_metadata(
        config,
        configs,
        analysis_start_time=ANALYSIS_START,
        external_config_url=None,
        has_custom_config=True,
        commit="ca1c86530207ee036625e5f31015c4d8b07bbefa",
    )
    Metadata.model_validate_json(json.dumps(meta))  # what Experimenter does
    assert meta["schema_version"] == 4
    assert meta["analysis_start_time"] == "2024-01-02 03:04:05+00:00"

    # Every metric of every period appears once, including the outcome's and the custom ones.
    expected_metrics = {s.metric.name for summaries in config.metrics.values() for s in summaries}
    assert set(meta["metrics"]) == expected_metrics
    pdf = outcome_file("firefox_desktop", "pdf")
    assert set(pdf["metrics"]) <= set(meta["metrics"])
    custom = meta["metrics"]["my_custom_metric"]
    assert custom == {
        "analysis_bases": ["enrollments", "exposures"],
        "bigger_is_better": True,
        "description": "",
        "friendly_name": "My Custom Metric",
    }

    assert list(meta["outcomes"]) == ["pdf"]
    assert meta["outcomes"]["pdf"] == {
        "slug": "pdf",
        "friendly_name": pdf["friendly_name"],
        "description": pdf["description"],
        "metrics": list(pdf["metrics"]),
        "default_metrics": [],
        # Configs read from a folder carry no commit per outcome: the resolved commit stands in.
        "commit_hash": "ca1c86530207ee036625e5f31015c4d8b07bbefa",
    }

    # Only what the custom config changes relative to Experimenter is reported.
    overrides = tomllib.loads((SAMPLE / "jetstream" / f"{CUSTOM_SLUG}.toml").read_text())["experiment"]
    assert meta["external_config"] == {
        "reference_branch": None,
        "end_date": overrides["end_date"],
        "start_date": overrides["start_date"],
        "enrollment_period": overrides["enrollment_period"],
        "skip": False,
        "url": f"https://github.com/mozilla/metric-hub/blob/main/jetstream/{CUSTOM_SLUG}.toml",
    }


def test_default_only_config(configs):
    config = resolve(configs, experiment("an-experiment-without-config", []))
    meta = build_metadata(
        config,
        configs,
        analysis_start_time=None,
        external_config_url=None,
        has_custom_config=False,
        commit=None,
    )
    Metadata.model_validate(meta)
    assert meta["external_config"] is None and meta["outcomes"] == {}
    assert meta["analysis_start_time"] is None
    defaults = tomllib.loads((SAMPLE / "jetstream" / "defaults" / "firefox_desktop.toml").read_text())
    default_names = {
        name for key, names in defaults["metrics"].items() if isinstance(names, list) for name in names
    }
    assert set(meta["metrics"]) == default_names
    # Configured friendly names and descriptions win over the derived ones.
    metric = next(s.metric for s in config.metrics[next(iter(config.metrics))])
    assert meta["metrics"][metric.name]["friendly_name"] == (metric.friendly_name or metric.name.replace("_", " ").title())


def test_outcome_is_looked_up_for_the_experiments_platform(configs):
    # sponsored_tiles exists for firefox_desktop, fenix and firefox_ios with different metrics.
    config = resolve(configs, experiment("an-experiment-without-config", ["sponsored_tiles"]))
    meta = build_metadata(
        config, configs, analysis_start_time=ANALYSIS_START, external_config_url=None,
        has_custom_config=False, commit=None,
    )
    desktop = outcome_file("firefox_desktop", "sponsored_tiles")
    assert meta["outcomes"]["sponsored_tiles"]["metrics"] == list(desktop["metrics"])
    assert meta["outcomes"]["sponsored_tiles"]["metrics"] != list(outcome_file("fenix", "sponsored_tiles")["metrics"])
    assert meta["outcomes"]["sponsored_tiles"]["commit_hash"] is None


def test_custom_config_that_overrides_nothing_has_no_external_config(configs):
    spec = AnalysisSpec.from_dict({"metrics": {"weekly": ["active_hours"]}})
    config = resolve(configs, experiment("an-experiment-without-config", []), spec)
    meta = build_metadata(
        config, configs, analysis_start_time=ANALYSIS_START, external_config_url=None,
        has_custom_config=True, commit=None,
    )
    assert meta["external_config"] is None


def test_external_config_url_is_used_and_must_be_http(configs):
    config = resolve(configs, experiment(CUSTOM_SLUG, []))
    url = "https://example.org/metric-hub/blob/abc123/jetstream/firefox-view-update-experiment.toml"
    meta = build_metadata(
        config, configs, analysis_start_time=ANALYSIS_START, external_config_url=url,
        has_custom_config=True, commit="abc123",
    )
    assert meta["external_config"]["url"] == url
    config = resolve(configs, experiment(CUSTOM_SLUG, []))
    with pytest.raises(MetadataExportError, match=rf"'{CUSTOM_SLUG}'.*external_config.url.*http"):
        build_metadata(
            config, configs, analysis_start_time=ANALYSIS_START,
            external_config_url="/home/me/metric-hub/jetstream/x.toml", has_custom_config=True, commit=None,
        )


def test_private_experiments_are_not_published(configs):
    spec = AnalysisSpec.from_dict({"experiment": {"is_private": True, "dataset_id": "private_results"}})
    config = resolve(configs, experiment("an-experiment-without-config", []), spec)
    assert "private" in metadata_skip_reason(config)
    assert metadata_skip_reason(resolve(configs, experiment("an-experiment-without-config", []))) is None
