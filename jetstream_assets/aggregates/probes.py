"""Probe definitions (what Histograms.json and Scalars.yaml say about each probe) and their bucket labels.

The aggregates API answers `buckets`, `kind` and `description` from these definitions, and the aggregation
turns ping values into bucket positions with them, so both always agree. Names follow the aggregates
service: a histogram keeps its name (`GC_MS`); a scalar `browser.engagement.total_uri_count` becomes
`SCALARS_BROWSER.ENGAGEMENT.TOTAL_URI_COUNT`.

Two ways of filling an aggregate's buckets:
- bucket-summed: a ping's histogram already counts samples per bucket; the aggregate adds those counts
  (exponential, linear, enumerated and boolean histograms);
- value-bucketed: a ping carries one number per probe (a scalar, or the total of a count histogram); the
  aggregate counts pings per bucket of that number (the service's "distribution of per-ping values").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

HISTOGRAM_KINDS = ("exponential", "linear", "enumerated", "boolean", "count")
PROCESSES = ("parent", "content", "gpu")
# the aggregates service's `child` dimension: parent process "false", content process "true", gpu "gpu"
CHILD_OF_PROCESS = {"parent": "false", "content": "true", "gpu": "gpu"}
SCALAR_PREFIX = "SCALARS_"


def exponential_buckets(low: int, high: int, n_buckets: int) -> list[int]:
    """Lower bounds of an exponential histogram: 0, low, then log-spaced up to `high`.

    Each next bound is the rounded value a log-uniform step from the current bound would reach, forced to
    grow by at least one, as Firefox lays out its exponential histograms (GC_MS 1..10000 in 50 buckets
    reads 0, 1, 2, ..., 8416, 10000).
    """
    if not 1 <= low < high or n_buckets < 3:
        raise ValueError(f"exponential buckets need 1 <= low < high and n_buckets >= 3 (got {low}, {high}, {n_buckets})")
    bounds = [0, low]
    current = low
    log_high = math.log(high)
    for index in range(2, n_buckets):
        log_current = math.log(current)
        step = (log_high - log_current) / (n_buckets - index)
        candidate = int(math.floor(math.exp(log_current + step) + 0.5))
        current = candidate if candidate > current else current + 1
        bounds.append(current)
    return bounds


def linear_buckets(low: int, high: int, n_buckets: int) -> list[int]:
    """Lower bounds of a linear histogram: 0, then `n_buckets - 1` evenly spaced bounds from low to high."""
    if not 1 <= low < high or n_buckets < 3:
        raise ValueError(f"linear buckets need 1 <= low < high and n_buckets >= 3 (got {low}, {high}, {n_buckets})")
    bounds = [0]
    for index in range(1, n_buckets):
        value = (low * (n_buckets - 1 - index) + high * (index - 1)) / (n_buckets - 2)
        bounds.append(int(value + 0.5))
    return bounds


def enumerated_buckets(n_values: int) -> list[int]:
    """0 .. n_values: one bucket per value and a last one for out-of-range values."""
    if n_values < 1:
        raise ValueError(f"enumerated histograms need n_values >= 1 (got {n_values})")
    return list(range(n_values + 1))


BOOLEAN_BUCKETS = [0, 1, 2]
# Buckets of value-bucketed probes (numeric scalars and count histograms): per-ping values up to a million.
VALUE_BUCKETS = exponential_buckets(1, 1_000_000, 50)


@dataclass(frozen=True)
class Probe:
    """One probe as the aggregates see it; `sim` parameters only shape the synthetic pings."""

    name: str  # as in the ping: GC_MS, browser.engagement.total_uri_count
    probe_type: str  # histogram | keyed_histogram | scalar | keyed_scalar
    kind: str  # exponential | linear | enumerated | boolean | count | uint (scalar) | boolean (scalar)
    description: str
    processes: tuple[str, ...] = ("parent",)
    low: int = 1
    high: int = 2
    n_buckets: int = 3
    keys: tuple[str, ...] = ()  # the labels a keyed probe is seen with
    sim: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def keyed(self) -> bool:
        return self.probe_type.startswith("keyed_")

    @property
    def is_scalar(self) -> bool:
        return self.probe_type.endswith("scalar")

    @property
    def metric(self) -> str:
        """The name the aggregates and their API use."""
        return SCALAR_PREFIX + self.name.upper() if self.is_scalar else self.name

    @property
    def value_bucketed(self) -> bool:
        """True when an aggregate counts pings per bucket of one per-ping value (scalars, count histograms)."""
        return self.is_scalar or self.kind == "count"

    @property
    def api_kind(self) -> str:
        """`kind` in API replies: a histogram's own kind; numeric scalars read as exponential."""
        if self.is_scalar:
            return "boolean" if self.kind == "boolean" else "exponential"
        return self.kind

    @cached_property
    def buckets(self) -> list[int]:
        if self.kind == "boolean":
            return list(BOOLEAN_BUCKETS)
        if self.value_bucketed:
            return list(VALUE_BUCKETS)
        if self.kind == "exponential":
            return exponential_buckets(self.low, self.high, self.n_buckets)
        if self.kind == "linear":
            return linear_buckets(self.low, self.high, self.n_buckets)
        if self.kind == "enumerated":
            return enumerated_buckets(self.n_buckets)
        raise ValueError(f"Probe {self.name}: unknown kind {self.kind!r}")

    @cached_property
    def _bounds(self) -> np.ndarray:
        return np.asarray(self.buckets, dtype=np.int64)

    def bucket_index(self, values) -> np.ndarray:
        """Position of the bucket each value falls in (values below 0 go to the first, above to the last)."""
        index = np.searchsorted(self._bounds, np.asarray(values, dtype=np.int64), side="right") - 1
        return np.clip(index, 0, len(self._bounds) - 1)


