"""The one Definitions object `dagster dev -w workspace.yaml` loads."""

from __future__ import annotations

import dagster as dg

from jetstream_assets.assets.aggregates import AGGREGATE_ASSETS, aggregates_job
from jetstream_assets.assets.monitoring import MONITORING_ASSETS
from jetstream_assets.assets.telemetry import TELEMETRY_ASSETS
from jetstream_assets.jobs import ANALYSIS_ASSETS, analysis_job, experimenter_snapshot_job
from jetstream_assets.resources import build_resources
from jetstream_assets.sensors.experimenter import experimenter_sensor
from jetstream_assets.sensors.metric_hub import metric_hub_sensor

SENSORS = [experimenter_sensor, metric_hub_sensor]


def build_definitions(home=None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*TELEMETRY_ASSETS, *ANALYSIS_ASSETS, *MONITORING_ASSETS, *AGGREGATE_ASSETS],
        jobs=[analysis_job, experimenter_snapshot_job, aggregates_job],
        sensors=SENSORS,
        resources=build_resources(home),
        # UI launches from an asset page use the implicit asset job: one process per run there too
        executor=dg.in_process_executor,
    )


defs = build_definitions()
