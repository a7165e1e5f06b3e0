"""The files a results page reads: statistics per period and the experiment's metadata, and our own
self-contained HTML results report (reports/<slug>.html), refreshed with the statistics."""


import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import dagster as dg
from metric_config_parser.metric import AnalysisPeriod

from jetstream_assets.planner import Cell, Planner
from jetstream_assets.assets.cells import Compute, StepCompute, StepResources, analysis_asset, noop
from jetstream_assets.assets.common import code_version, export_kind
from jetstream_assets.checks.enrollments import branch_clients
from jetstream_assets.checks.exports import EXPORTED_PATHS, exports_check_specs, exports_checks
from jetstream_assets.config.metric_hub import MetricHub
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.exports.metadata import build_metadata
from jetstream_assets.exports.report import Timeline, build_report, configured_methods, failure_page, with_log_fields
from jetstream_assets.exports.statistics import statistics_export as statistics_export_rows
from jetstream_assets.exports.store import (
    ExportStore,
    errors_path,
    metadata_path,
    report_path,
    statistics_path,
)
from jetstream_assets.monitoring import experiment_log_rows
from jetstream_assets.partitions import cell_key, parse_key
from jetstream_assets.sql import names
from jetstream_assets.warehouse.base import Warehouse

logger = logging.getLogger("jetstream_assets")


def _link(uri: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri)


def metadata_payload(cell: Cell, metric_hub: MetricHub) -> dict[str, Any]:
    """The content of metadata/metadata_<slug>.json for the cell's resolved config."""
    return build_metadata(
        cell.resolved.config,
        metric_hub.load().configs,
        analysis_start_time=dt.datetime.now(dt.timezone.utc),
        external_config_url=None,  # the schema wants an http(s) URL: metric-hub's file URL
        has_custom_config=cell.resolved.config_file is not None,
        commit=cell.resolved.commit,
    )


def _enrolled(cell: Cell, warehouse: Warehouse) -> tuple[dict[str, int], dict[str, int]]:
    """Enrolled and exposed clients per branch, from the experiment's enrollments table."""
    table = names.enrollments_table(cell.slug)
    if not warehouse.table_exists(table):
        return {}, {}
    counts = warehouse.query(
        f"SELECT branch, COUNT(*) AS clients, COUNT(exposure_date) AS exposed "
        f"FROM `{warehouse.table_ref(table)}` GROUP BY branch ORDER BY branch"
    )
    return branch_clients(counts), branch_clients(counts[["branch"]].assign(clients=counts["exposed"]))


def write_report(
    cell: Cell,
    statistics: dict[str, list[dict]],
    warehouse: Warehouse,
    store: ExportStore,
    metric_hub: MetricHub,
    experiment_record: dict | None = None,
) -> str:
    """Build and write reports/<slug>.html from this cell's exports and Experimenter record; returns its URI."""
    try:
        metadata = metadata_payload(cell, metric_hub)
    except Exception as e:  # noqa: BLE001 - the report still shows results, with default names
        logger.warning(f"Results report of {cell.slug}: metric names and directions unavailable: {e}",
                       extra={"experiment": cell.slug})
        metadata = store.read_json(metadata_path(cell.slug)) if store.exists(metadata_path(cell.slug)) else None
    enrolled, exposed = _enrolled(cell, warehouse)
    errors = store.read_json(errors_path(cell.slug)) if store.exists(errors_path(cell.slug)) else []
    errors = with_log_fields(errors, experiment_log_rows(warehouse, cell.slug).to_dict("records"))  # + windows
    end = cell.resolved.config.experiment.end_date  # with the config's override, as the windows use
    html = build_report(
        cell.slug,
        statistics=statistics,
        metadata=metadata,
        enrollments=enrolled,
        exposures=exposed,
        ratios={b.slug: b.ratio for b in cell.experiment.branches},
        reference_branch=cell.resolved.config.experiment.reference_branch,
        errors=errors,
        methods=configured_methods(cell.resolved.config.metrics, statistics),
        experiment=experiment_record,
        timeline=Timeline(cell.start_date, cell.enrollment_period, end.date() if end else None),
        analysis_date=cell.analysis_date,
        config_commit=cell.resolved.commit,
    )
    return store.write_text(report_path(cell.slug), html)


def _exported_periods(cell: Cell, warehouse: Warehouse) -> list[AnalysisPeriod]:
    """The periods whose statistics view the experiment has: one statistics file each."""
    return [p for p in AnalysisPeriod if warehouse.table_exists(names.statistics_view(cell.slug, p))]


