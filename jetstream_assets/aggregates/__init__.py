"""Telemetry aggregates (the aggregates service, python_mozaggregator, rebuilt on the warehouse):

- probes.py: probe definitions and bucket labels (what `buckets`, `kind` and `description` come from);
- pings.py: synthetic main pings for the demo and the tests (`telemetry.main_pings`);
- compute.py: one submission date's aggregates in both families (by submission date, by build id);
- store.py: reading stored aggregates for the API (local Parquet fast path, or SQL through any warehouse);
- rules.py: metric blacklist, release-channel rules and query-parameter checks;
- api.py: the Starlette app and `serve(home, port)` behind `jetstream-assets serve`.

The daily-partitioned assets are in `jetstream_assets.assets.aggregates`.
"""
