"""Telemetry aggregates as daily-partitioned assets (the aggregates service's data, rebuilt as assets).

A partition is a submission date (from JETSTREAM_AGGREGATES_START_DATE, default 2015-01-01, to today
included). Materializing it aggregates that day's main pings (`payload_bytes_decoded.
telemetry_telemetry__main_v4`) into both families (`aggregates_by_submission_date`, `aggregates_by_build_id`),
each one table per submission date in the `telemetry_aggregates` dataset, replaced whole: a rerun gives the
same tables, and a backfill over a range of dates (from the UI or `materialize_aggregates`) is one run that
walks its dates in order. Probe definitions come from the run config's `probe_files`, else the home's
registry (`ProbeRegistry.for_home`).
"""

import datetime as dt
import os
from collections.abc import Iterable

import dagster as dg

from jetstream_assets.aggregates.compute import AGGREGATES_DATASET, COLUMNS, aggregate_and_store, table_name
from jetstream_assets.aggregates.probes import ProbeRegistry
from jetstream_assets.aggregates.source import PINGS_DATASET, PINGS_TABLE
from jetstream_assets.assets.common import OWNERS, code_version, md_table, warehouse_kind
from jetstream_assets.resources import home_dir
from jetstream_assets.warehouse.base import Warehouse

GROUP = "telemetry_aggregates"
START_DATE_ENV = "JETSTREAM_AGGREGATES_START_DATE"
PREVIEW_ROWS = 5
FAMILY_OF_ASSET = {"aggregates_by_submission_date": "submission_date", "aggregates_by_build_id": "build_id"}


DEFAULT_START_DATE = "2015-01-01"  # main pings (Telemetry v4) began in 2015


def aggregates_start_date() -> str:
    """First submission date the partitions offer: JETSTREAM_AGGREGATES_START_DATE, else 2015-01-01."""
    return os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE


# today included: pings keep arriving during the day, and a rerun replaces the day's tables
AGGREGATES_PARTITIONS = dg.DailyPartitionsDefinition(start_date=aggregates_start_date(), end_offset=1)


class AggregatesConfig(dg.Config):
    """Run configuration of the aggregates: probe definition files (probe-scraper JSON, Histograms.json,
    Scalars.yaml); empty reads the home's registry (JETSTREAM_PROBES, else <JETSTREAM_HOME>/probes/)."""

    probe_files: list[str] = []

# an external asset like the other telemetry tables (assets/telemetry.py)
main_pings = dg.AssetSpec(
    key=dg.AssetKey([PINGS_DATASET, PINGS_TABLE]),
    group_name="telemetry",  # beside the other telemetry tables the product reads
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    metadata={"dagster/table_name": f"moz-fx-data-shared-prod.{PINGS_DATASET}.{PINGS_TABLE}",
              "local_files": f"<JETSTREAM_HOME>/warehouse/{PINGS_DATASET}/{PINGS_TABLE}/part-*.parquet"},
    description=(
        f"{PINGS_DATASET}.{PINGS_TABLE}: decoded main pings, one row each (submission_timestamp, sample_id, "
        "normalized_channel, metadata.uri app name/version/build id, and the ping document as JSON text in "
        "`payload`). Loaded by `jetstream-assets aggregates load-pings` (the demo loads synthetic pings); "
        "in production Mozilla's table of the same name and shape."
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
def telemetry_aggregates(context: dg.AssetExecutionContext, config: AggregatesConfig, warehouse: Warehouse):
    selected = [k.to_user_string() for k in context.selected_asset_keys]
    families = tuple(FAMILY_OF_ASSET[name] for name in FAMILY_OF_ASSET if name in selected)
    per_date: dict[str, dict[str, int]] = {f: {} for f in families}
    previews: dict[str, object] = {}
    entries = 0
    unknown: set[str] = set()
    if not warehouse.table_exists(PINGS_TABLE, PINGS_DATASET):
        raise dg.Failure(
            f"No main pings to aggregate: {warehouse.table_ref(PINGS_TABLE, PINGS_DATASET)} does not exist. "
            "Load pings with `jetstream-assets aggregates load-pings FILE.jsonl` (the demo, `jetstream-assets "
            "demo`, loads synthetic ones); in production it is Mozilla's decoded main ping table."
        )
    registry = (ProbeRegistry.load(config.probe_files) if config.probe_files
                else ProbeRegistry.for_home(home_dir()))
    rejected: dict[str, int] = {}
    for key in context.partition_keys:
        day = dt.date.fromisoformat(key)
        result, written = aggregate_and_store(warehouse, day, families, registry)
        entries += result.entries
        unknown.update(result.unknown_metrics)
        for reason, n in result.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
        for family, rows in written.items():
            per_date[family][key] = rows
            if rows and family not in previews:
                frame = result.frames[family].head(PREVIEW_ROWS).copy()
                frame["histogram"] = [f"{len(h)} buckets" for h in frame["histogram"]]
                previews[family] = md_table(frame[list(COLUMNS)])
        context.log.info(
            f"{key}: {result.entries:,} histograms and values -> "
            + ", ".join(f"{table_name(f, day)} {n:,} rows" for f, n in written.items())
        )
    if unknown:
        context.log.warning("Probes without a definition or a layout in the pings were skipped: "
                            f"{', '.join(sorted(unknown))}")
    if rejected:
        context.log.warning("Pings skipped: " + "; ".join(f"{r} ({n:,})" for r, n in sorted(rejected.items())))
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
            "histograms_and_values": entries,
            "pings_skipped": dg.MetadataValue.json(rejected),
            "probe_definitions": len(registry),
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
    probe_files: Iterable[str] = (),
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
        run_config={
            **({"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if quiet else {}),
            "ops": {"telemetry_aggregates": {"config": {"probe_files": [str(p) for p in probe_files]}}},
        },
    )
