"""Shared pieces of the telemetry aggregates tests (no tests here): a small world of demo main pings loaded
with `load_pings` and aggregated, a live API server on 127.0.0.1, and a reference aggregation written
independently in plain Python, ping by ping, to check the warehouse SQL and the API against."""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from jetstream_assets.aggregates.api import create_app
from jetstream_assets.aggregates.compute import aggregate_and_store
from jetstream_assets.aggregates.probes import COUNT_PREFIX, ProbeRegistry, fallback_layout
from jetstream_assets.aggregates.rules import Rules
from jetstream_assets.aggregates.source import load_pings
from jetstream_assets.aggregates.store import AggregateStore
from jetstream_assets.demo.pings import PROBES_FILE, write_jsonl
from jetstream_assets.warehouse.local import LocalWarehouse

FIRST_DAY = dt.date(2026, 10, 20)
DAYS = 4
PINGS_PER_DAY = 400
REGISTRY = ProbeRegistry.load([PROBES_FILE])
DIMS = ("date", "channel", "version", "metric", "application", "architecture", "os", "osVersion", "label", "child")


@dataclass
class World:
    home: Path
    warehouse: LocalWarehouse
    pings: list[dict]  # the decoded ping documents
    days: list[dt.date]

    @property
    def stamps(self) -> list[str]:
        return [d.strftime("%Y%m%d") for d in self.days]


def build_world(home: Path, days: int = DAYS, pings_per_day: int = PINGS_PER_DAY, aggregate: bool = True) -> World:
    warehouse = LocalWarehouse(root=str(home / "warehouse"))
    source = home / "pings.jsonl"
    write_jsonl(source, FIRST_DAY, days, pings_per_day, seed=7)
    load_pings(warehouse, source)
    dates = [FIRST_DAY + dt.timedelta(days=i) for i in range(days)]
    if aggregate:
        for day in dates:
            aggregate_and_store(warehouse, day, registry=REGISTRY)
    pings = [json.loads(line) for line in source.read_text().splitlines()]
    return World(home, warehouse, pings, dates)


# -- the reference: aggregates straight from the ping documents -------------------------------------------
def _entries(ping: dict):
    """(metric, label, child, histogram or None, value or None) of everything a demo ping carries."""
    payload = ping["payload"]
    for child, section in [("parent", payload), *((p, payload["processes"].get(p, {})) for p in ("content", "gpu"))]:
        for name, histogram in section.get("histograms", {}).items():
            yield name, "", child, histogram
        for name, keyed in section.get("keyedHistograms", {}).items():
            for key, histogram in keyed.items():
                yield name, key, child, histogram
    for name, value in payload.get("simpleMeasurements", {}).items():
        yield "SIMPLE_MEASURES_" + name.upper(), "", "parent", value
    for process, section in payload["processes"].items():
        for name, value in section.get("scalars", {}).items():
            yield "SCALARS_" + name.upper(), "", process, value
        for name, keyed in section.get("keyedScalars", {}).items():
            for key, value in keyed.items():
                yield "SCALARS_" + name.upper(), key.upper(), process, value


def ping_rows(ping: dict, family: str):
    """(key dict, histogram dict or None, value or None) per aggregated entry of one ping."""
    app, os_info = ping["application"], ping["environment"]["system"]["os"]
    base = {
        "date": ping["meta"]["submissionDate"] if family == "submission_date" else app["buildId"][:8],
        "channel": app["channel"], "version": app["version"].split(".")[0], "application": app["name"],
        "architecture": app["architecture"], "os": os_info["name"],
        "osVersion": os_info["version"][:3] if os_info["name"] == "Linux" else os_info["version"],
    }
    for name, label, child, item in _entries(ping):
        if isinstance(item, dict) and item.get("histogram_type") == 4:
            yield {**base, "metric": COUNT_PREFIX + name, "label": label, "child": child}, None, item["sum"]
        elif isinstance(item, dict):
            yield {**base, "metric": name, "label": label, "child": child}, item, None
        else:
            yield {**base, "metric": name, "label": label, "child": child}, None, int(item)


def layout_of(metric: str, histogram: dict | None):
    layout = REGISTRY.layout(metric)
    if layout is None and histogram is not None:
        layout = fallback_layout(histogram["histogram_type"], *histogram["range"], histogram["bucket_count"])
    return layout


def reference(pings, family) -> dict[tuple, list]:
    """Every aggregate row of a family: key columns -> [count, sum, histogram]."""
    acc: dict[tuple, list] = {}
    for ping in pings:
        for key, histogram, value in ping_rows(ping, family):
            layout = layout_of(key["metric"], histogram)
            row = acc.setdefault(tuple(key[d] for d in DIMS), [0, 0, [0] * len(layout.buckets)])
            row[0] += 1
            if histogram is None:
                row[1] += value
                row[2][max(bisect.bisect_right(layout.buckets, value) - 1, 0)] += 1
            else:
                row[1] += histogram["sum"]
                for bucket, n in histogram["values"].items():
                    row[2][max(bisect.bisect_right(layout.buckets, int(bucket)) - 1, 0)] += n
    return acc


def stored_metric(rows: dict, metric: str) -> str:
    counted = COUNT_PREFIX + metric
    return counted if any(k[3] == counted for k in rows) else metric


def expected_data(rows: dict, channel, version, metric, dates, filters=None) -> list[dict]:
    """The API's `data` for a query, from reference rows (`reference(...)`)."""
    metric = stored_metric(rows, metric)
    wanted = {"channel": channel, "version": version, "metric": metric, **(filters or {})}
    acc: dict = {}
    for key, (count, total, histogram) in rows.items():
        dims = dict(zip(DIMS, key))
        if dims["date"] not in dates or any(dims[k] != v for k, v in wanted.items()):
            continue
        entry = acc.setdefault((dims["date"], dims["label"]), {"count": 0, "sum": 0, "histogram": [0] * len(histogram)})
        entry["count"] += count
        entry["sum"] += total
        entry["histogram"] = [a + b for a, b in zip(entry["histogram"], histogram)]
    return [{"date": d, "label": lbl, **v} for (d, lbl), v in sorted(acc.items())]


def expected_dates(rows: dict, channel) -> list[dict]:
    pairs = {(k[0], k[2]) for k in rows if k[1] == channel}
    return [{"date": d, "version": v} for d, v in sorted(pairs, key=lambda p: (p[0], int(p[1])), reverse=True)]


def expected_options(rows: dict, channel, version) -> dict[str, list[str]]:
    values = collections.defaultdict(set)
    for key in rows:
        dims = dict(zip(DIMS, key))
        if dims["channel"] == channel and dims["version"] == version:
            values["metric"].add(dims["metric"].removeprefix(COUNT_PREFIX))
            for name in ("application", "architecture", "child"):
                values[name].add(dims[name])
            values["os"].add(f"{dims['os']},{dims['osVersion']}")
    return {k: sorted(v) for k, v in values.items()}


# -- a live server -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_server(warehouse, rules: Rules | None = None, store: AggregateStore | None = None):
    """The API on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    store = store or AggregateStore.for_warehouse(warehouse)
    app = create_app(store, rules or Rules(), REGISTRY, cache_seconds=600)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("The aggregates API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