def _h(name, kind, description, processes, low=1, high=2, n_buckets=3, keys=(), **sim) -> Probe:
    probe_type = "keyed_histogram" if keys else "histogram"
    return Probe(name, probe_type, kind, description, tuple(processes), low, high, n_buckets, tuple(keys), sim)


def _s(name, kind, description, processes, keys=(), **sim) -> Probe:
    probe_type = "keyed_scalar" if keys else "scalar"
    return Probe(name, probe_type, kind, description, tuple(processes), keys=tuple(keys), sim=sim)


# The demo's probe registry. `sim`: presence = share of pings (per process and key) carrying the probe,
# samples = mean samples per ping histogram, median/spread = log-normal values, p = categorical weights
# or the chance of `true`, mean = mean per-ping count or scalar value.
DEMO_PROBES: tuple[Probe, ...] = (
    _h("GC_MS", "exponential", "Time spent running JS GC (ms)", ("parent", "content"), 1, 10_000, 50,
       presence=0.9, samples=6, median=40, spread=1.1),
    _h("CYCLE_COLLECTOR_MAX_PAUSE", "exponential", "Longest pause of a cycle collection (ms)",
       ("parent", "content"), 1, 10_000, 50, presence=0.85, samples=4, median=8, spread=1.0),
    _h("FX_TAB_SWITCH_TOTAL_E10S_MS", "exponential", "Time from a tab switch request to the first paint (ms)",
       ("parent",), 1, 1_000, 20, presence=0.7, samples=5, median=60, spread=0.8),
    _h("CONTENT_PAINT_TIME", "exponential", "Time spent painting a content frame (ms)", ("content", "gpu"),
       1, 1_000, 50, presence=0.8, samples=8, median=5, spread=0.9),
    _h("COMPOSITE_TIME", "exponential", "Time spent compositing a frame (ms)", ("gpu",), 1, 1_000, 50,
       presence=0.95, samples=10, median=3, spread=0.7),
    _h("IPC_MESSAGE_SIZE", "exponential", "Size of IPC messages sent, by message type (bytes)",
       ("parent", "content"), 1, 8_000_000, 50,
       keys=("PContent::Msg_AsyncMessage", "PBrowser::Msg_AsyncMessage", "PWindowGlobal::Msg_RawMessage"),
       presence=0.6, samples=3, median=4_000, spread=1.5),
    _h("CPU_USAGE_PERCENT", "linear", "Share of one CPU core used while active (%)",
       ("parent", "content", "gpu"), 1, 100, 51, presence=0.75, samples=4, median=18, spread=0.7),
    _h("TAB_COUNT_AT_STARTUP", "linear", "Tabs restored when the session starts", ("parent",), 1, 50, 50,
       presence=0.5, samples=1, median=6, spread=0.9),
    _h("SSL_HANDSHAKE_VERSION", "enumerated", "TLS version negotiated (1 = TLS 1.0 ... 4 = TLS 1.3)",
       ("parent",), n_buckets=16, presence=0.9, samples=12, p=(0.0, 0.01, 0.02, 0.12, 0.85)),
    _h("HTTP_CACHE_DISPOSITION", "enumerated", "HTTP cache outcome (0 hit, 1 miss, 2 validated, 3 write error)",
       ("parent",), n_buckets=5, presence=0.9, samples=15, p=(0.45, 0.35, 0.18, 0.02)),
    _h("GFX_DEVICE_RESET_REASON", "enumerated", "Why the graphics device was reset", ("gpu",), n_buckets=10,
       presence=0.05, samples=1, p=(0.1, 0.4, 0.2, 0.1, 0.1, 0.05, 0.05)),
    _h("CANVAS_WEBGL_SUCCESS", "boolean", "Whether creating a WebGL context succeeded", ("content",),
       presence=0.4, samples=2, p=0.97),
    _h("GPU_PROCESS_ACCELERATED", "boolean", "Whether the GPU process runs with hardware acceleration",
       ("gpu",), presence=0.9, samples=1, p=0.92),
    _h("URLCLASSIFIER_UPDATE_ERROR", "count", "Safe Browsing list updates that failed", ("parent",),
       presence=0.3, mean=1.5),
    _h("JS_TELEMETRY_ADDON_EXCEPTIONS", "count", "Exceptions thrown by add-on code, by add-on",
       ("parent", "content"), keys=("Adblock-Plus", "uBlock0@raymondhill.net", "{d10d0bc8-dcc4-4d22-aa09}"),
       presence=0.25, mean=3.0),
    _h("SUBPROCESS_CRASHES_WITH_DUMP", "count", "Child process crashes that left a dump, by process type",
       ("parent",), keys=("content", "gpu", "rdd"), presence=0.08, mean=1.2),
    _s("browser.engagement.total_uri_count", "uint", "URIs loaded in tabs and windows", ("parent",),
       presence=0.95, mean=120),
    _s("browser.engagement.max_concurrent_tab_count", "uint", "Largest number of tabs open at once",
       ("parent",), presence=0.95, mean=9),
    _s("browser.engagement.tab_open_event_count", "uint", "Tabs opened", ("parent",), presence=0.9, mean=14),
    _s("dom.contentprocess.troubled_due_to_memory", "uint", "Content processes killed for using too much memory",
       ("content",), presence=0.2, mean=1.1),
    _s("gfx.compositor.frames_dropped", "uint", "Frames the compositor dropped", ("gpu",), presence=0.7, mean=25),
    _s("widget.dark_mode", "boolean", "Whether the operating system is in dark mode", ("parent",),
       presence=0.95, p=0.35),
    _s("browser.search.content.urlbar", "uint", "Searches from the address bar, by engine and tagging",
       ("parent",), keys=("google:tagged:firefox-b-d", "bing:tagged:MOZI", "ddg:organic:none"),
       presence=0.45, mean=4),
    _s("a11y.theme", "boolean", "Accessibility theme settings in use, by setting", ("parent",),
       keys=("always_underline_links", "high_contrast"), presence=0.9, p=0.08),
)


class ProbeRegistry:
    """Probe definitions by aggregate metric name (the API's `metric`)."""

    def __init__(self, probes: tuple[Probe, ...] | list[Probe] = DEMO_PROBES):
        self._by_metric: dict[str, Probe] = {}
        for probe in probes:
            if probe.metric in self._by_metric:
                raise ValueError(f"Two probes aggregate to the same metric {probe.metric!r}")
            probe.buckets  # noqa: B018 -- a bad definition fails here, not in a request
            self._by_metric[probe.metric] = probe

    def get(self, metric: str) -> Probe | None:
        return self._by_metric.get(metric)

    def __iter__(self):
        return iter(self._by_metric.values())

    def __len__(self) -> int:
        return len(self._by_metric)

    @property
    def metrics(self) -> list[str]:
        return sorted(self._by_metric)


DEMO_REGISTRY = ProbeRegistry()
