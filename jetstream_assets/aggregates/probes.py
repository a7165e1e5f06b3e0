"""Probe definitions and bucket layouts: what an aggregate's `buckets`, `kind` and `description` come from.

Metric families, named as the aggregates service names them:
- a histogram keeps its name (`GC_MS`); its buckets come from its definition (Firefox's Histograms.json, or
  probe-scraper's JSON), or, for a histogram the registry does not know, from what the histogram carries in
  the ping (`histogram_type`, `range`, `bucket_count`);
- a count histogram (`histogram_type` 4) is stored as `[[COUNT]]_<NAME>`: one value per ping (its `sum`),
  counted per bucket of `COUNT_HISTOGRAM_LABELS`; the API serves it under its plain name with kind `count`;
- a simple measurement is `SIMPLE_MEASURES_<NAME>` (or `..._<NAME>_<SUB>`), buckets
  `exponential_buckets(1, 30000, 50)`, kind `exponential`;
- a numeric scalar is `SCALARS_<NAME IN CAPITALS>`, buckets `COUNT_HISTOGRAM_LABELS`, kind `exponential`;
  a keyed scalar's keys (in capitals) are its labels.

The registry is data, never code: `ProbeRegistry.load(paths)` reads probe-scraper's JSON (production),
Histograms.json and Scalars.yaml. The product ships no probes of its own; the demo ships its file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

SIMPLE_MEASURES_PREFIX = "SIMPLE_MEASURES_"
SCALARS_PREFIX = "SCALARS_"
COUNT_PREFIX = "[[COUNT]]_"
PROCESSES = ("parent", "content", "gpu")
# histogram_type in a ping -> kind
HISTOGRAM_TYPES = {0: "exponential", 1: "linear", 2: "boolean", 3: "flag", 4: "count", 5: "categorical"}
REGISTRY_ENV = "JETSTREAM_PROBES"
MAX_BUCKETS = 10_000
MAX_REGISTRY_BYTES = 200_000_000
CATEGORICAL_DEFAULT_VALUES = 50  # Firefox's n_values of a categorical histogram that gives none


class ProbeError(ValueError):
    """A probe definition (or registry file) cannot be used; the message names it and why."""


def exponential_buckets(low: int, high: int, n_buckets: int) -> list[int]:
    """Lower bounds of a Firefox exponential histogram: 0, low, then log-spaced up to `high`.

    Each next bound is the rounded log-uniform step from the current one, forced to grow by at least one
    (GC_MS, 1..10000 in 50 buckets, reads 0, 1, 2, ..., 8416, 10000).
    """
    if not 1 <= low < high or not 3 <= n_buckets <= MAX_BUCKETS:
        raise ProbeError(f"exponential buckets need 1 <= low < high and 3..{MAX_BUCKETS} buckets "
                         f"(got {low}, {high}, {n_buckets})")
    bounds = [0, low]
    current = low
    log_high = math.log(high)
    for index in range(2, n_buckets):
        log_current = math.log(current)
        candidate = int(math.floor(math.exp(log_current + (log_high - log_current) / (n_buckets - index)) + 0.5))
        current = candidate if candidate > current else current + 1
        bounds.append(current)
    return bounds


def linear_buckets(low: int, high: int, n_buckets: int) -> list[int]:
    """Lower bounds of a Firefox linear histogram: 0, then `n_buckets - 1` evenly spaced bounds low..high."""
    if not 1 <= low < high or not 3 <= n_buckets <= MAX_BUCKETS:
        raise ProbeError(f"linear buckets need 1 <= low < high and 3..{MAX_BUCKETS} buckets "
                         f"(got {low}, {high}, {n_buckets})")
    return [0] + [int((low * (n_buckets - 1 - i) + high * (i - 1)) / (n_buckets - 2) + 0.5)
                  for i in range(1, n_buckets)]


def enumerated_buckets(n_values: int) -> list[int]:
    """0 .. n_values: one bucket per value and the last for values out of range."""
    if not 1 <= n_values < MAX_BUCKETS:
        raise ProbeError(f"enumerated histograms need 1 <= n_values < {MAX_BUCKETS} (got {n_values})")
    return list(range(n_values + 1))


SIMPLE_MEASURES_LABELS = exponential_buckets(1, 30000, 50)
# the aggregates service's buckets of count histograms and numeric scalars
COUNT_HISTOGRAM_LABELS = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 23, 25, 27, 29, 31, 34, 37, 40, 43,
    46, 50, 54, 58, 63, 68, 74, 80, 86, 93, 101, 109, 118, 128, 138, 149, 161, 174, 188, 203, 219, 237, 256, 277,
    299, 323, 349, 377, 408, 441, 477, 516, 558, 603, 652, 705, 762, 824, 891, 963, 1041, 1125, 1216, 1315, 1422,
    1537, 1662, 1797, 1943, 2101, 2271, 2455, 2654, 2869, 3102, 3354, 3626, 3920, 4238, 4582, 4954, 5356, 5791,
    6261, 6769, 7318, 7912, 8554, 9249, 10000,
]
BOOLEAN_BUCKETS = [0, 1, 2]


@dataclass(frozen=True)
class Layout:
    """How one metric's aggregates are laid out: kind (as the API says it), bucket labels, and whether a
    ping contributes one value counted per bucket (`value_bucketed`) or its own bucket counts."""

    kind: str
    buckets: tuple
    value_bucketed: bool = False

    @property
    def categorical(self) -> bool:
        return self.kind == "categorical"

    def positions(self, keys) -> np.ndarray:
        """Bucket position of each key: a bucket's lower bound (or a value) goes to the bucket it falls in;
        a categorical histogram's key is its label's index. Out-of-range keys go to the first/last bucket."""
        keys = np.asarray(keys, dtype=np.float64)
        last = len(self.buckets) - 1
        if self.categorical:
            return np.clip(np.floor(keys), 0, last).astype(np.int64)
        bounds = np.asarray(self.buckets, dtype=np.float64)
        return np.clip(np.searchsorted(bounds, keys, side="right") - 1, 0, last).astype(np.int64)


def histogram_layout(kind: str, low: int = 1, high: int = 2, n_buckets: int = 3, n_values: int | None = None,
                     labels: Iterable[str] = ()) -> Layout:
    """The layout of a histogram of `kind` (Histograms.json's words; `enumerated` is served as `linear`)."""
    if kind == "exponential":
        return Layout("exponential", tuple(exponential_buckets(low, high, n_buckets)))
    if kind == "linear":
        return Layout("linear", tuple(linear_buckets(low, high, n_buckets)))
    if kind == "enumerated":
        return Layout("linear", tuple(enumerated_buckets(n_values or n_buckets - 1)))
    if kind in ("boolean", "flag"):
        return Layout(kind, tuple(BOOLEAN_BUCKETS))
    if kind == "count":
        return Layout("count", tuple(COUNT_HISTOGRAM_LABELS), value_bucketed=True)
    if kind == "categorical":
        names = [str(label) for label in labels]
        size = max(len(names) + 1, n_values + 1 if n_values else n_buckets)
        if size > MAX_BUCKETS:
            raise ProbeError(f"categorical histogram with {size} buckets (at most {MAX_BUCKETS})")
        return Layout("categorical", tuple(names + [str(i) for i in range(len(names), size)]))
    raise ProbeError(f"unknown histogram kind {kind!r}")


def fallback_layout(histogram_type, low, high, bucket_count) -> Layout | None:
    """A histogram's layout from what it carries in the ping, or None when that is not enough."""
    try:
        kind = HISTOGRAM_TYPES.get(int(histogram_type))
        if kind == "categorical":
            return histogram_layout("categorical", n_buckets=int(bucket_count))
        if kind in ("exponential", "linear"):
            return histogram_layout(kind, int(low), int(high), int(bucket_count))
        return histogram_layout(kind) if kind else None
    except (ProbeError, TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class Definition:
    """One probe: a histogram (`layout` set) or a scalar (`layout` None)."""

    name: str
    description: str
    layout: Layout | None = None
    keyed: bool = False


def metric_layout(metric: str) -> Layout | None:
    """The fixed layout of the value-bucketed families, from the metric name alone."""
    if metric.startswith(COUNT_PREFIX):
        return Layout("count", tuple(COUNT_HISTOGRAM_LABELS), value_bucketed=True)
    if metric.startswith(SIMPLE_MEASURES_PREFIX):
        return Layout("exponential", tuple(SIMPLE_MEASURES_LABELS), value_bucketed=True)
    if metric.startswith(SCALARS_PREFIX):
        return Layout("exponential", tuple(COUNT_HISTOGRAM_LABELS), value_bucketed=True)
    return None


class ProbeRegistry:
    """Histogram definitions by name and scalar definitions by name (`browser.engagement.total_uri_count`)."""

    def __init__(self, definitions: Iterable[Definition] = (), sources: tuple[str, ...] = ()):
        self.histograms: dict[str, Definition] = {}
        self.scalars: dict[str, Definition] = {}
        self.sources = sources
        for definition in definitions:
            target = self.histograms if definition.layout is not None else self.scalars
            target[definition.name] = definition

    # -- what the aggregation and the API ask -------------------------------------------------------
    def layout(self, metric: str) -> Layout | None:
        """A stored metric's layout from the registry (None: use what the pings carried)."""
        fixed = metric_layout(metric)
        if fixed is not None:
            return fixed
        definition = self.histograms.get(metric)
        return definition.layout if definition else None

    def description(self, metric: str) -> str:
        """Scalars always carry a description (the registry's, or one naming the scalar); histograms the
        registry's or none; simple measurements none (as the service answers)."""
        name = metric.removeprefix(COUNT_PREFIX)
        if metric.startswith(SCALARS_PREFIX):
            scalar = self.scalars.get(metric[len(SCALARS_PREFIX):].lower())
            if scalar and scalar.description:
                return scalar.description
            return f"Scalar {metric[len(SCALARS_PREFIX):].lower()} (no definition in the probe registry)"
        definition = self.histograms.get(name)
        return definition.description if definition else ""

    def __len__(self) -> int:
        return len(self.histograms) + len(self.scalars)

    # -- loading ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike]) -> ProbeRegistry:
        """Definitions from probe-scraper JSON, Histograms.json or Scalars.yaml files (later files win)."""
        definitions: list[Definition] = []
        sources = []
        for path in paths:
            path = Path(path)
            sources.append(str(path))
            try:
                if path.stat().st_size > MAX_REGISTRY_BYTES:
                    raise ProbeError(f"{path} is larger than {MAX_REGISTRY_BYTES:,} bytes")
                text = path.read_text(encoding="utf-8")
                data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
            except (OSError, ValueError, yaml.YAMLError) as e:
                raise ProbeError(f"Cannot read the probe definitions in {path}: {e}") from e
            if not isinstance(data, dict):
                raise ProbeError(f"{path}: probe definitions must be a JSON/YAML object")
            definitions.extend(_parse(path, data))
        return cls(definitions, tuple(sources))

    @classmethod
    def for_home(cls, home: str | os.PathLike) -> ProbeRegistry:
        """The registry of a home (`registry_paths`); empty when there is none (pings then carry the layouts)."""
        return cls.load(registry_paths(home))


def registry_paths(home: str | os.PathLike) -> list[Path]:
    """`$JETSTREAM_PROBES` (paths separated by the OS path separator), else every `*.json`/`*.yaml` file in
    `<home>/probes/`."""
    configured = os.environ.get(REGISTRY_ENV, "").strip()
    if configured:
        return [Path(p) for p in configured.split(os.pathsep) if p]
    folder = Path(home) / "probes"
    return sorted(p for p in folder.glob("*") if p.suffix in (".json", ".yaml", ".yml")) if folder.is_dir() else []


def _parse(path: Path, data: dict) -> list[Definition]:
    if all(isinstance(v, dict) and "history" in v for v in data.values()) and data:
        return [d for key, entry in data.items() if (d := _probe_scraper(path, key, entry))]
    if all(isinstance(v, dict) and "kind" in v for v in data.values()) and data:
        return [_histogram(path, name, spec) for name, spec in data.items()]
    return _scalars_yaml(path, data)


def _histogram(path: Path, name: str, spec: dict, description: str | None = None) -> Definition:
    try:
        kind = spec["kind"]
        n_values = spec.get("n_values")
        if n_values is None and kind == "categorical":
            n_values = CATEGORICAL_DEFAULT_VALUES
        layout = histogram_layout(kind, int(spec.get("low") or 1), int(spec.get("high") or 2),
                                  int(spec.get("n_buckets") or 3), int(n_values) if n_values else None,
                                  spec.get("labels") or ())
    except (KeyError, TypeError, ValueError) as e:
        raise ProbeError(f"{path}: histogram {name}: {e}") from e
    text = description if description is not None else spec.get("description", "")
    return Definition(name, _text(text), layout, bool(spec.get("keyed", False)))


def _text(value) -> str:
    if isinstance(value, list):
        value = " ".join(map(str, value))
    return " ".join(str(value or "").split())


def _probe_scraper(path: Path, key: str, entry: dict) -> Definition | None:
    kind = entry.get("type")
    history = entry.get("history") or {}
    versions = next((history[c] for c in ("nightly", "beta", "release") if history.get(c)), None)
    versions = versions or next((v for v in history.values() if v), None)
    if not versions or kind not in ("histogram", "scalar"):
        return None  # events and other probe types carry no aggregates
    latest = versions[0]
    details = latest.get("details") or {}
    name = entry.get("name") or key.split("/", 1)[-1]
    if kind == "histogram":
        return _histogram(path, name, details, latest.get("description", ""))
    return Definition(name, _text(latest.get("description", "")), None, bool(details.get("keyed", False)))


def _scalars_yaml(path: Path, data: dict) -> list[Definition]:
    out = []
    for category, probes in data.items():
        if not isinstance(probes, dict):
            raise ProbeError(f"{path}: category {category!r} is not a mapping of scalars")
        for name, spec in probes.items():
            if not isinstance(spec, dict) or "kind" not in spec:
                raise ProbeError(f"{path}: {category}.{name} is not a scalar definition (no kind)")
            out.append(Definition(f"{category}.{name}", _text(spec.get("description", "")), None,
                                  bool(spec.get("keyed", False))))
    return out
