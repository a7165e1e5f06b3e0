"""The files a results page reads: statistics per period and the experiment's metadata."""


import datetime as dt

import dagster as dg
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.analysis import Cell
from jetstream_assets.assets.cells import noop, run_cells
from jetstream_assets.assets.common import ANALYSIS_ASSET_ARGS
from jetstream_assets.checks.exports import EXPORTED_PATHS, exports_check_specs, exports_checks
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.metadata import build_metadata
from jetstream_assets.exports.statistics import statistics_export as statistics_export_rows
from jetstream_assets.exports.store import ExportStore, metadata_path, statistics_path
from jetstream_assets.sql import names
from jetstream_assets.warehouse.base import Warehouse


def export_statistics(cell: Cell, warehouse: Warehouse, store: ExportStore) -> dict:
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closed on {cell.analysis_date}: nothing new to export.")
    files = {}
    paths = []
    for period in AnalysisPeriod:
        view = names.statistics_view(cell.slug, period)
        if not warehouse.table_exists(view):
            continue
        rows = warehouse.read_table(view)
        path = statistics_path(cell.slug, period.table_suffix)
        uri = store.write_json(path, statistics_export_rows(rows, slug=cell.slug, period=period.value))
        paths.append(path)
        files[period.table_suffix] = dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri)
    return {
        "files": len(files),
        **{f"export_{k}": v for k, v in files.items()},
        EXPORTED_PATHS: dg.MetadataValue.json(paths),  # what the exports_valid check reads back
    }


def export_metadata(cell: Cell, metric_hub: MetricHub, store: ExportStore) -> dict:
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closed on {cell.analysis_date}: metadata unchanged.")
    loaded = metric_hub.load()
    config_file = cell.resolved.config_file
    payload = build_metadata(
        cell.resolved.config,
        loaded.configs,
        analysis_start_time=dt.datetime.now(dt.timezone.utc),
        external_config_url=None,  # the schema wants an http(s) URL: metric-hub's file URL
        has_custom_config=config_file is not None,
        commit=cell.resolved.commit,
    )
    uri = store.write_json(metadata_path(cell.slug), payload)
    return {
        "file": dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri),
        "metrics": len(payload.get("metrics", {})),
        "outcomes": ", ".join(payload.get("outcomes", {})),
        "config_commit": cell.resolved.commit or "",
        EXPORTED_PATHS: dg.MetadataValue.json([metadata_path(cell.slug)]),
    }


@dg.asset(
    **ANALYSIS_ASSET_ARGS,
    group_name="exports",
    kinds={"json"},
    deps=["statistics"],
    check_specs=exports_check_specs("statistics_export"),
    description="statistics/statistics_<slug>_<period>.json: every window's statistics so far, per period.",
)
def statistics_export(
    context: dg.AssetExecutionContext,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    warehouse: Warehouse,
    export_store: ExportStore,
) -> dg.MaterializeResult:
    return run_cells(
        context,
        experimenter,
        metric_hub,
        lambda cell: export_statistics(cell, warehouse, export_store),
        checks=exports_checks(export_store),
    )


@dg.asset(
    **ANALYSIS_ASSET_ARGS,
    group_name="exports",
    kinds={"json"},
    deps=["statistics"],
    check_specs=exports_check_specs("metadata_export"),
    description="metadata/metadata_<slug>.json: metric descriptions, outcomes and config overrides.",
)
def metadata_export(
    context: dg.AssetExecutionContext,
    experimenter: Experimenter,
    metric_hub: MetricHub,
    export_store: ExportStore,
) -> dg.MaterializeResult:
    return run_cells(
        context,
        experimenter,
        metric_hub,
        lambda cell: export_metadata(cell, metric_hub, export_store),
        checks=exports_checks(export_store),
    )
