"""metric-hub loading and per-experiment analysis configuration."""

from . import fast_paths, glob_cache, render_cache, sandbox, scoped

sandbox.install()  # before anything renders a metric-hub template: metric-config-parser renders sandboxed
glob_cache.install()  # metric-config-parser's spec merges translate each glob once
render_cache.install()  # a metric's select_expression renders once per call, not once per experiment
fast_paths.install()  # the library's per-metric deep copy of statistic parameters and dedent, same results
scoped.install()  # a data source resolves once per experiment, not once per metric

from .errors import ConfigError
from .hub_file import ConfigFileError
from .hub_git import MetricHubError
from .metric_hub import LoadedConfigs, load_metric_hub
from .resolve import (
    PERIOD_KEYS,
    PLATFORMS,
    Platform,
    ResolvedConfig,
    resolve_config,
    statistic_names,
)

__all__ = [
    "PERIOD_KEYS",
    "PLATFORMS",
    "ConfigError",
    "ConfigFileError",
    "LoadedConfigs",
    "MetricHub",
    "MetricHubError",
    "Platform",
    "ResolvedConfig",
    "load_metric_hub",
    "resolve_config",
    "statistic_names",
]


def __getattr__(name: str):
    """`MetricHub`, the Dagster resource, imported on first use (see `metric_hub.__getattr__`)."""
    if name == "MetricHub":
        from .metric_hub_resource import MetricHub

        return MetricHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
