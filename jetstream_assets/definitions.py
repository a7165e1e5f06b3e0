"""The one Definitions object `dagster dev -w workspace.yaml` loads."""

from __future__ import annotations

import dagster as dg

from jetstream_assets.assets.enrollments import enrollments
from jetstream_assets.assets.exports import metadata_export, statistics_export
from jetstream_assets.assets.metrics import metrics
from jetstream_assets.assets.statistics import statistics
from jetstream_assets.partitions import ANALYSIS_PARTITIONS
from jetstream_assets.resources import build_resources

ANALYSIS_ASSETS = [enrollments, metrics, statistics, statistics_export, metadata_export]

analysis_job = dg.define_asset_job(
    "analysis",
    selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
    partitions_def=ANALYSIS_PARTITIONS,
    description="Enrollments, metrics, statistics and exports of (experiment, analysis date) cells.",
)


def build_definitions(home=None) -> dg.Definitions:
    return dg.Definitions(assets=ANALYSIS_ASSETS, jobs=[analysis_job], resources=build_resources(home))


defs = build_definitions()
