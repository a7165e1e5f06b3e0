"""The engines behind the assets, chosen from the environment: everything lives under one home folder
locally (JETSTREAM_HOME, default ./.jetstream_home)."""

from __future__ import annotations

import os
from pathlib import Path

from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.store import LocalExportStore
from jetstream_assets.warehouse.local import LocalWarehouse

DEFAULT_HOME = ".jetstream_home"


def home_dir(home: str | os.PathLike | None = None) -> Path:
    return Path(home or os.environ.get("JETSTREAM_HOME", DEFAULT_HOME)).absolute()


def experimenter_file(home: Path) -> Path:
    return home / "experimenter" / "experiments.json"


def metric_hub_dir(home: Path) -> Path:
    return home / "metric-hub"


def build_resources(home: str | os.PathLike | None = None) -> dict:
    root = home_dir(home)
    return {
        "warehouse": LocalWarehouse(root=str(root / "warehouse")),
        "export_store": LocalExportStore(root=str(root / "exports")),
        "experimenter": Experimenter(
            url=os.environ.get("JETSTREAM_EXPERIMENTER_URL") or None,
            path=str(experimenter_file(root)),
        ),
        "metric_hub": MetricHub(
            path=str(metric_hub_dir(root)), url=os.environ.get("JETSTREAM_METRIC_HUB_URL") or None
        ),
    }
