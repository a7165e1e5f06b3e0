"""The (experiment x analysis date) grid every analysis asset is partitioned by."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

EXPERIMENTS = dg.DynamicPartitionsDefinition(name="experiments")

# The first analysis date the grid offers; experiments that started earlier can still be analysed for
# later dates. Override with JETSTREAM_START_DATE (YYYY-MM-DD).
DEFAULT_START_DATE = "2025-06-01"


def start_date() -> str:
    return os.environ.get("JETSTREAM_START_DATE", DEFAULT_START_DATE)


ANALYSIS_DATES = dg.DailyPartitionsDefinition(start_date=start_date())

ANALYSIS_PARTITIONS = dg.MultiPartitionsDefinition(
    {"experiment": EXPERIMENTS, "analysis_date": ANALYSIS_DATES}
)


def cell_key(slug: str, analysis_date: dt.date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"experiment": slug, "analysis_date": analysis_date.isoformat()})


def parse_key(key: str | dg.MultiPartitionKey) -> tuple[str, dt.date]:
    """(slug, analysis date) of a partition key, whether Dagster hands it as a string or a MultiPartitionKey."""
    if not isinstance(key, dg.MultiPartitionKey):
        date_part, slug = str(key).split("|", 1)
        return slug, dt.date.fromisoformat(date_part)
    dims = key.keys_by_dimension
    return dims["experiment"], dt.date.fromisoformat(dims["analysis_date"])
