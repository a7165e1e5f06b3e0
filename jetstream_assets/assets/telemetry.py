"""The telemetry tables the analysis reads, as external assets: lineage in the UI starts at the data.

Nothing here materializes them: in production they are Mozilla's BigQuery tables (``mozdata.telemetry.*``,
kept by the telemetry pipeline), locally the demo's synthetic Parquet files under
``<home>/warehouse/telemetry/``. The names are the ones mozanalysis' enrollment query and the metric-hub
data sources use.
"""

from __future__ import annotations

import os

import dagster as dg

from jetstream_assets.resources import BIGQUERY_PROJECT

GROUP = "telemetry"
OWNERS = ["team:experimentation"]


def _engine_kind() -> str:
    """Where the tables are read from, decided like the warehouse (when the code location loads)."""
    return "bigquery" if os.environ.get(BIGQUERY_PROJECT, "").strip() else "duckdb"


def _spec(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=dg.AssetKey([GROUP, name]),
        group_name=GROUP,
        kinds={_engine_kind(), "table"},
        owners=OWNERS,
        description=description,
        metadata={
            "dagster/table_name": f"mozdata.{GROUP}.{name}",
            "local_file": f"<JETSTREAM_HOME>/warehouse/{GROUP}/{name}.parquet (demo: synthetic)",
        },
    )


telemetry_events = _spec(
    "events",
    "Firefox Desktop events, one row per event. Normandy `enroll`, `expose` and `unenroll` events here "
    "decide who is in an experiment, in which branch, and from when: the enrollments query reads them "
    "(event_category 'normandy', the experiment slug in event_string_value, the branch in event_map_values).",
)

clients_daily = _spec(
    "clients_daily",
    "One row per client and day the client was active, with that day's usage summed (active hours, URIs "
    "visited, searches, ad clicks, tabs opened, ...) and the client's environment. Most metrics of an "
    "analysis window sum or count these rows; segments such as country read it on the enrollment date.",
)

clients_last_seen = _spec(
    "clients_last_seen",
    "One row per client and day with the client's activity over the 28 days before it (days_seen_bits) "
    "and its user segments (regular, new or resurrected, activity segment). Retention and days-of-use "
    "metrics read it, and so do the segments the enrollments are split by.",
)

TELEMETRY_ASSETS = [telemetry_events, clients_daily, clients_last_seen]
# What each analysis asset reads: enrollments read enrollment events and the segments' tables, metrics every
# data source of the demo and default configs.
ENROLLMENTS_SOURCES = [telemetry_events.key, clients_daily.key, clients_last_seen.key]
METRICS_SOURCES = [clients_daily.key, clients_last_seen.key, telemetry_events.key]
