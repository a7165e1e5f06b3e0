"""Lineage starts at the data: the telemetry tables the analysis reads are external assets upstream of it."""

from __future__ import annotations

import dagster as dg

from jetstream_assets.assets.telemetry import TELEMETRY_ASSETS
from jetstream_assets.definitions import defs

TABLES = {"telemetry/events", "telemetry/clients_daily", "telemetry/clients_last_seen"}


def _graph():
    graph = defs.resolve_asset_graph()
    return graph, {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}


def test_telemetry_tables_are_external_assets_with_a_group_kinds_and_a_description():
    graph, nodes = _graph()
    assert TABLES <= set(nodes)
    for name in TABLES:
        node = nodes[name]
        assert not node.is_materializable  # read, never written, by this code location
        assert node.group_name == "telemetry"
        assert {"duckdb", "table"} <= node.kinds or {"bigquery", "table"} <= node.kinds
        assert len(node.description) > 80 and node.owners == ["team:experimentation"]
        assert node.metadata["dagster/table_name"] == f"mozdata.{name.replace('/', '.')}"
    assert {s.key.to_user_string() for s in TELEMETRY_ASSETS} == TABLES


def test_enrollments_and_metrics_read_the_telemetry_and_every_analysis_asset_descends_from_it():
    graph, nodes = _graph()
    parents = {name: {p.to_user_string() for p in node.parent_keys} for name, node in nodes.items()}
    assert TABLES <= parents["enrollments"]
    assert parents["metrics"] == TABLES | {"enrollments"}

    def ancestors(name: str) -> set[str]:
        found, todo = set(), [name]
        while todo:
            for parent in parents[todo.pop()]:
                if parent not in found:
                    found.add(parent)
                    todo.append(parent)
        return found

    for asset in ("enrollments", "metrics", "statistics", "statistics_export", "metadata_export"):
        assert TABLES <= ancestors(asset), asset
    # the roots of the analysis are the data, and the plan (it reads Experimenter and metric-hub)
    roots = {n for n in ancestors("statistics_export") if not parents[n]}
    assert roots == TABLES | {"analysis_plan"}


def test_bigquery_engine_marks_the_tables_as_bigquery(monkeypatch):
    import importlib

    import jetstream_assets.assets.telemetry as telemetry

    monkeypatch.setenv("JETSTREAM_BIGQUERY_PROJECT", "my-project")
    try:
        reloaded = importlib.reload(telemetry)
        assert all("bigquery" in spec.kinds and "duckdb" not in spec.kinds for spec in reloaded.TELEMETRY_ASSETS)
    finally:
        monkeypatch.delenv("JETSTREAM_BIGQUERY_PROJECT")
        importlib.reload(telemetry)
    assert all(isinstance(spec, dg.AssetSpec) for spec in telemetry.TELEMETRY_ASSETS)