def export_statistics(
    cell: Cell, warehouse: Warehouse, store: ExportStore, metric_hub: MetricHub | None = None,
    experimenter: Experimenter | None = None,
) -> dict:
    """Write every statistics view of the experiment as its export, then (with `metric_hub`) the report."""
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closed on {cell.analysis_date}: nothing new to export.")
    files = {}
    paths = []
    exported: dict[str, list[dict]] = {}
    for period in _exported_periods(cell, warehouse):
        view = names.statistics_view(cell.slug, period)
        rows = statistics_export_rows(warehouse.read_table(view), slug=cell.slug, period=period.value)
        path = statistics_path(cell.slug, period.table_suffix)
        uri = store.write_json(path, rows)
        exported[period.value] = rows
        paths.append(path)
        files[period.table_suffix] = _link(uri)
    metadata: dict[str, Any] = {}
    if metric_hub is not None:
        try:
            record = experimenter.record(cell.slug) if experimenter is not None else None
            metadata["report"] = _link(write_report(cell, exported, warehouse, store, metric_hub, record))
        except Exception as e:  # noqa: BLE001 - the statistics files are written; the report says nothing wrong
            logger.error(f"Results report of {cell.slug} not written: {e}", exc_info=True,
                         extra={"experiment": cell.slug})
            try:  # never leave an older report in place as if it were current
                store.write_text(report_path(cell.slug), failure_page(cell.slug, str(e), cell.analysis_date))
            except Exception as e2:  # noqa: BLE001
                logger.error(f"Results report of {cell.slug}: the stale report could not be replaced: {e2}",
                             extra={"experiment": cell.slug})
            metadata["report_error"] = str(e)
    return {
        "files": len(files),
        **metadata,
        **{f"export_{k}": v for k, v in files.items()},
        EXPORTED_PATHS: dg.MetadataValue.json(paths),  # what the exports_valid check reads back
    }


def export_metadata(cell: Cell, metric_hub: MetricHub, store: ExportStore) -> dict:
    if not cell.windows:
        return noop(f"No analysis window of {cell.slug} closed on {cell.analysis_date}: metadata unchanged.")
    payload = metadata_payload(cell, metric_hub)
    uri = store.write_json(metadata_path(cell.slug), payload)
    return {
        "file": _link(uri),
        "metrics": len(payload.get("metrics", {})),
        "outcomes": ", ".join(payload.get("outcomes", {})),
        "config_commit": cell.resolved.commit or "",
        EXPORTED_PATHS: dg.MetadataValue.json([metadata_path(cell.slug)]),
    }


def deferred_export(cell: Cell, writer: str, store: ExportStore, warehouse: Warehouse) -> dict:
    """An earlier cell of a run that also exports a later date of the same experiment.

    Each statistics file holds every window of the experiment's statistics views, so every cell of one run
    would write the same files (the statistics step has already written all of the run's windows): the
    experiment's last cell in the step (`writer`) writes them once, with the report. This cell records the
    same files, and its exports_valid check reads them back after the writer wrote them. If the writer
    fails, the step fails naming it (and its run ends FAILURE); rerunning that cell writes the files."""
    periods = _exported_periods(cell, warehouse)
    paths = [statistics_path(cell.slug, p.table_suffix) for p in periods]
    return {
        "files": len(paths),
        "written_by": writer,
        "report": _link(store.uri(report_path(cell.slug))),
        **{f"export_{p.table_suffix}": _link(store.uri(path)) for p, path in zip(periods, paths)},
        EXPORTED_PATHS: dg.MetadataValue.json(paths),
    }


def deferred_metadata(cell: Cell, writer: str, store: ExportStore) -> dict:
    """An earlier cell of a run whose experiment's metadata file a later cell writes (the run resolves the
    config once, so every cell would write the same metadata, only with a later analysis_start_time)."""
    return {
        "file": _link(store.uri(metadata_path(cell.slug))),
        "written_by": writer,
        "config_commit": cell.resolved.commit or "",
        EXPORTED_PATHS: dg.MetadataValue.json([metadata_path(cell.slug)]),
    }


def once_per_experiment(write: Compute, deferred: Callable[[Cell, str, StepResources], dict]) -> StepCompute:
    """The compute of an export step whose files an experiment's last cell in the step with a window writes
    (`write`); its earlier cells (`deferred`) record the same files and which cell wrote them."""

    def step(planner: Planner, r: StepResources, keys: list) -> Compute:
        writers: dict[str, str] = {}
        for key in keys:  # in date order
            plan = planner.plan(*parse_key(key))
            if isinstance(plan, Cell) and plan.windows:
                writers[plan.slug] = str(key)

        def compute(cell: Cell, r: StepResources) -> dict:
            writer = writers.get(cell.slug)
            if cell.windows and writer is not None and writer != str(cell_key(cell.slug, cell.analysis_date)):
                return deferred(cell, writer, r)
            return write(cell, r)

        return compute

    return step


statistics_export = analysis_asset(
    "statistics_export",
    once_per_experiment(
        lambda cell, r: export_statistics(cell, r.warehouse, r.export_store, r.metric_hub, r.experimenter),
        lambda cell, writer, r: deferred_export(cell, writer, r.export_store, r.warehouse),
    ),
    per_step=True,
    group_name="exports",
    kinds={"json", export_kind()},
    deps=["statistics"],
    code_version=code_version("assets/exports.py", "exports"),
    check_specs=exports_check_specs("statistics_export"),
    checks=exports_checks,
    description=(
        "`statistics/statistics_<slug>_<period>.json`: every window's statistics so far, per period; and "
        "`reports/<slug>.html`, a self-contained results report (uplift plots per metric, period and segment, "
        "enrollment counts, sample ratio check, metrics without results)."
    ),
)

metadata_export = analysis_asset(
    "metadata_export",
    once_per_experiment(
        lambda cell, r: export_metadata(cell, r.metric_hub, r.export_store),
        lambda cell, writer, r: deferred_metadata(cell, writer, r.export_store),
    ),
    per_step=True,
    group_name="exports",
    kinds={"json", export_kind()},
    deps=["statistics"],
    code_version=code_version("assets/exports.py", "exports"),
    check_specs=exports_check_specs("metadata_export"),
    checks=exports_checks,
    description="`metadata/metadata_<slug>.json`: metric descriptions, outcomes and config overrides.",
)
