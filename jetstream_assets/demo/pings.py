"""Synthetic main pings for the demo and the benchmarks, as Telemetry sends them (decoded JSON documents),
loaded through the product's own `load-pings` path.

Each ping carries the demo probes (`demo/probes.json` defines them for the aggregates): histograms of every
kind and keyed histograms in the parent payload and `processes.content` / `processes.gpu`, simple
measurements, scalars and keyed scalars per process. The world: clients keep their channel, application,
OS, OS version and architecture; release trains move every 28 days (nightly = release + 2, beta =
release + 1), nightly builds twice a day, beta every other day, release every 14 days, and a ping comes from
a build a few days old. The GPU process exists on Windows only; Fennec (Android) has none. Everything is
drawn from one seeded generator, so the same arguments give the same pings.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from jetstream_assets.aggregates.probes import exponential_buckets, linear_buckets
from jetstream_assets.aggregates.source import PINGS_DATASET, PINGS_TABLE, LoadReport, load_pings
from jetstream_assets.warehouse.base import Warehouse

PROBES_FILE = Path(__file__).with_name("probes.json")
CHANNELS = ("nightly", "beta", "release")
_CHANNEL_P = (0.12, 0.18, 0.70)
_TRAIN_EPOCH = dt.date(2024, 1, 23)
_RELEASE_AT_EPOCH = 122
_BUILD_EVERY = {"nightly": 1, "beta": 2, "release": 14}
_BUILD_TIME = {"nightly": ("093012", "214301"), "beta": ("181203",), "release": ("100512",)}
_MEAN_BUILD_AGE = {"nightly": 1.5, "beta": 4.0, "release": 10.0}
# (application, os, weight, os versions, architectures)
_PLATFORMS = (
    ("Firefox", "Windows_NT", 0.62, ("10.0", "6.1", "6.3"), ("x86-64", "x86", "aarch64")),
    ("Firefox", "Darwin", 0.18, ("24.1.0", "23.6.0"), ("aarch64", "x86-64")),
    ("Firefox", "Linux", 0.10, ("6.8.0-45", "6.1.12", "5.15.0"), ("x86-64",)),
    ("Fennec", "Android", 0.10, ("34", "33", "30"), ("aarch64", "arm")),
)
HISTOGRAM_TYPE = {"exponential": 0, "linear": 1, "enumerated": 1, "boolean": 2, "count": 4}
MAX_PINGS_PER_DAY = 1_000_000


@dataclass(frozen=True)
class DemoProbe:
    """A probe the demo pings carry and how its values are drawn (`sim`)."""

    name: str
    kind: str  # exponential | linear | enumerated | boolean | count | uint | bool (the last two: scalars)
    processes: tuple[str, ...]
    low: int = 1
    high: int = 2
    n_buckets: int = 3
    keys: tuple[str, ...] = ()
    sim: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def scalar(self) -> bool:
        return self.kind in ("uint", "bool")

    @cached_property
    def buckets(self) -> list[int]:
        if self.kind == "exponential":
            return exponential_buckets(self.low, self.high, self.n_buckets)
        if self.kind == "linear":
            return linear_buckets(self.low, self.high, self.n_buckets)
        if self.kind == "enumerated":
            return list(range(self.n_buckets + 1))
        return [0, 1, 2]

    def histogram(self, rng: np.random.Generator) -> dict:
        """One ping's histogram of this probe, as Firefox sends it."""
        sim = self.sim
        if self.kind == "count":
            n = 1 + int(rng.poisson(max(sim["mean"] - 1.0, 0.0)))
            return {"bucket_count": 3, "histogram_type": 4, "range": [1, 2], "sum": n, "values": {"0": n, "1": 0}}
        samples = 1 + int(rng.poisson(max(sim.get("samples", 1) - 1.0, 0.0)))
        if self.kind in ("exponential", "linear"):
            values = np.rint(rng.lognormal(np.log(sim["median"]), sim["spread"], size=samples)).astype(np.int64)
        elif self.kind == "enumerated":
            p = np.array(sim["p"], dtype=float)
            values = rng.choice(len(p), size=samples, p=p / p.sum())
        else:
            values = (rng.random(samples) < sim["p"]).astype(np.int64)
        bounds = self._bounds
        index = np.clip(np.searchsorted(bounds, values, side="right") - 1, 0, len(bounds) - 1)
        counts = np.bincount(index, minlength=len(bounds))
        low, high = (1, self.n_buckets) if self.kind == "enumerated" else (self.low, self.high)
        return {"bucket_count": len(bounds), "histogram_type": HISTOGRAM_TYPE[self.kind], "range": [low, high],
                "sum": int(values.sum()), "values": {str(int(bounds[i])): int(counts[i]) for i in np.flatnonzero(counts)}}

    @cached_property
    def _bounds(self) -> np.ndarray:
        return np.asarray(self.buckets)

    def scalar_value(self, rng: np.random.Generator):
        if self.kind == "bool":
            return bool(rng.random() < self.sim["p"])
        return int(rng.negative_binomial(2, 2.0 / (2.0 + self.sim["mean"])))


