"""Shared pieces of the telemetry aggregates tests (no tests here): a small world of synthetic pings with
its aggregates, a live API server on 127.0.0.1, and aggregates computed independently from the pings, row
by row in plain Python, to check the pipeline and the API against."""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import uvicorn

from jetstream_assets.aggregates.api import create_app
from jetstream_assets.aggregates.compute import aggregate_and_store
from jetstream_assets.aggregates.pings import pings_path, write_pings
from jetstream_assets.aggregates.probes import DEMO_REGISTRY
from jetstream_assets.aggregates.rules import Rules
from jetstream_assets.aggregates.store import AggregateStore
from jetstream_assets.warehouse.local import LocalWarehouse

FIRST_DAY = dt.date(2026, 10, 20)
DAYS = 4
PINGS_PER_DAY = 400
CHILD = {"parent": "false", "content": "true", "gpu": "gpu"}


@dataclass
class World:
    home: Path
    warehouse: LocalWarehouse
    pings: list[dict]
    days: list[dt.date]

    @property
    def stamps(self) -> list[str]:
        return [d.strftime("%Y%m%d") for d in self.days]


def build_world(home: Path, days: int = DAYS, pings_per_day: int = PINGS_PER_DAY, aggregate: bool = True) -> World:
    warehouse = LocalWarehouse(root=str(home / "warehouse"))
    dates = [FIRST_DAY + dt.timedelta(days=i) for i in range(days)]
    write_pings(warehouse, dates[0], dates[-1], pings_per_day=pings_per_day, seed=7)
    if aggregate:
        for day in dates:
            aggregate_and_store(warehouse, day)
    pings = pq.read_table(pings_path(warehouse)).to_pylist()
    return World(home, warehouse, pings, dates)


# -- the reference: aggregates straight from the ping rows ------------------------------------------------
def ping_metric(row: dict) -> str:
    scalar = row["probe_type"] in ("scalar", "keyed_scalar")
    return "SCALARS_" + row["probe"].upper() if scalar else row["probe"]


def ping_dims(row: dict, family: str) -> dict:
    date = row["submission_date"].strftime("%Y%m%d") if family == "submission_date" else row["app_build_id"][:8]
    return {
        "date": date, "channel": row["normalized_channel"], "version": row["app_version"].split(".")[0],
        "metric": ping_metric(row), "application": row["app_name"], "architecture": row["architecture"],
        "os": row["os"], "osVersion": row["os_version"], "label": row["key"] or "", "child": CHILD[row["process"]],
    }


def expected_data(pings, family, channel, version, metric, dates, filters=None) -> list[dict]:
    """The API's `data` for a query, from the pings alone."""
    probe = DEMO_REGISTRY.get(metric)
    buckets = probe.buckets
    value_bucketed = probe.probe_type.endswith("scalar") or probe.kind == "count"
    wanted = {"channel": channel, "version": version, "metric": metric, **(filters or {})}
    acc: dict = {}
    for row in pings:
        dims = ping_dims(row, family)
        if dims["date"] not in dates or any(dims[k] != v for k, v in wanted.items()):
            continue
        entry = acc.setdefault((dims["date"], dims["label"]), {"count": 0, "sum": 0, "histogram": [0] * len(buckets)})
        entry["count"] += 1
        entry["sum"] += row["sum"]
        if value_bucketed:
            entry["histogram"][max(bisect.bisect_right(buckets, row["sum"]) - 1, 0)] += 1
        else:
            for cell in row["hist_values"]:
                entry["histogram"][buckets.index(cell["key"])] += cell["value"]
    return [{"date": d, "label": lbl, **v} for (d, lbl), v in sorted(acc.items())]


def expected_rows(pings, family) -> dict[tuple, tuple]:
    """Every aggregate row of a family: key columns -> (count, sum, histogram)."""
    acc: dict = {}
    for row in pings:
        dims = ping_dims(row, family)
        probe = DEMO_REGISTRY.get(dims["metric"])
        key = tuple(dims[k] for k in ("date", "channel", "version", "metric", "application", "architecture",
                                       "os", "osVersion", "label", "child"))
        count, total, hist = acc.get(key, (0, 0, [0] * len(probe.buckets)))
        if probe.probe_type.endswith("scalar") or probe.kind == "count":
            hist[max(bisect.bisect_right(probe.buckets, row["sum"]) - 1, 0)] += 1
        else:
            for cell in row["hist_values"]:
                hist[probe.buckets.index(cell["key"])] += cell["value"]
        acc[key] = (count + 1, total + row["sum"], hist)
    return acc


def expected_dates(pings, family, channel) -> list[dict]:
    pairs = {(ping_dims(r, family)["date"], ping_dims(r, family)["version"]) for r in pings
             if r["normalized_channel"] == channel}
    return [{"date": d, "version": v} for d, v in sorted(pairs, key=lambda p: (p[0], int(p[1])), reverse=True)]


def expected_options(pings, channel, version) -> dict[str, list[str]]:
    values = collections.defaultdict(set)
    for row in pings:
        dims = ping_dims(row, "submission_date")
        if dims["channel"] == channel and dims["version"] == version:
            for name in ("metric", "application", "architecture", "os", "osVersion", "label", "child"):
                if dims[name]:
                    values[name].add(dims[name])
    return {k: sorted(v) for k, v in values.items()}


# -- a live server -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_server(warehouse, rules: Rules | None = None, store: AggregateStore | None = None):
    """The API on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    store = store or AggregateStore.for_warehouse(warehouse)
    app = create_app(store, rules or Rules(), cache_seconds=600)
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
