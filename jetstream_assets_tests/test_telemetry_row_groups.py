"""The demo telemetry is written with one submission date per Parquet row group, so a date filter reads
only the row groups of the dates it asks for."""

import datetime as dt

import pyarrow.parquet as pq

from jetstream_assets.demo.experiments import demo_experiments
from jetstream_assets.demo.telemetry import generate_telemetry

TODAY = dt.date(2026, 11, 24)


def test_every_row_group_holds_one_date(tmp_path):
    generate_telemetry(tmp_path, clients=500, today=TODAY, experiments=demo_experiments(TODAY))
    for table in ("events", "clients_daily", "clients_last_seen"):
        meta = pq.ParquetFile(tmp_path / "telemetry" / f"{table}.parquet").metadata
        column = meta.schema.to_arrow_schema().get_field_index("submission_date")
        days = set()
        assert meta.num_row_groups > 10, table
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(column).statistics
            assert stats.min == stats.max, (table, i, stats.min, stats.max)
            days.add(stats.min)
        assert len(days) == meta.num_row_groups, table  # one row group per date (at this size)
