"""What every analysis asset shares: partitions, backfill policy, and kinds."""

from __future__ import annotations

import warnings

import dagster as dg

from jetstream_assets.partitions import ANALYSIS_PARTITIONS

# single-run backfill policies are marked beta; they are the design (one run per experiment rerun)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

ANALYSIS_ASSET_ARGS = dict(
    partitions_def=ANALYSIS_PARTITIONS,
    # a rerun of one experiment is one run over its dates, not one process per date
    backfill_policy=dg.BackfillPolicy.single_run(),
    owners=["team:experimentation"],
)


def sql_block(sql: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"<details><summary>SQL</summary>\n\n```sql\n{sql.strip()}\n```\n</details>")


def md_table(df) -> dg.MetadataValue:
    """A DataFrame as a Markdown table the UI renders (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))
