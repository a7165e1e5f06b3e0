"""What every analysis asset shares: partitions, backfill policy, owners, kinds and code versions."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import dagster as dg

from jetstream_assets.partitions import ANALYSIS_PARTITIONS

# single-run backfill policies are marked beta; they are the design (one run per experiment rerun)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
# partitioned asset checks are a preview; they are what keeps each experiment's verdict on its own cells
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

OWNERS = ["team:experimentation"]

ANALYSIS_ASSET_ARGS = dict(
    partitions_def=ANALYSIS_PARTITIONS,
    # a rerun of one experiment is one run over its dates, not one process per date
    backfill_policy=dg.BackfillPolicy.single_run(),
    owners=OWNERS,
)


PACKAGE = Path(__file__).resolve().parents[1]


def warehouse_kind() -> str:
    """The engine the warehouse resource runs on (chosen from the environment when the code loads)."""
    return "bigquery" if os.environ.get("JETSTREAM_BIGQUERY_PROJECT") else "duckdb"


def export_kind() -> str:
    return "gcs" if os.environ.get("JETSTREAM_GCS_BUCKET") else "file"


def code_version(*parts: str) -> str:
    """A digest of the package sources an asset's result depends on (files or folders relative to the
    package): the UI marks materializations made by older code, so a user sees what a rerun would change."""
    digest = hashlib.sha256()
    for part in parts:
        path = PACKAGE / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(PACKAGE).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def sql_block(sql: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"<details><summary>SQL</summary>\n\n```sql\n{sql.strip()}\n```\n</details>")


def md_table(df) -> dg.MetadataValue:
    """A DataFrame as a Markdown table the UI renders (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))
