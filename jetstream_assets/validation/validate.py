"""Jetstream's `validate-config`: check metric-hub files before they are merged.

For each file (experiment config, outcome, platform or experiment-type defaults, definitions) this
parses it, resolves it the way the analysis will (against the platform's defaults and definitions of
the metric-hub the file lives in), builds the enrollments and metrics SQL with mozanalysis and dry-runs
that SQL through the `Warehouse` interface (DuckDB EXPLAIN locally, a dry run on BigQuery). Unlike
metric-config-parser alone it also reports unknown metrics, unknown statistics and pre-treatments, and
SQL errors, each isolated to the metric, segment or enrollment setting that causes it.

Local dry runs need the tables the SQL reads. With `synthetic=True` they are derived from the SQL
itself (`synthetic_schemas`), which checks syntax, functions and types but cannot catch a misspelled
column or table (the derived table has it); dry runs against BigQuery or real Parquet data catch those.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from jetstream_assets.config.limits import FILE_DRY_RUN_SECONDS, LimitExceeded, deadline
from jetstream_assets.config.resolve import PLATFORMS
from jetstream_assets.validation.dry_run import DryRuns, dry_run_target
from jetstream_assets.validation.report import PARSE, SQL, FileReport, Problem
from jetstream_assets.validation.resolution import (
    resolve_defaults,
    resolve_definitions,
    resolve_experiment_config,
    resolve_outcome,
)
from jetstream_assets.validation.sql import build_queries
from jetstream_assets.validation.synthetic_engine import SyntheticEngine
from jetstream_assets.validation.targets import prepare_target

if TYPE_CHECKING:
    from jetstream_assets.warehouse.base import Warehouse

_GC_LOCK = threading.Lock()
#: calls inside `_frozen_heap` now: the first one in sets the collector up, the last one out restores it
_GC_USERS = [0]
_GC_SAVED: list[tuple[int, int, int]] = []


@contextlib.contextmanager
def _frozen_heap():
    """The objects alive before the call (imported modules, loaded libraries) are left out of the garbage
    collector's passes while it runs, and young collections run less often: validation allocates millions
    of short-lived objects (parse trees, resolved metrics), and each pass walking the survivors again cost
    a tenth of the call's time. Cyclic garbage (sqlglot trees) is still collected, by the young passes.
    Concurrent calls share the setting; the last one out restores the collector."""
    with _GC_LOCK:
        _GC_USERS[0] += 1
        if _GC_USERS[0] == 1:
            _GC_SAVED[:] = [gc.get_threshold()]
            gc.freeze()
            gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_USERS[0] -= 1
            if _GC_USERS[0] == 0:
                gc.set_threshold(*_GC_SAVED[0])
                gc.unfreeze()


def validate_configs(
    paths: Iterable[str | Path],
    *,
    platform: str | None = None,
    metric_hub: str | Path | None = None,
    warehouse: Warehouse | None = None,
    synthetic: bool = False,
    today: dt.date | None = None,
) -> list[FileReport]:
    """Validate metric-hub files; one report per path, in order.

    `warehouse` runs the dry runs; with `synthetic` (or no warehouse) they run on the synthetic engine
    (empty tables derived from each query's own SQL, `synthetic_engine`).
    """
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"--platform {platform!r} is not supported; use one of {sorted(PLATFORMS)}")
    today = today or dt.date.today()
    synthetic = synthetic or warehouse is None
    with contextlib.ExitStack() as stack:
        stack.enter_context(_frozen_heap())
        hubs: dict = {}
        targets = [prepare_target(Path(p), metric_hub, stack, hubs) for p in paths]
        for target in targets:
            problems = target.report.problems
            if target.kind in ("skipped", "functions") or target.loaded is None:
                continue
            if any(p.kind == PARSE for p in problems) or (target.kind == "experiment" and problems):
                continue  # unreadable (an experiment config with a dropped entry does not resolve)
            if target.kind == "experiment":
                resolve_experiment_config(target, platform, today)
                if target.resolved is not None and target.resolved.config.experiment.skip:
                    target.report.note = "skip = true: Jetstream ignores this experiment"
                    target.resolved = None
            elif target.kind == "outcome":
                resolve_outcome(target, today)
            elif target.kind == "defaults":
                resolve_defaults(target, platform, today)
            elif target.kind == "definitions":
                resolve_definitions(target, today)
            build_queries(target, today, own_dates=not synthetic)
        if any(t.queries for t in targets):
            if synthetic:
                engine = SyntheticEngine()
                stack.callback(engine.close)
            else:
                engine = warehouse
            dry_run = DryRuns(engine)
            for target in targets:
                try:
                    with deadline(FILE_DRY_RUN_SECONDS, "dry-running this file's SQL"):
                        dry_run_target(target, dry_run)
                except LimitExceeded as e:
                    target.report.problems.append(Problem(
                        target.display, "metrics", f"{e}: stopped after {target.report.dry_runs} dry runs, "
                        "before every query problem was traced to its metric; fix what is reported (or split "
                        "the file) and validate again", SQL,
                    ))
    return [t.report for t in targets]


