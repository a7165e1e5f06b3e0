"""Telemetry aggregates as daily-partitioned assets (the aggregates service's data, rebuilt as assets).

A partition is a submission date. Materializing it aggregates that day's main pings into both families
(`aggregates_by_submission_date`, `aggregates_by_build_id`), each one table per submission date in the
`telemetry_aggregates` dataset, replaced whole: a rerun gives the same tables, and a backfill over a range
of dates (from the UI or `materialize_aggregates`) is one run that walks its dates in order.
"""

import datetime as dt
import os
from collections.abc import Iterable

import dagster as dg

from jetstream_assets.aggregates.compute import AGGREGATES_DATASET, COLUMNS, aggregate_and_store, table_name
from jetstream_assets.aggregates.pings import PINGS_DATASET, PINGS_TABLE
from jetstream_assets.assets.common import OWNERS, code_version, md_table, warehouse_kind
from jetstream_assets.partitions import start_date as analysis_start_date
from jetstream_assets.warehouse.base import Warehouse

GROUP = "telemetry_aggregates"
START_DATE_ENV = "JETSTREAM_AGGREGATES_START_DATE"
PREVIEW_ROWS = 5
FAMILY_OF_ASSET = {"aggregates_by_submission_date": "submission_date", "aggregates_by_build_id": "build_id"}


def aggregates_start_date() -> str:
    """First submission date the partitions offer: JETSTREAM_AGGREGATES_START_DATE, else the analysis start."""
    return os.environ.get(START_DATE_ENV) or analysis_start_date()


AGGREGATES_PARTITIONS = dg.DailyPartitionsDefinition(start_date=aggregates_start_date())

# keyed and grouped like the other telemetry tables (assets/telemetry.py)
main_pings = dg.AssetSpec(
    key=dg.AssetKey([PINGS_DATASET, PINGS_TABLE]),
    group_name=PINGS_DATASET,
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    metadata={"local_file": f"<JETSTREAM_HOME>/warehouse/{PINGS_DATASET}/{PINGS_TABLE}.parquet (demo: synthetic)"},
    description=(
        f"{PINGS_DATASET}.{PINGS_TABLE}: main pings flattened to one row per (ping, process, probe, key) with "
        "the ping's channel, version, build id, application, architecture and OS. Written by the demo "
        "(synthetic pings); in production a view over the main ping table in the same shape."
    ),
)

_COMMON = dict(
    group_name=GROUP,
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    deps=[main_pings],
    # a new aggregation or probe definition marks older materializations as made by older code
    code_version=code_version("assets/aggregates.py", "aggregates"),
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "aggregates_by_submission_date",
            description=(
                "Histogram aggregates per (submission date, channel, version, metric, application, architecture, "
                "os, osVersion, label, child) with count, sum and bucket counts: "
                f"{AGGREGATES_DATASET}.submission_date_<YYYYMMDD>, one table per submission date."
            ),
            **_COMMON,
        ),
        dg.AssetSpec(
            "aggregates_by_build_id",
            description=(
                "Histogram aggregates per (build date, channel, version, metric, ...) of the pings submitted on "
                f"the partition's date: {AGGREGATES_DATASET}.build_id_<YYYYMMDD>; a build date's aggregates add "
                "up over the submission dates its pings arrived on."
            ),
            **_COMMON,
        ),
    ],
    partitions_def=AGGREGATES_PARTITIONS,
    # a backfill over many dates is one run, not one process per date
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def telemetry_aggregates(context: dg.AssetExecutionContext, warehouse: Warehouse):
    selected = [k.to_user_string() for k in context.selected_asset_keys]
    families = tuple(FAMILY_OF_ASSET[name] for name in FAMILY_OF_ASSET if name in selected)
    per_date: dict[str, dict[str, int]] = {f: {} for f in families}
    previews: dict[str, object] = {}
    entries = 0
    unknown: set[str] = set()
    if not warehouse.table_exists(PINGS_TABLE, PINGS_DATASET):
        raise dg.Failure(
            f"No main pings to aggregate: {warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)} does not exist. "
            "The demo writes synthetic pings (`jetstream-assets demo`, or "
            "jetstream_assets.aggregates.pings.write_demo_pings); in production it is the flattened main ping view."
        )
    for key in context.partition_keys:
        day = dt.date.fromisoformat(key)
        result, written = aggregate_and_store(warehouse, day, families)
        entries += result.entries
        unknown.update(result.unknown_metrics)
        for family, rows in written.items():
            per_date[family][key] = rows
            if rows and family not in previews:
                frame = result.frames[family].head(PREVIEW_ROWS).copy()
                frame["histogram"] = [f"{len(h)} buckets" for h in frame["histogram"]]
                previews[family] = md_table(frame[list(COLUMNS)])
        context.log.info(
            f"{key}: {result.entries:,} ping entries -> "
            + ", ".join(f"{table_name(f, day)} {n:,} rows" for f, n in written.items())
        )
    if unknown:
        context.log.warning(f"Probes without a definition were skipped: {', '.join(sorted(unknown))}")
    for name, family in FAMILY_OF_ASSET.items():
        if family not in families:
            continue
        counts = per_date[family]
        metadata = {
            "dataset": AGGREGATES_DATASET,
            "tables": dg.MetadataValue.json([table_name(family, dt.date.fromisoformat(k)) for k in counts]),
            # one partition: its row count; a range: the run's total (the same metadata lands on each date)
            ("dagster/row_count" if len(counts) == 1 else "rows_in_run"): sum(counts.values()),
            "rows_per_date": dg.MetadataValue.json(counts),
            "ping_entries": entries,
            "dates_without_pings": dg.MetadataValue.json([k for k, n in counts.items() if n == 0]),
            "metrics_without_definition": dg.MetadataValue.json(sorted(unknown)),
        }
        if family in previews:
            metadata["preview"] = previews[family]
        yield dg.MaterializeResult(asset_key=name, metadata=metadata)


AGGREGATE_ASSETS = [main_pings, telemetry_aggregates]

aggregates_job = dg.define_asset_job(
    "aggregates",
    selection=dg.AssetSelection.assets(telemetry_aggregates),
    partitions_def=AGGREGATES_PARTITIONS,
    description="Telemetry aggregates (both families) of submission dates; select a range to backfill.",
)


def materialize_aggregates(
    dates: Iterable[dt.date],
    warehouse: Warehouse,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    quiet: bool = False,
) -> dg.ExecuteInProcessResult:
    """Aggregate a contiguous range of submission dates in one run (what a UI backfill does).

    `quiet` keeps the run's console log to warnings (the demo and the bench print their own progress).
    """
    days = sorted(set(dates))
    if not days:
        raise ValueError("materialize_aggregates needs at least one date.")
    if (days[-1] - days[0]).days + 1 != len(days):
        raise ValueError(f"materialize_aggregates needs contiguous dates (got {days[0]} .. {days[-1]} with gaps); "
                         "call it once per contiguous range.")
    return dg.materialize(
        [telemetry_aggregates],
        resources={"warehouse": warehouse},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        },
        raise_on_error=raise_on_error,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if quiet else None,
    )