def _h(name, kind, processes, low=1, high=2, n_buckets=3, keys=(), **sim) -> DemoProbe:
    return DemoProbe(name, kind, tuple(processes), low, high, n_buckets, tuple(keys), sim)


# presence = share of pings (per process and key) carrying the probe; samples, median/spread, p, mean: values
DEMO_PROBES: tuple[DemoProbe, ...] = (
    _h("GC_MS", "exponential", ("parent", "content"), 1, 10_000, 50, presence=0.9, samples=6, median=40, spread=1.1),
    _h("CYCLE_COLLECTOR_MAX_PAUSE", "exponential", ("parent", "content"), 1, 10_000, 50, presence=0.85, samples=4,
       median=8, spread=1.0),
    _h("FX_TAB_SWITCH_TOTAL_E10S_MS", "exponential", ("parent",), 1, 1_000, 20, presence=0.7, samples=5, median=60,
       spread=0.8),
    _h("COMPOSITE_TIME", "exponential", ("gpu",), 1, 1_000, 50, presence=0.95, samples=10, median=3, spread=0.7),
    _h("IPC_MESSAGE_SIZE", "exponential", ("parent", "content"), 1, 8_000_000, 50,
       keys=("PContent::Msg_AsyncMessage", "PBrowser::Msg_AsyncMessage"), presence=0.6, samples=3, median=4_000,
       spread=1.5),
    _h("CPU_USAGE_PERCENT", "linear", ("parent", "content", "gpu"), 1, 100, 51, presence=0.75, samples=4, median=18,
       spread=0.7),
    _h("SSL_HANDSHAKE_VERSION", "enumerated", ("parent",), n_buckets=16, presence=0.9, samples=12,
       p=(0.0, 0.01, 0.02, 0.12, 0.85)),
    _h("CANVAS_WEBGL_SUCCESS", "boolean", ("content",), presence=0.4, samples=2, p=0.97),
    _h("URLCLASSIFIER_UPDATE_ERROR", "count", ("parent",), presence=0.3, mean=1.5),
    _h("JS_TELEMETRY_ADDON_EXCEPTIONS", "count", ("parent", "content"), keys=("Adblock-Plus", "uBlock0@raymondhill.net"),
       presence=0.25, mean=3.0),
    _h("browser.engagement.total_uri_count", "uint", ("parent",), presence=0.95, mean=120),
    _h("browser.engagement.max_concurrent_tab_count", "uint", ("parent",), presence=0.95, mean=9),
    _h("gfx.compositor.frames_dropped", "uint", ("gpu",), presence=0.7, mean=25),
    _h("widget.dark_mode", "bool", ("parent",), presence=0.95, p=0.35),
    _h("browser.search.content.urlbar", "uint", ("parent",), keys=("google:tagged:firefox-b-d", "ddg:organic:none"),
       presence=0.45, mean=4),
)


def release_version(on: dt.date) -> int:
    """The release train's major version on a date (a new one every 28 days)."""
    return _RELEASE_AT_EPOCH + (on - _TRAIN_EPOCH).days // 28


def channel_version(channel: str, on: dt.date) -> int:
    return release_version(on) + {"release": 0, "beta": 1, "nightly": 2}[channel]


def _build(channel: str, day: dt.date, age: int, slot: int) -> tuple[str, str]:
    """(build id, application version) of a ping of `channel` submitted on `day` from a build `age` days old."""
    built = day - dt.timedelta(days=age)
    built -= dt.timedelta(days=built.toordinal() % _BUILD_EVERY[channel])
    times = _BUILD_TIME[channel]
    major = channel_version(channel, built)
    return built.strftime("%Y%m%d") + times[slot % len(times)], f"{major}.0a1" if channel == "nightly" else f"{major}.0"


