"""What the UI shows for every definition: a description, a group, kinds, an owner and a code version."""

from __future__ import annotations

import dagster as dg

from jetstream_assets.definitions import defs


def test_every_asset_says_what_it_is_whose_it_is_and_which_code_made_it():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 40, f"{name}: no real description"
        assert node.group_name and node.group_name != "default", f"{name}: no group"
        assert node.owners, f"{name}: no owner"
        assert node.kinds, f"{name}: no kinds"
        if node.is_materializable:
            assert node.code_version, f"{name}: no code version"
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {"telemetry", "experiments", "exports", "monitoring"} <= groups


def test_lineage_starts_at_the_telemetry_tables():
    graph = defs.resolve_asset_graph()
    external = [k for k in graph.get_all_asset_keys() if not graph.get(k).is_materializable
                and graph.get(k).group_name == "telemetry"]
    assert external, "telemetry source tables are external assets"
    downstream = {c.to_user_string() for k in external for c in graph.get(k).child_keys}
    assert {"enrollments", "metrics"} <= downstream


def test_checks_sensors_and_resources_describe_themselves():
    graph = defs.resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description, f"check {check_key.name} has no description"
    for sensor in defs.sensors:
        assert sensor.description, f"sensor {sensor.name} has no description"
    for name, resource in defs.resources.items():
        assert isinstance(resource, dg.ConfigurableResource)
        assert (type(resource).__doc__ or "").strip(), f"resource {name} has no description"
