"""Libraries imported on first use instead of when a module that names them is imported.

mozanalysis's experiment module (the enrollment and metric SQL) imports its BigQuery helpers, which import
the Google BigQuery client library (with its Storage API client, gRPC, google-auth and cryptography): a
third of a second of every CLI run and sensor tick, though only the BigQuery engine uses it. With the local
engine that library is deferred (`importlib.util.LazyLoader`): its name is in `sys.modules` at once, and it
is executed when something first reads one of its attributes (a BigQuery client, a job config, ...), so code
that uses it works unchanged. When JETSTREAM_BIGQUERY_PROJECT selects BigQuery at import time nothing is
deferred: the library loads as before, once, in the importing thread (Python 3.11's lazy modules have no lock
against two threads touching one first at the same moment).
"""

from __future__ import annotations

import importlib.util
import os
import sys

# Deferred while the local engine is selected (resources.build_warehouse reads the same variable).
DEFERRED_WITH_LOCAL_ENGINE = ("google.cloud.bigquery",)


def defer(name: str) -> bool:
    """Put `name` in `sys.modules` as a module that loads on its first attribute access; False (nothing done)
    when it is imported already or not installed."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None:
        return False
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:  # as an import binds a submodule on its package
        setattr(sys.modules[parent], child, module)
    return True


def defer_unused_engines() -> None:
    if not os.environ.get("JETSTREAM_BIGQUERY_PROJECT", "").strip():
        for name in DEFERRED_WITH_LOCAL_ENGINE:
            defer(name)
