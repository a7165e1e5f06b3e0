"""Libraries imported on first use instead of when a module that names them is imported.

mozanalysis's experiment module (the enrollment and metric SQL) imports its BigQuery helpers, which import
the Google BigQuery client library (with its Storage API client, google-auth and cryptography) and Google's
API exceptions (with the protobuf messages of gRPC error details): half a second of every CLI run and sensor
tick, though only the Google engines use them. With the local engines those modules are deferred
(`importlib.util.LazyLoader`): their names are in `sys.modules` at once, and each is executed when something
first reads one of its attributes (a BigQuery client, a job config, an error detail message, ...), so code
that uses them works unchanged. When JETSTREAM_BIGQUERY_PROJECT or JETSTREAM_GCS_BUCKET selects a Google
engine at import time nothing is deferred: the libraries load as before, once, in the importing thread
(Python 3.11's lazy modules have no lock against two threads touching one first at the same moment).
"""

from __future__ import annotations

import importlib.util
import os
import sys

# Deferred while the local engines are selected (resources.build_warehouse and build_export_store read the
# same variables).
DEFERRED_WITH_LOCAL_ENGINES = (
    "google.cloud.bigquery",
    "google.rpc.error_details_pb2",  # google.api_core.exceptions reads them only to describe a gRPC error
    "google.rpc.status_pb2",
)
GOOGLE_ENGINES = ("JETSTREAM_BIGQUERY_PROJECT", "JETSTREAM_GCS_BUCKET")


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
    if not any(os.environ.get(name, "").strip() for name in GOOGLE_ENGINES):
        for name in DEFERRED_WITH_LOCAL_ENGINES:
            defer(name)
