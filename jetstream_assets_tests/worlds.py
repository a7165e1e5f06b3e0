"""Small demo worlds for pipeline tests: telemetry, an Experimenter file, a metric-hub repo, an instance."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from jetstream_assets.definitions import build_definitions
from jetstream_assets.demo.config_repo import create_config_repo
from jetstream_assets.demo.experiments import demo_experiments, write_experimenter_file
from jetstream_assets.demo.telemetry import generate_telemetry
from jetstream_assets.resources import build_resources, experimenter_file, metric_hub_dir
from jetstream_assets.runner import RunSummary, run_experiment
from jetstream_assets.windows import rerun_dates

TODAY = dt.date(2026, 11, 24)


@dataclass
class World:
    home: Path
    experiments: list[dict]
    instance: dg.DagsterInstance
    defs: dg.Definitions
    resources: dict
    summary: RunSummary | None = None
    extra: dict = field(default_factory=dict)

    @property
    def warehouse(self):
        return self.resources["warehouse"]


@contextlib.contextmanager
def build_world(home: Path, clients: int):
    # production engines are chosen from the environment: a world is always local
    production = [k for k in os.environ if k.startswith(("JETSTREAM_BIGQUERY_", "JETSTREAM_GCS_"))]
    production += ["JETSTREAM_EXPERIMENTER_URL", "JETSTREAM_METRIC_HUB_URL"]
    previous = {k: os.environ.get(k) for k in ("JETSTREAM_TODAY", "JETSTREAM_HOME", *production)}
    for key in production:
        os.environ.pop(key, None)
    os.environ["JETSTREAM_TODAY"] = TODAY.isoformat()
    os.environ["JETSTREAM_HOME"] = str(home)
    try:
        experiments = demo_experiments(TODAY)
        write_experimenter_file(experimenter_file(home), TODAY)
        create_config_repo(metric_hub_dir(home))
        generate_telemetry(home / "warehouse", clients=clients, today=TODAY, experiments=experiments)
        with dg.instance_for_test() as instance:
            yield World(home, experiments, instance, build_definitions(home), build_resources(home))
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def demo_environment(home: Path) -> dict[str, str]:
    """The process environment of a local demo home: no production engine, "today" pinned to TODAY."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JETSTREAM_BIGQUERY_", "JETSTREAM_GCS_"))
           and k not in ("JETSTREAM_EXPERIMENTER_URL", "JETSTREAM_METRIC_HUB_URL", "JETSTREAM_START_DATE")}
    env.update(JETSTREAM_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), JETSTREAM_TODAY=TODAY.isoformat())
    return env


@contextlib.contextmanager
def demo_files(home: Path, clients: int):
    """A demo home's Experimenter file, metric-hub repository and telemetry, with the process environment
    of the home (demo_environment) set while it is in use; yields (environment, Experimenter records)."""
    import pytest

    env = demo_environment(home)
    experiments = demo_experiments(TODAY)
    with pytest.MonkeyPatch.context() as mp:
        for key in set(os.environ) - set(env):
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        write_experimenter_file(experimenter_file(home), TODAY)
        create_config_repo(metric_hub_dir(home))
        generate_telemetry(home / "warehouse", clients=clients, today=TODAY, experiments=experiments)
        yield env, experiments


def drop_enrollments(events_file, slug: str, branch: str | None, keep_every: int | None) -> int:
    """Drop `slug`'s enroll events (of `branch`, or all; keeping every `keep_every`-th) from the telemetry."""
    table = pq.read_table(events_file)
    events = table.select(["event_method", "event_string_value", "event_map_values"]).to_pandas()
    branches = events["event_map_values"].map(lambda pairs: dict(pairs).get("branch"))
    hit = (events["event_method"] == "enroll") & (events["event_string_value"] == slug)
    if branch is not None:
        hit &= branches == branch
    if keep_every:
        hit &= pd.Series(range(len(events))) % keep_every != 0
    pq.write_table(table.filter(pd.Series(~hit).to_numpy()), events_file)
    return int(hit.sum())


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (for servers the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: World, slug: str, dates: list[dt.date] | None = None) -> RunSummary:
    if dates is None:
        record = next(e for e in world.experiments if e["slug"] == slug)
        end = dt.date.fromisoformat(record["endDate"]) if record.get("endDate") else None
        dates = rerun_dates(dt.date.fromisoformat(record["startDate"]), end, TODAY)
    return run_experiment(world.instance, world.defs, slug, dates)


def write_hub(root: Path, files: dict[str, str]) -> Path:
    """A small metric-hub under `root`: the sample's Jinja functions plus `files` (path -> TOML, dedented)."""
    import textwrap

    sample = Path("/work/shared/metric-hub-sample/definitions/functions.toml")
    for rel, text in {"definitions/functions.toml": sample.read_text(), **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    return root
