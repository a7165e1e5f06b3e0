"""The jobs sensors, the CLI and the UI launch (kept apart from definitions.py so sensors can name them)."""

from __future__ import annotations

import dagster as dg

from jetstream_assets.assets.enrollments import enrollments
from jetstream_assets.assets.exports import metadata_export, statistics_export
from jetstream_assets.assets.metrics import metrics
from jetstream_assets.assets.plan import analysis_plan
from jetstream_assets.assets.statistics import statistics
from jetstream_assets.partitions import ANALYSIS_PARTITIONS

ANALYSIS_ASSETS = [analysis_plan, enrollments, metrics, statistics, statistics_export, metadata_export]

analysis_job = dg.define_asset_job(
    "analysis",
    selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
    partitions_def=ANALYSIS_PARTITIONS,
    # one process per run: the plan made by the analysis_plan step serves every later step
    executor_def=dg.in_process_executor,
    description=(
        "The plan, enrollments, metrics, statistics and exports of (experiment, analysis date) cells; what the "
        "sensors and the CLI launch. To backfill an experiment's dates from the UI, use an asset's "
        "Materialize (Catalog or lineage): a backfill launched from this job's page is refused by its "
        "first step, as Dagster would run only its first cell (dagster-io/dagster#17404)."
    ),
)

experimenter_snapshot_job = dg.define_asset_job(
    "experimenter_snapshot",
    selection=dg.AssetSelection.assets("experimenter_experiments"),
    description="The Experimenter snapshot table (monitoring.experimenter_experiments).",
)