def _section(probes: list[DemoProbe], process: str, rng: np.random.Generator) -> dict:
    """One process's probes: histograms, keyedHistograms, scalars, keyedScalars (only the non-empty ones)."""
    out: dict[str, dict] = {}
    for probe in probes:
        if process not in probe.processes:
            continue
        for key in probe.keys or (None,):
            if rng.random() >= probe.sim["presence"]:
                continue
            value = probe.scalar_value(rng) if probe.scalar else probe.histogram(rng)
            section = ("keyedScalars" if probe.keys else "scalars") if probe.scalar else (
                "keyedHistograms" if probe.keys else "histograms")
            target = out.setdefault(section, {})
            if key is None:
                target[probe.name] = value
            else:
                target.setdefault(probe.name, {})[key] = value
    return out


def documents(day: dt.date, n_pings: int, seed: int = 0, probes: tuple[DemoProbe, ...] = DEMO_PROBES) -> Iterator[dict]:
    """The decoded main pings submitted on `day` (deterministic per (day, seed))."""
    if not 1 <= n_pings <= MAX_PINGS_PER_DAY:
        raise ValueError(f"pings per day must be between 1 and {MAX_PINGS_PER_DAY:,} (got {n_pings}).")
    rng = np.random.default_rng([seed, day.toordinal()])
    weights = np.array([p[2] for p in _PLATFORMS])
    platforms = rng.choice(len(_PLATFORMS), size=n_pings, p=weights / weights.sum())
    channels = rng.choice(len(CHANNELS), size=n_pings, p=_CHANNEL_P)
    probes = list(probes)
    for index in range(n_pings):
        application, os_name, _, os_versions, archs = _PLATFORMS[platforms[index]]
        channel = CHANNELS[channels[index]]
        age = int(rng.geometric(1.0 / (1.0 + _MEAN_BUILD_AGE[channel]))) - 1
        build_id, version = _build(channel, day, age, int(rng.integers(2)))
        processes = {p: _section(probes, p, rng) for p in ("parent", "content", "gpu")
                     if p != "gpu" or os_name == "Windows_NT"}
        parent = processes.pop("parent")
        payload = {"histograms": parent.pop("histograms", {}), "keyedHistograms": parent.pop("keyedHistograms", {}),
                   "simpleMeasurements": {"uptime": int(rng.integers(1, 600))},
                   "processes": {"parent": parent, **processes}}
        yield {
            "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | index)),
            "meta": {"submissionDate": day.strftime("%Y%m%d"), "sampleId": int(rng.integers(100))},
            "application": {"channel": channel, "version": version, "buildId": build_id, "name": application,
                            "architecture": archs[int(rng.integers(len(archs)))]},
            "environment": {"system": {"os": {"name": os_name,
                                              "version": os_versions[int(rng.integers(len(os_versions)))]}}},
            "payload": payload,
        }


def write_jsonl(path: Path, start: dt.date, days: int, pings_per_day: int, seed: int = 0) -> int:
    """Write `days` days of demo pings from `start` to a JSON-lines file; returns the number of pings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w") as handle:
        for offset in range(days):
            for document in documents(start + dt.timedelta(days=offset), pings_per_day, seed):
                handle.write(json.dumps(document, separators=(",", ":")) + "\n")
                written += 1
    return written


def write_demo_pings(home: str | os.PathLike, warehouse: Warehouse, today: dt.date, days: int = 14,
                     pings_per_day: int = 2_000, seed: int = 0) -> tuple[dt.date, dt.date, LoadReport]:
    """The demo's pings: the `days` days before `today`, replacing the home's ping table, loaded through
    `load_pings`, and the demo's probe definitions installed as the home's registry."""
    home = Path(home)
    start = today - dt.timedelta(days=days)
    source = home / "pings" / "demo_pings.jsonl"
    write_jsonl(source, start, days, pings_per_day, seed)
    warehouse.delete_tables([PINGS_TABLE], dataset=PINGS_DATASET)
    report = load_pings(warehouse, source)
    (home / "probes").mkdir(parents=True, exist_ok=True)
    (home / "probes" / PROBES_FILE.name).write_text(PROBES_FILE.read_text())
    return start, today - dt.timedelta(days=1), report
