"""Which metric-hub file is what, which metric-hub it belongs to, and where an entry is written (file, line).

A file given outside a metric-hub checkout (`--metric-hub`) is validated in a temporary copy of that hub
holding it where a file of its kind belongs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mozanalysis.experiment import TimeLimits

from jetstream_assets.config.hub_file import field_line, key_line
from jetstream_assets.config.hub_git import MetricHubError
from jetstream_assets.config.metric_hub import (
    DEFINITIONS_DIR,
    FUNCTIONS_FILE,
    JETSTREAM_DIR,
    LoadedConfigs,
    load_metric_hub,
)
from jetstream_assets.config.resolve import ResolvedConfig
from jetstream_assets.validation.report import CONFIG, PARSE, FileReport, Problem

# ----------------------------------------------------------------------------------------------
# which file is what


@dataclass
class Target:
    path: Path  # as given
    display: str
    kind: str
    hub: Path | None = None
    rel: str | None = None  # path inside the (possibly overlaid) hub
    platform: str | None = None
    loaded: LoadedConfigs | None = None
    resolved: ResolvedConfig | None = None
    limits: TimeLimits | None = None
    report: FileReport | None = None
    #: `sql.Query`s to dry-run
    queries: list = field(default_factory=list)


def file_kind(path: Path) -> str:
    """What a metric-hub file is, from where it sits."""
    if ".example" in path.suffixes or path.suffix != ".toml":
        return "skipped"
    parent = path.parent.name
    if parent == DEFINITIONS_DIR:
        return "functions" if path.name == FUNCTIONS_FILE else "definitions"
    if parent == "defaults":
        return "defaults"
    if path.parent.parent.name == "outcomes":
        return "outcome"
    return "experiment"


def hub_root(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / JETSTREAM_DIR).is_dir():
            return parent
    return None


def hub_rel(path: Path, kind: str) -> str:
    """Where a file of `kind` lives in a metric-hub."""
    if kind == "definitions" or kind == "functions":
        return f"{DEFINITIONS_DIR}/{path.name}"
    if kind == "defaults":
        return f"{JETSTREAM_DIR}/defaults/{path.name}"
    if kind == "outcome":
        return f"{JETSTREAM_DIR}/outcomes/{path.parent.name}/{path.name}"
    return f"{JETSTREAM_DIR}/{path.name}"



def display_name(target: Target, rel: str | None) -> str:
    """How a metric-hub file is named in problems: the validated file as given, others by location."""
    if rel is None or rel == target.rel or target.hub is None:
        return target.display
    path = target.hub / rel
    return str(path) if Path(target.display).is_absolute() else os.path.relpath(path)



def own_line(target: Target, fld: str) -> int | None:
    """Line of `fld` (e.g. `experiment.enrollment_query`) in the validated file, if written there."""
    loaded = target.loaded
    if loaded is None or not target.rel:
        return None
    with contextlib.suppress(OSError):
        return field_line((loaded.root / target.rel).read_text(encoding="utf-8"), fld)
    return None


def locate(target: Target, path: list[str], key: str | None = None) -> tuple[str, int | None]:
    """The file (shown as given for the validated one) and line that define a config entry (with `key`:
    the line of that key in the entry's table)."""
    loaded = target.loaded
    if loaded is None:
        return target.display, None
    platform = target.platform or "firefox_desktop"
    candidates = [target.rel] if target.rel else []
    candidates += sorted(
        r for r in loaded.raw if r.startswith(f"{loaded.jetstream_prefix}outcomes/{platform}/")
    )
    candidates += [loaded.defaults_path(platform), *reversed(loaded.definition_paths(platform))]
    for rel in candidates:
        node = loaded.raw.get(rel or "")
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            text = None
            with contextlib.suppress(OSError):
                text = (loaded.root / rel).read_text(encoding="utf-8")
            line = field_line(text, ".".join(path)) if text else None
            if key is not None and text:
                line = key_line(text, line, key)
            return display_name(target, rel), line
    return target.display, None



# ----------------------------------------------------------------------------------------------
# entry point


@contextlib.contextmanager
def _overlay(hub: Path, path: Path, kind: str) -> Iterator[tuple[Path, str]]:
    """A temporary copy of `hub` holding `path` where a file of its kind belongs."""
    tmp = Path(tempfile.mkdtemp(prefix="validate-config-"))
    try:
        root = tmp / "metric-hub"
        shutil.copytree(hub, root, ignore=shutil.ignore_patterns(".git"))
        rel = hub_rel(path, kind)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / rel)
        yield root, rel
    finally:
        shutil.rmtree(tmp, ignore_errors=True)




def prepare_target(
    path: Path, metric_hub: str | Path | None, stack: contextlib.ExitStack, hubs: dict | None = None
) -> Target:
    """What `path` is and the metric-hub it is validated in (`hubs`: hubs loaded by this call, by root)."""
    hubs = {} if hubs is None else hubs
    display = str(path)
    kind = file_kind(path)
    target = Target(path, display, kind)
    target.report = FileReport(display, kind)
    if kind == "skipped":
        target.report.note = "not a config (example or not TOML): skipped"
        return target
    if not path.is_file():
        target.report.problems.append(Problem(display, None, "no such file", PARSE))
        return target
    hub = Path(metric_hub).resolve() if metric_hub else hub_root(path)
    if hub is None:
        target.report.problems.append(Problem(
            display, None, "cannot tell which metric-hub this file belongs to (no `jetstream` folder "
            "above it): pass --metric-hub", PARSE,
        ))
        return target
    try:
        rel = path.resolve().relative_to(hub).as_posix()
        inside = rel == hub_rel(path, kind) or (
            kind == "definitions" and rel.endswith(f"definitions/{path.name}")
        )
    except ValueError:
        inside = False
    try:
        if inside:
            if hub not in hubs:
                hubs[hub] = load_metric_hub(hub)
            target.loaded = hubs[hub]
        else:
            root, rel = stack.enter_context(_overlay(hub, path, kind))
            target.loaded = load_metric_hub(root)
    except MetricHubError as e:
        target.report.problems.append(Problem(display, None, str(e), PARSE))
        return target
    target.hub, target.rel = hub, rel
    raw = target.loaded.raw.get(rel)
    if isinstance(raw, dict) and "project" in raw:
        target.kind = target.report.kind = "skipped"
        target.report.note = "an OpMon config (has `project`), not Jetstream's: skipped"
        return target
    for error in target.loaded.errors_for(rel):
        target.report.problems.append(
            Problem(display, error.field, error.cause, PARSE if error.field is None else CONFIG, error.line)
        )
    return target


