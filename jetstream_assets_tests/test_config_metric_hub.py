"""Loading metric-hub: the real sample, per-file error isolation, git commits and refs, caching."""

import subprocess
import time
from pathlib import Path

import pytest

from jetstream_assets.config import ConfigFileError, MetricHub, MetricHubError, load_metric_hub
from jetstream_assets.config.metric_hub import parse_folder

SAMPLE = Path("/work/shared/metric-hub-sample")

DEFINITIONS = """
[metrics.active_hours]
data_source = "clients_daily"
select_expression = "SUM(active_hours_sum)"

[metrics.uri_count]
data_source = "clients_daily"
select_expression = "SUM(uri_count)"

[data_sources.clients_daily]
from_expression = "mozdata.telemetry.clients_daily"
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.strip()


def test_sample_loads_completely_and_fast():
    start = time.perf_counter()
    loaded = parse_folder(SAMPLE, None)
    elapsed = time.perf_counter() - start
    print(f"metric-hub sample parsed in {elapsed:.2f}s, {len(loaded.file_errors)} file errors")
    files = list(SAMPLE.rglob("*.toml"))
    assert loaded.file_errors == []
    assert set(loaded.file_digests) == {f.relative_to(SAMPLE).as_posix() for f in files}
    configs = loaded.configs
    assert len(configs.configs) == len(list((SAMPLE / "jetstream").glob("*.toml")))
    assert len(configs.outcomes) == len(list((SAMPLE / "jetstream/outcomes").glob("*/*.toml")))
    assert {d.slug for d in configs.defaults} >= {"firefox_desktop", "fenix", "cfr_metrics"}
    # jetstream/definitions is merged over the top-level definitions of the same platform
    desktop = configs.get_platform_definitions("firefox_desktop")
    assert desktop is not None and "active_hours" in desktop.metrics.definitions
    assert set(configs.functions.functions) >= {"agg_sum", "agg_any", "agg_histogram_mean"}
    assert elapsed < 5


def test_load_is_cached_until_a_file_changes(tmp_path):
    write(tmp_path, {"definitions/firefox_desktop.toml": DEFINITIONS, "jetstream/a.toml": ""})
    first = load_metric_hub(tmp_path)
    assert load_metric_hub(tmp_path) is first
    assert first.commit is None  # not a git repository
    write(tmp_path, {"jetstream/b.toml": "[experiment]\nenrollment_period = 3\n"})
    second = load_metric_hub(tmp_path)
    assert second is not first
    assert {c.slug for c in second.configs.configs} == {"a", "b"}


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    write(tmp_path, {
        "definitions/firefox_desktop.toml": DEFINITIONS,
        "jetstream/good.toml": "[experiment]\nenrollment_period = 3\n",
        "jetstream/syntax.toml": "[experiment]\nenrollment_period = 3\n\n[metrics\nweekly = []\n",
        "jetstream/badspec.toml": "[experiment]\nstart_date = 'yesterday'\n",
        "jetstream/typo.toml": "[metrix]\nweekly = []\n",
    })
    loaded = parse_folder(tmp_path, None)
    errors = {e.path: e for e in loaded.file_errors}
    assert set(errors) == {"jetstream/syntax.toml", "jetstream/badspec.toml", "jetstream/typo.toml"}
    assert errors["jetstream/syntax.toml"].line == 4
    assert "TOML syntax error" in errors["jetstream/syntax.toml"].cause
    assert "start_date" in errors["jetstream/badspec.toml"].cause or "yesterday" in errors["jetstream/badspec.toml"].cause
    assert errors["jetstream/typo.toml"].field == "metrix"
    assert [c.slug for c in loaded.configs.configs] == ["good"]
    assert "jetstream/syntax.toml" in str(errors["jetstream/syntax.toml"])


def test_a_broken_shared_metric_drops_only_that_metric(tmp_path):
    broken = DEFINITIONS + """
[metrics.broken]
data_source = "clients_daily"
select_expression = "SUM(x)"
aggregation = "sum"
column = "x"
"""
    write(tmp_path, {"definitions/firefox_desktop.toml": broken})
    loaded = parse_folder(tmp_path, None)
    [err] = loaded.file_errors
    assert (err.path, err.field) == ("definitions/firefox_desktop.toml", "metrics.broken")
    assert err.line == broken.splitlines().index("[metrics.broken]") + 1
    metrics = loaded.configs.get_platform_definitions("firefox_desktop").metrics.definitions
    assert set(metrics) == {"active_hours", "uri_count"}


def test_git_commit_ref_snapshot_and_outcome_commits(tmp_path):
    repo = write(tmp_path / "hub", {
        "definitions/firefox_desktop.toml": DEFINITIONS,
        "jetstream/outcomes/firefox_desktop/o.toml": 'friendly_name = "O"\ndescription = "d"\n',
        "jetstream/exp.toml": "[experiment]\nenrollment_period = 3\n",
    })
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    first = git(repo, "rev-parse", "HEAD")
    write(repo, {"jetstream/exp.toml": "[experiment]\nenrollment_period = 9\n"})
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD")

    head = MetricHub(path=str(repo)).load()
    assert head.commit == second
    assert head.configs.spec_for_experiment("exp").experiment.enrollment_period == 9
    [outcome] = head.configs.outcomes
    assert outcome.commit_hash == first  # last commit that touched the outcome file

    old = MetricHub(path=str(repo), ref=first).load()
    assert old.commit == first
    assert old.configs.spec_for_experiment("exp").experiment.enrollment_period == 3
    assert git(repo, "rev-parse", "HEAD") == second  # the checkout was not touched
    assert MetricHub(path=str(repo), ref=first).commit() == first

    with pytest.raises(MetricHubError, match="no-such-branch"):
        MetricHub(path=str(repo), ref="no-such-branch").load()


def test_url_is_cloned_when_missing_and_refresh_fast_forwards(tmp_path):
    remote = write(tmp_path / "remote", {"definitions/firefox_desktop.toml": DEFINITIONS,
                                         "jetstream/exp.toml": "[experiment]\nenrollment_period = 3\n"})
    git(remote, "init", "-q", "-b", "main")
    git(remote, "add", ".")
    git(remote, "commit", "-qm", "one")
    hub = MetricHub(path=str(tmp_path / "clone"), url=str(remote))
    loaded = hub.load()
    assert loaded.commit == git(remote, "rev-parse", "HEAD")

    write(remote, {"jetstream/exp.toml": "[experiment]\nenrollment_period = 5\n"})
    git(remote, "commit", "-qam", "two")
    assert hub.load().commit == loaded.commit  # load() never fetches
    assert hub.refresh() == git(remote, "rev-parse", "HEAD")
    assert hub.load().configs.spec_for_experiment("exp").experiment.enrollment_period == 5


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(MetricHubError, match="MetricHub.path"):
        MetricHub(path=str(tmp_path / "nope")).load()


def test_config_file_error_is_plain_data():
    err = ConfigFileError("jetstream/x.toml", None, "TOML syntax error: boom", 3)
    assert str(err).startswith("jetstream/x.toml:3: TOML syntax error")
