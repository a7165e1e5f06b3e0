"""Load a metric-hub checkout into a metric-config-parser `ConfigCollection`, one file at a time.

metric-config-parser's own loaders stop at the first bad file, which would block every experiment
when one config has a typo. Here each TOML file is parsed on its own; a file (or one entry of a
shared file) that fails is recorded as a `ConfigFileError` and everything else still loads.

Layout (metric-hub): `definitions/*.toml` (shared definitions per platform, `functions.toml`),
`jetstream/definitions/*.toml` (Jetstream-specific definitions, merged over the shared ones),
`jetstream/defaults/*.toml`, `jetstream/outcomes/<platform>/*.toml` and `jetstream/<slug>.toml`.
A folder without a `jetstream/` directory is read as the jetstream folder itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metric_config_parser.config import (
    Config,
    ConfigCollection,
    DefaultConfig,
    DefinitionConfig,
    Outcome,
)
from metric_config_parser.function import FunctionsSpec

from .hub_file import (
    ConfigFileError,
    analysis_spec,
    definition_spec,
    describe,
    outcome_spec,
    parse_isolating_entries,
    read_toml,
    safe_functions,
    unexpected_keys,
)
from .hub_git import MetricHubError, file_commits, git, git_rev, git_toplevel, snapshot

logger = logging.getLogger(__name__)

JETSTREAM_DIR = "jetstream"
DEFINITIONS_DIR = "definitions"
DEFAULTS_DIR = "defaults"
OUTCOMES_DIR = "outcomes"
FUNCTIONS_FILE = "functions.toml"

@dataclass
class LoadedConfigs:
    """A parsed metric-hub at one commit. Holds a `ConfigCollection`: never return it from an asset
    (it cannot be pickled); pass `commit` and `file_digests` around instead."""

    configs: ConfigCollection
    commit: str | None
    file_errors: list[ConfigFileError]
    root: Path
    #: repo-relative path -> sha256 of the file's bytes, for change detection (reruns).
    file_digests: dict[str, str] = field(default_factory=dict)
    #: repo-relative path -> parsed TOML (plain data), to locate where a field was set.
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "" for a metric-hub checkout, or "" when the folder itself is the jetstream folder.
    jetstream_prefix: str = JETSTREAM_DIR + "/"

    def experiment_config_path(self, slug: str) -> str:
        """Repo-relative path the custom config of experiment `slug` lives at."""
        return f"{self.jetstream_prefix}{slug}.toml"

    def defaults_path(self, name: str) -> str:
        return f"{self.jetstream_prefix}{DEFAULTS_DIR}/{name}.toml"

    def outcome_path(self, slug: str, platform: str) -> str:
        return f"{self.jetstream_prefix}{OUTCOMES_DIR}/{platform}/{slug}.toml"

    def definition_paths(self, platform: str) -> list[str]:
        """Definition files of a platform, later ones overriding earlier ones."""
        paths = [f"{DEFINITIONS_DIR}/{platform}.toml"]
        if self.jetstream_prefix:
            paths.append(f"{self.jetstream_prefix}{DEFINITIONS_DIR}/{platform}.toml")
        return paths

    def function_paths(self) -> list[str]:
        paths = [f"{DEFINITIONS_DIR}/{FUNCTIONS_FILE}"]
        if self.jetstream_prefix:
            paths.append(f"{self.jetstream_prefix}{DEFINITIONS_DIR}/{FUNCTIONS_FILE}")
        return paths

    def errors_for(self, path: str) -> list[ConfigFileError]:
        return [e for e in self.file_errors if e.path == path]

    def has_file(self, path: str) -> bool:
        """Whether the file exists at this commit (parsed or not)."""
        return path in self.file_digests or path in self.raw or bool(self.errors_for(path))

    def changed_files(self, other: "LoadedConfigs") -> set[str]:
        """Files added, removed or edited between `other` and this commit."""
        paths = set(self.file_digests) | set(other.file_digests)
        return {p for p in paths if self.file_digests.get(p) != other.file_digests.get(p)}


# ----------------------------------------------------------------------------------------------
# loading a folder


def _mtime(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def _toml_files(root: Path) -> list[Path]:
    """Every TOML file the loader reads, in a stable order."""
    is_hub = (root / JETSTREAM_DIR).is_dir()
    jet = root / JETSTREAM_DIR if is_hub else root
    files: list[Path] = []
    if is_hub:
        files += sorted((root / DEFINITIONS_DIR).glob("*.toml"))
    files += sorted((jet / DEFINITIONS_DIR).glob("*.toml"))
    files += sorted((jet / DEFAULTS_DIR).glob("*.toml"))
    files += sorted((jet / OUTCOMES_DIR).glob("*/*.toml"))
    files += sorted(jet.glob("*.toml"))
    return files


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for f in _toml_files(root):
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()


def parse_folder(
    root: Path, commit: str | None, outcome_commits: dict[str, str] | None = None
) -> LoadedConfigs:
    """Parse every metric-hub file under `root` on its own (no caching, no git)."""
    is_hub = (root / JETSTREAM_DIR).is_dir()
    prefix = JETSTREAM_DIR + "/" if is_hub else ""
    errors: list[ConfigFileError] = []
    digests: dict[str, str] = {}
    raws: dict[str, dict[str, Any]] = {}

    definitions: dict[str, DefinitionConfig] = {}
    functions: dict[str, Any] = {}
    defaults: list[DefaultConfig] = []
    outcomes: list[Outcome] = []
    configs: list[Config] = []

    for path in _toml_files(root):
        rel = path.relative_to(root).as_posix()
        digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        read = read_toml(path, rel, errors)
        if read is None:
            continue
        data, text = read
        raws[rel] = data
        parent = path.parent.name
        try:
            if parent == DEFINITIONS_DIR and path.name == FUNCTIONS_FILE:
                spec = FunctionsSpec.from_dict(safe_functions(data, rel, text, errors))
                functions.update(spec.functions)  # jetstream/definitions comes later and wins
            elif parent == DEFINITIONS_DIR:
                definition = parse_isolating_entries(data, definition_spec, rel, text, errors)
                if definition is None:
                    continue
                if path.stem in definitions:
                    definitions[path.stem].spec.merge(definition)
                else:
                    definitions[path.stem] = DefinitionConfig(
                        path.stem, definition, _mtime(path), platform=path.stem
                    )
            elif parent == DEFAULTS_DIR:
                if "project" in data:  # an OpMon default, not ours
                    continue
                if unexpected_keys(data, rel, text, errors):
                    continue
                spec = parse_isolating_entries(data, analysis_spec, rel, text, errors)
                if spec is not None:
                    defaults.append(DefaultConfig(path.stem, spec, _mtime(path)))
            elif path.parent.parent.name == OUTCOMES_DIR:
                if unexpected_keys(data, rel, text, errors):
                    continue
                spec = parse_isolating_entries(data, outcome_spec, rel, text, errors)
                if spec is not None:
                    outcomes.append(
                        Outcome(
                            slug=path.stem,
                            spec=spec,
                            platform=parent,
                            commit_hash=(outcome_commits or {}).get(rel, commit),
                        )
                    )
            else:
                if "project" in data:  # an OpMon config, not ours
                    continue
                if unexpected_keys(data, rel, text, errors):
                    continue
                spec = parse_isolating_entries(data, analysis_spec, rel, text, errors)
                if spec is not None:
                    configs.append(Config(path.stem, spec, _mtime(path)))
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed functions.toml
            errors.append(ConfigFileError(rel, None, describe(exc), None))

    collection = ConfigCollection(
        configs=configs,
        outcomes=outcomes,
        defaults=defaults,
        definitions=list(definitions.values()),
        functions=FunctionsSpec(functions=functions) if functions else None,
    )
    return LoadedConfigs(
        configs=collection,
        commit=commit,
        file_errors=errors,
        root=root,
        file_digests=digests,
        raw=raws,
        jetstream_prefix=prefix,
    )


_CACHE: dict[tuple, LoadedConfigs] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def load_metric_hub(path: str | Path, ref: str | None = None, remote: str | None = None) -> LoadedConfigs:
    """Load (cached per path, commit and file state) the metric-hub at `path`.

    With `ref`, the tree of that commit is read from a snapshot, leaving the checkout alone; when
    `remote` is set, `<remote>/<ref>` is preferred so a fetched branch wins over a stale local one.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise MetricHubError(
            f"metric-hub folder {root} does not exist: set MetricHub.path to a metric-hub "
            "checkout, or MetricHub.url to a git remote to clone it from"
        )
    git_root = git_toplevel(root)
    commit = None
    load_root = root
    fingerprint = None
    if git_root is not None:
        if ref:
            candidates = ([f"{remote}/{ref}"] if remote else []) + [ref]
            commit = next((c for c in (git_rev(root, r) for r in candidates) if c), None)
            if commit is None:
                raise MetricHubError(
                    f"metric-hub ref {ref!r} not found in {git_root}: set MetricHub.ref to a "
                    "branch, tag or commit of that repository (or leave it unset for HEAD)"
                )
            prefix = git(["rev-parse", "--show-prefix"], cwd=root, check=False)
            load_root = snapshot(git_root, commit, prefix)
        else:
            commit = git_rev(root, "HEAD")
    if ref is None:
        fingerprint = _fingerprint(root)  # local edits invalidate the cache too

    key = (str(root), commit, ref, fingerprint)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached

    outcome_commits: dict[str, str] = {}
    if git_root is not None and commit is not None:
        in_repo = root.relative_to(git_root)
        jet = Path(JETSTREAM_DIR) if (load_root / JETSTREAM_DIR).is_dir() else Path()
        pathspec = (in_repo / jet / OUTCOMES_DIR).as_posix()
        for repo_rel, sha in file_commits(git_root, commit, pathspec).items():
            rel = Path(repo_rel)
            if in_repo.parts:
                if rel.parts[: len(in_repo.parts)] != in_repo.parts:
                    continue
                rel = Path(*rel.parts[len(in_repo.parts) :])
            if OUTCOMES_DIR in rel.parts:
                outcome_commits[rel.as_posix()] = sha

    loaded = parse_folder(load_root, commit, outcome_commits)
    loaded.root = root
    for err in loaded.file_errors:
        logger.warning("metric-hub %s: %s", commit or root, err)
    with _CACHE_LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
    return loaded


def __getattr__(name: str):
    """`MetricHub` (the Dagster resource) is defined in `metric_hub_resource`, imported on first use:
    `validate-config` reads metric-hub files without Dagster, whose import costs a second."""
    if name == "MetricHub":
        from .metric_hub_resource import MetricHub

        return MetricHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
