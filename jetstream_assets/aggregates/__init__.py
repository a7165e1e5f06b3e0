"""Telemetry aggregates (the aggregates service, python_mozaggregator, rebuilt on the warehouse):

- source.py: the decoded main ping table (`payload_bytes_decoded.telemetry_telemetry__main_v4`) and
  `load-pings`, which fills it from JSON lines, skipping and logging bad pings;
- probes.py: probe definitions (probe-scraper JSON, Histograms.json, Scalars.yaml) and bucket layouts;
- extract.py: the aggregation as BigQuery-dialect SQL over the pings' JSON, in stages;
- compute.py: one submission date's aggregates in both families (by submission date, by build id);
- store.py: reading stored aggregates for the API (local Parquet fast path, or SQL through any warehouse);
- rules.py: metric blacklist, release-channel rules and query-parameter checks;
- api.py: the Starlette app and `serve(home, port)` behind `jetstream-assets serve`;
- cli.py: `jetstream-assets aggregates load-pings FILE.jsonl` and `aggregates run (--date | --all-dates)`.

The daily-partitioned assets are in `jetstream_assets.assets.aggregates`; the demo's pings and probe
definitions in `jetstream_assets.demo.pings` and `demo/probes.json`.
"""
