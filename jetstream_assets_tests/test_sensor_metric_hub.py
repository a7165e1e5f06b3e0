"""The metric-hub sensor reruns exactly the experiments a commit changes, across ticks and commit kinds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import write_experimenter_file
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.partitions import EXPERIMENTS
from jetstream_assets.run_tags import COMMIT_TAG, RERUN_TAG
from jetstream_assets.sensors.metric_hub import metric_hub_sensor

from .worlds import TODAY

ANALYSED = ["demo-complete", "demo-live", "demo-custom"]


def _commit(repo: Path, path: str, old: str, new: str, message: str) -> str:
    file = repo / path
    text = file.read_text()
    assert old in text, f"test edit: {old!r} not in {path}"
    file.write_text(text.replace(old, new, 1))
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", message], check=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("JETSTREAM_TODAY", TODAY.isoformat())
    repo = tmp_path / "metric-hub"
    create_config_repo(repo)
    write_experimenter_file(tmp_path / "experiments.json", TODAY)
    resources = {
        "experimenter": Experimenter(path=str(tmp_path / "experiments.json")),
        "metric_hub": MetricHub(path=str(repo)),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(EXPERIMENTS.name, ANALYSED)
        yield repo, resources, instance


def tick(instance, resources, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = metric_hub_sensor(context)
        new_cursor = context.cursor
    if isinstance(result, dg.SensorResult):
        new_cursor = result.cursor
        return result.run_requests or [], new_cursor, None
    return [], new_cursor, result.skip_message


def by_slug(requests) -> dict[str, dg.RunRequest]:
    return {r.tags["jetstream/experiment"]: r for r in requests}


def test_first_tick_sets_the_baseline_and_no_commit_skips(setup):
    repo, resources, instance = setup
    requests, cursor, skip = tick(instance, resources, None)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert requests == [] and json.loads(cursor) == {"commit": head}
    assert "Watching metric-hub" in skip
    requests, cursor2, skip = tick(instance, resources, cursor)
    assert requests == [] and cursor2 == cursor and "No new metric-hub commit" in skip


# (file, old text, new text, {slug: "analysis" | "presentation"} that must rerun)
CHANGES = {
    "experiment config": (
        "jetstream/demo-custom.toml", "fraction = 0.999", "fraction = 0.99", {"demo-custom": "analysis"}),
    "platform defaults": (
        "jetstream/defaults/firefox_desktop.toml", 'daily = ["active_hours", "retained"]',
        'daily = ["active_hours", "retained", "days_of_use"]',
        {s: "analysis" for s in ANALYSED}),
    "outcome": (
        "jetstream/outcomes/firefox_desktop/demo_engagement.toml",
        "[metrics.searches_with_ads.statistics.bootstrap_mean]",
        "[metrics.searches_with_ads.statistics.bootstrap_mean]\n[metrics.searches_with_ads.statistics.deciles]",
        {"demo-custom": "analysis"}),
    "definition used (metric of an outcome)": (
        "definitions/firefox_desktop.toml", 'agg_sum("search_with_ads_count_all")',
        'agg_sum("search_with_ads_count_all") + 0', {"demo-custom": "analysis"}),
    "definition used (segment)": (
        "definitions/firefox_desktop.toml", 'agg_any("is_regular_user_v3")', 'agg_any("NOT is_regular_user_v3")',
        {"demo-custom": "analysis"}),
    "definition used (Jinja function)": (
        "definitions/functions.toml", "SUM(", "SUM(1 * ", {s: "analysis" for s in ANALYSED}),
    "comment only": (
        "definitions/firefox_desktop.toml", "[segments.regular_users_v3]\n",
        "[segments.regular_users_v3]\n# a comment changes the file, not the analysis\n", {}),
    "definition unused": (
        "definitions/firefox_desktop.toml", "COALESCE(LOGICAL_OR(is_default_browser), FALSE)",
        "COALESCE(LOGICAL_OR(is_default_browser), TRUE)", {}),
    "description only": (
        "definitions/firefox_desktop.toml", 'friendly_name = "Active hours"', 'friendly_name = "Hours active"',
        {s: "presentation" for s in ANALYSED}),
}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_each_kind_of_commit_reruns_exactly_the_experiments_it_changes(setup, kind):
    repo, resources, instance = setup
    _, cursor, _ = tick(instance, resources, None)
    path, old, new, expected = CHANGES[kind]
    sha = _commit(repo, path, old, new, kind)

    requests, new_cursor, skip = tick(instance, resources, cursor)

    assert json.loads(new_cursor) == {"commit": sha}
    got = by_slug(requests)
    assert set(got) == set(expected), f"{kind}: reran {sorted(got)}, expected {sorted(expected)}"
    for slug, what in expected.items():
        request = got[slug]
        assert request.tags[COMMIT_TAG] == sha
        assert path in request.tags["jetstream/reason"]
        if what == "analysis":
            assert request.tags[RERUN_TAG] == "full" and request.asset_selection is None
            start = request.tags["dagster/asset_partition_range_start"]
            assert start.endswith(slug) and start < request.tags["dagster/asset_partition_range_end"]
        else:  # descriptions: only the metadata export, one date, nothing recomputed
            assert RERUN_TAG not in request.tags
            assert request.asset_selection == [dg.AssetKey("metadata_export")]
            assert request.tags["dagster/asset_partition_range_start"] == request.tags["dagster/asset_partition_range_end"]
    if not expected:
        assert "changes no analysed experiment" in skip


def test_several_commits_in_one_tick_are_united_and_tagged_with_the_head(setup):
    repo, resources, instance = setup
    _, cursor, _ = tick(instance, resources, None)
    first = _commit(repo, *CHANGES["experiment config"][:3], "one")
    head = _commit(repo, *CHANGES["definition unused"][:3], "two")
    requests, new_cursor, _ = tick(instance, resources, cursor)
    assert set(by_slug(requests)) == {"demo-custom"}
    request = by_slug(requests)["demo-custom"]
    assert request.tags[COMMIT_TAG] == head and first[:8] in request.tags["jetstream/reason"]
    assert json.loads(new_cursor) == {"commit": head}


def test_experimenter_down_keeps_the_cursor_so_the_next_tick_catches_up(setup, tmp_path):
    repo, resources, instance = setup
    _, cursor, _ = tick(instance, resources, None)
    _commit(repo, *CHANGES["experiment config"][:3], "one")
    broken = dict(resources, experimenter=Experimenter(path=str(tmp_path / "missing.json")))
    requests, same_cursor, skip = tick(instance, broken, cursor)
    assert requests == [] and same_cursor == cursor and "Experimenter unavailable" in skip
    requests, _, _ = tick(instance, resources, same_cursor)
    assert set(by_slug(requests)) == {"demo-custom"}


def test_a_folder_that_is_not_a_git_checkout_is_reported_not_crashed(setup, tmp_path):
    _, resources, instance = setup
    folder = tmp_path / "plain"
    folder.mkdir()
    requests, _, skip = tick(instance, dict(resources, metric_hub=MetricHub(path=str(folder))), None)
    assert requests == [] and "not a git checkout" in skip
