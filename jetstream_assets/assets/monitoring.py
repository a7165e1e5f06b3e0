"""Monitoring assets: the Experimenter snapshot as a table, and the logs and query-cost tables every
analysis step appends to (declared here for lineage; `jetstream_assets.monitoring` writes them)."""

import collections
import datetime as dt
from collections.abc import Iterable

import dagster as dg
import pandas as pd
import pyarrow as pa

from jetstream_assets.assets.cells import today
from jetstream_assets.assets.common import OWNERS, code_version, md_table, warehouse_kind
from jetstream_assets.experimenter.models import Experiment
from jetstream_assets.experimenter.resource import Experimenter
from jetstream_assets.jobs import ANALYSIS_ASSETS  # their steps append to the logs and query_cost tables
from jetstream_assets.monitoring import LOGS_TABLE, QUERY_COST_TABLE
from jetstream_assets.warehouse.base import Warehouse

EXPERIMENTER_EXPERIMENTS_TABLE = "experimenter_experiments"
PREVIEW_ROWS = 10
MAX_LISTED_ERRORS = 20

_BRANCH = pa.struct([("slug", pa.string()), ("ratio", pa.int64())])
# bigquery-etl's monitoring.experimenter_experiments_v1 columns our Experiment model carries, then ours
EXPERIMENTER_EXPERIMENTS_COLUMNS: dict[str, pa.DataType] = {
    "experimenter_slug": pa.string(),
    "normandy_slug": pa.string(),
    "type": pa.string(),
    "status": pa.string(),
    "branches": pa.list_(_BRANCH),
    "start_date": pa.date32(),
    "end_date": pa.date32(),
    "enrollment_end_date": pa.date32(),
    "proposed_enrollment": pa.int64(),
    "reference_branch": pa.string(),
    "is_high_population": pa.bool_(),
    "app_name": pa.string(),
    "app_id": pa.string(),
    "namespace": pa.string(),
    "targeted_percent": pa.float64(),
    "is_rollout": pa.bool_(),
    "is_enrollment_paused": pa.bool_(),
    "randomization_unit": pa.string(),
    "bucket_start": pa.int64(),
    "bucket_count": pa.int64(),
    "bucket_total": pa.int64(),
    "outcomes": pa.list_(pa.string()),
    "segments": pa.list_(pa.string()),
}


def experiment_row(experiment: Experiment, on: dt.date) -> dict:
    """One experimenter_experiments row; the status is the one the analysis would use on `on`."""
    bucket = experiment.bucket_config
    return {
        # a Nimbus (v8) experiment has only a normandy slug, as in Jetstream and bigquery-etl
        "experimenter_slug": None,
        "normandy_slug": experiment.slug,
        "type": "v6",
        "status": experiment.status(on),
        "branches": [{"slug": b.slug, "ratio": b.ratio} for b in experiment.branches],
        "start_date": experiment.start_date,
        "end_date": experiment.end_date,
        "enrollment_end_date": experiment.enrollment_end_date,
        "proposed_enrollment": experiment.proposed_enrollment,
        "reference_branch": experiment.reference_branch,
        "is_high_population": False,
        "app_name": experiment.app_name,
        "app_id": experiment.app_id,
        "namespace": bucket.namespace if bucket else None,
        "targeted_percent": bucket.count / bucket.total if bucket and bucket.total else None,
        "is_rollout": experiment.is_rollout,
        "is_enrollment_paused": experiment.is_enrollment_paused,
        "randomization_unit": bucket.randomization_unit if bucket else None,
        "bucket_start": bucket.start if bucket else None,
        "bucket_count": bucket.count if bucket else None,
        "bucket_total": bucket.total if bucket else None,
        "outcomes": list(experiment.outcomes),
        "segments": list(experiment.segments),
    }


def experiments_frame(experiments: Iterable[Experiment], on: dt.date) -> pd.DataFrame:
    """The table, typed column by column (so empty lists or all-null columns keep their types)."""
    rows = [experiment_row(e, on) for e in experiments]
    schema = pa.schema(list(EXPERIMENTER_EXPERIMENTS_COLUMNS.items()))
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


@dg.asset(
    group_name="monitoring",
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    code_version=code_version("assets/monitoring.py", "experimenter"),
    description=(
        "Every experiment Experimenter knows, as the monitoring.experimenter_experiments table "
        "(bigquery-etl's experimenter_experiments_v1 columns): replaced whole on each materialization. "
        "Records that do not parse are counted and listed, never fatal."
    ),
)
def experimenter_experiments(
    context: dg.AssetExecutionContext, experimenter: Experimenter, warehouse: Warehouse
) -> dg.MaterializeResult:
    snapshot = experimenter.fetch()
    on = today()
    df = experiments_frame(snapshot.experiments, on)
    dataset = warehouse.monitoring_dataset
    warehouse.write_dataframe(df, EXPERIMENTER_EXPERIMENTS_TABLE, dataset=dataset)
    statuses = collections.Counter(str(s) for s in df["status"])
    for error in snapshot.errors:
        context.log.warning(str(error))
    preview = df[["normandy_slug", "status", "app_name", "start_date", "end_date",
                  "enrollment_end_date", "is_rollout"]].head(PREVIEW_ROWS)
    return dg.MaterializeResult(
        metadata={
            "table": warehouse.table_ref(EXPERIMENTER_EXPERIMENTS_TABLE, dataset),
            "dagster/row_count": len(df),
            "status_counts": dg.MetadataValue.json(dict(sorted(statuses.items()))),
            "rollouts": int(df["is_rollout"].fillna(False).astype(bool).sum()),
            "unparseable_records": len(snapshot.errors),
            "unparseable": dg.MetadataValue.json(
                [str(e) for e in snapshot.errors[:MAX_LISTED_ERRORS]]
            ),
            "preview": md_table(preview),
        }
    )


logs_spec = dg.AssetSpec(
    LOGS_TABLE,
    group_name="monitoring",
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    deps=ANALYSIS_ASSETS,
    description=(
        "monitoring.logs: every analysis step appends its WARNING and ERROR log records (timestamp, "
        "source, experiment, metric, statistic, analysis_basis, segment, analysis_period, message, "
        "log_level, exception, filename, func_name, exception_type); `errors/errors_<slug>.json` is "
        "rewritten from it after each step."
    ),
)

query_cost_spec = dg.AssetSpec(
    QUERY_COST_TABLE,
    group_name="monitoring",
    kinds={warehouse_kind(), "table"},
    owners=OWNERS,
    deps=ANALYSIS_ASSETS,
    description=(
        "monitoring.query_cost: every analysis step appends one row per warehouse query it ran "
        "(submission_timestamp, destination_table, query, total_bytes_processed, duration_seconds, "
        "cost_usd)."
    ),
)

MONITORING_ASSETS = [experimenter_experiments, logs_spec, query_cost_spec]
