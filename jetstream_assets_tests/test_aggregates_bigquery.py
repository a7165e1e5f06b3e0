"""The aggregation on BigQuery (a fake client): the same stages as locally, as single BigQuery statements
with the JSON helpers inlined as BigQuery JSON functions, reading Mozilla's decoded main ping table, and
the ping table created with its nested schema before pings are appended."""

from __future__ import annotations

import datetime as dt
import json

import sqlglot

from jetstream_assets.aggregates.compute import aggregate_day
from jetstream_assets.aggregates.source import append_pings, ping_row
from jetstream_assets.demo.pings import documents
from jetstream_assets.warehouse.bigquery import MAIN_PING_SCHEMA
from jetstream_assets_tests.test_bigquery_warehouse import PROJECT, client, warehouse  # noqa: F401 -- fixtures

DAY = dt.date(2026, 10, 20)


def test_the_stages_run_as_bigquery_sql(client, warehouse):  # noqa: F811
    result = aggregate_day(warehouse, DAY)
    assert result.entries == 0 and not result.rejected
    sqls = [sql for sql, _ in client.queries]
    destinations = [config.destination for _, config in client.queries]
    assert len(sqls) == 5  # pings, sections, entries (scratch tables), aggregates, rejects
    assert [d is not None for d in destinations] == [True, True, True, False, False]
    assert f"`{PROJECT}.payload_bytes_decoded.telemetry_telemetry__main_v4`" in sqls[0]
    assert ("submission_timestamp >= TIMESTAMP '2026-10-20 00:00:00+00' "
            "AND submission_timestamp < TIMESTAMP '2026-10-21 00:00:00+00'") in sqls[0]
    assert "normalized_channel IN ('nightly', 'aurora', 'beta', 'release')" in sqls[0]  # the source filter
    for sql in sqls:
        assert "udf." not in sql and "udf_" not in sql  # no helper the project would have to install
        assert sqlglot.parse_one(sql, read="bigquery") is not None
    assert "JSON_KEYS(j, 1)" in sqls[2] and "SAFE.PARSE_JSON" in sqls[0] and "JSON_QUERY_ARRAY" in sqls[1]
    scratch = {f"{d.project}.{d.dataset_id}.{d.table_id}" for d in destinations if d is not None}
    assert scratch <= set(client.deleted)  # scratch tables are removed


def test_pings_append_to_a_table_created_with_the_nested_schema(client, warehouse, monkeypatch):  # noqa: F811
    created = []

    def create_table(table, exists_ok=False):
        created.append(table)
        client.tables[f"{table.project}.{table.dataset_id}.{table.table_id}"] = table

    monkeypatch.setattr(client, "create_table", create_table, raising=False)
    monkeypatch.setattr(client, "create_dataset", lambda *a, **k: None, raising=False)
    doc = next(documents(DAY, 1, seed=1))
    append_pings(warehouse, [ping_row(doc, "doc-1") | {"payload": json.dumps(doc)}])
    assert [t.table_id for t in created] == ["telemetry_telemetry__main_v4"]
    assert created[0].time_partitioning.field == "submission_timestamp"
    frame, destination, config = client.loads[0]
    assert destination == f"{PROJECT}.payload_bytes_decoded.telemetry_telemetry__main_v4"
    assert [f.name for f in config.schema] == [f.name for f in MAIN_PING_SCHEMA]
    assert frame.loc[0, "metadata"]["uri"]["app_build_id"] == doc["application"]["buildId"]
