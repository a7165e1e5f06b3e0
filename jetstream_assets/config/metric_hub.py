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

import copy
import datetime as dt
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli
from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import (
    Config,
    ConfigCollection,
    DefaultConfig,
    DefinitionConfig,
    Outcome,
)
from metric_config_parser.definition import DefinitionSpec
from metric_config_parser.function import FunctionsSpec
from metric_config_parser.outcome import OutcomeSpec
from jinja2.exceptions import SecurityError

from .limits import MAX_FILE_BYTES, shape_problem
from .sandbox import check_function_definition

logger = logging.getLogger(__name__)

JETSTREAM_DIR = "jetstream"
DEFINITIONS_DIR = "definitions"
DEFAULTS_DIR = "defaults"
OUTCOMES_DIR = "outcomes"
FUNCTIONS_FILE = "functions.toml"

# Top-level tables Jetstream's config validation accepts (anything else is almost always a typo).
ANALYSIS_KEYS = frozenset(
    {
        "metrics",
        "experiment",
        "segments",
        "data_sources",
        "parameters",
        "friendly_name",
        "description",
        "population",
        "project",
        "alerts",
        "dimensions",
        "functions",
        "daily",
        "weekly",
        "28_day",
        "overall",
        "preenrollment_weekly",
        "preenrollment_days28",
    }
)
# Sections whose entries can be parsed (and dropped) one at a time.
_ENTRY_SECTIONS = ("metrics", "data_sources", "segments")
_PERIOD_KEYS = frozenset(
    {"daily", "weekly", "28_day", "overall", "preenrollment_weekly", "preenrollment_days28"}
)


@dataclass(frozen=True)
class ConfigFileError:
    """A metric-hub file (or one entry of it) that could not be loaded.

    `field` None means the whole file was skipped; otherwise only that entry (e.g.
    `metrics.active_hours`) was dropped and the rest of the file loaded.
    """

    path: str
    field: str | None
    cause: str
    line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        what = f"field `{self.field}` was dropped" if self.field else "the file was skipped"
        return f"{self.location}: {self.cause} ({what})"


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
# git helpers


class MetricHubError(RuntimeError):
    """The metric-hub checkout cannot be found, cloned or read."""


def _git(args: list[str], cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if check and proc.returncode != 0:
        raise MetricHubError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _git_toplevel(path: Path) -> Path | None:
    out = _git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    return Path(out) if out else None


def _git_rev(path: Path, rev: str) -> str | None:
    return _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=path, check=False) or None


def _outcome_commits(git_root: Path, rev: str, pathspec: str) -> dict[str, str]:
    """Last commit touching each file under `pathspec` (repo-relative to git_root)."""
    out = _git(["log", "--format=%x00%H", "--name-only", rev, "--", pathspec], cwd=git_root, check=False)
    result: dict[str, str] = {}
    sha = None
    for line in out.splitlines():
        if line.startswith("\x00"):
            sha = line[1:]
        elif line and sha is not None:
            result.setdefault(line, sha)
    return result


def _snapshot(git_root: Path, sha: str, prefix: str) -> Path:
    """Extract the tree at `sha` (only `prefix`) into a cache folder, without touching the checkout.

    Snapshots are immutable, so concurrent processes can share one; extraction goes to a temporary
    folder that is renamed into place.
    """
    base = Path(tempfile.gettempdir()) / "jetstream_assets_metric_hub"
    target = base / sha
    if target.exists():
        return target / prefix
    base.mkdir(parents=True, exist_ok=True)
    args = ["archive", "--format=tar", sha]
    if prefix:
        args += ["--", prefix.rstrip("/")]
    proc = subprocess.run(["git", *args], cwd=git_root, capture_output=True)
    if proc.returncode != 0:
        raise MetricHubError(f"git archive {sha} failed in {git_root}: {proc.stderr.decode().strip()}")
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{sha}-"))
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(tmp, filter="data")
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target / prefix


# ----------------------------------------------------------------------------------------------
# parsing one file


_LINE_RE = re.compile(r"line (\d+)")


def _toml_line(exc: Exception) -> int | None:
    line = getattr(exc, "lineno", None)
    if isinstance(line, int):
        return line
    m = _LINE_RE.search(str(exc))
    return int(m.group(1)) if m else None


_HEADER = re.compile(r"[ \t]*\[[ \t]*([^\[\]]+?)[ \t]*\]")
_KEY = re.compile(r"[ \t]*([^\s=\[\]]+?)[ \t]*=")


@functools.lru_cache(maxsize=16)
def _line_index(text: str) -> tuple[dict[str, int], dict[str, int]]:
    """(table path -> line of the first header at or under it, key -> line of its first `key =`): built
    once per file, so locating thousands of fields of a large file stays linear."""
    headers: dict[str, int] = {}
    keys: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if m := _HEADER.match(line):
            parts = [p.strip() for p in m.group(1).split(".")]
            for n in range(1, len(parts) + 1):
                headers.setdefault(".".join(parts[:n]), number)
        elif m := _KEY.match(line):
            keys.setdefault(m.group(1), number)
    return headers, keys


def _field_line(text: str, field_path: str) -> int | None:
    """Line of the table header (or key) that defines `field_path`, e.g. `metrics.foo`."""
    headers, keys = _line_index(text)
    line = headers.get(".".join(p.strip() for p in field_path.split(".")))
    return line if line is not None else keys.get(field_path.split(".")[-1])


def key_line(text: str, table_line: int | None, key: str) -> int | None:
    """Line of `key = ...` inside the table whose header is on `table_line` (also inline, as in
    `x = { key = 1 }`); the table's own line when the key is not written there."""
    if table_line is None:
        return None
    lines = text.split("\n")
    own = re.compile(rf"\b{re.escape(key)}[ \t]*=")
    inside = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=|[{{,][ \t]*{re.escape(key)}[ \t]*=")
    if table_line <= len(lines) and own.search(lines[table_line - 1]):
        return table_line
    for number in range(table_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.lstrip().startswith("["):
            break
        if inside.search(line):
            return number
    return table_line


def _describe(exc: BaseException) -> str:
    """A one-line cause, unwrapping cattrs' grouped structuring errors."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        notes = [str(n) for n in getattr(exc, "__notes__", [])]
        sub = _describe(inner[0])
        return f"{sub}" + (f" ({notes[0]})" if notes else "")
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return text if name in ("ValueError", "Exception") else f"{name}: {text}"


def _parse_isolating_entries(
    data: dict[str, Any],
    parse: Callable[[dict[str, Any]], Any],
    rel: str,
    text: str,
    errors: list[ConfigFileError],
) -> Any | None:
    """Parse a whole file; when that fails, find the entries that break it, drop them, and retry.

    Only entries of `[metrics.*]`, `[data_sources.*]` and `[segments.*]` are isolated: one broken
    shared metric must not take a platform's other metrics down with it.
    """
    try:
        return parse(copy.deepcopy(data))
    except Exception as exc:  # noqa: BLE001 - any parser error is a config problem
        whole_file_error = exc

    bad: list[tuple[str, str, Exception]] = []
    for section in _ENTRY_SECTIONS:
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for key, value in entries.items():
            if key in _PERIOD_KEYS or not isinstance(value, dict):
                continue
            if section == "segments" and key == "data_sources":
                for ds_key, ds_value in value.items():
                    try:
                        parse({"segments": {"data_sources": {ds_key: copy.deepcopy(ds_value)}}})
                    except Exception as exc:  # noqa: BLE001
                        bad.append((section, f"data_sources.{ds_key}", exc))
                continue
            try:
                parse({section: {key: copy.deepcopy(value)}})
            except Exception as exc:  # noqa: BLE001
                bad.append((section, key, exc))

    if bad:
        pruned = copy.deepcopy(data)
        for section, key, _ in bad:
            holder = pruned[section]
            *parents, last = key.split(".")
            for p in parents:
                holder = holder[p]
            holder.pop(last, None)
        try:
            result = parse(copy.deepcopy(pruned))
        except Exception:  # noqa: BLE001 - fall through to a whole-file error
            pass
        else:
            for section, key, exc in bad:
                fp = f"{section}.{key}"
                errors.append(ConfigFileError(rel, fp, _describe(exc), _field_line(text, fp)))
            return result

    errors.append(ConfigFileError(rel, None, _describe(whole_file_error), None))
    return None


def _read_toml(path: Path, rel: str, errors: list[ConfigFileError]) -> tuple[dict, str] | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            errors.append(ConfigFileError(
                rel, None, f"the file is {size:,} bytes; metric-hub files over {MAX_FILE_BYTES:,} bytes "
                "(1 MiB) are refused: split it", None,
            ))
            return None
        text = path.read_text(encoding="utf-8")
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        cause = str(exc).split(" (at line")[0]
        errors.append(ConfigFileError(rel, None, f"TOML syntax error: {cause}", _toml_line(exc)))
    except RecursionError as exc:  # tomli refuses 1,000-part keys and 400-deep inline values this way
        errors.append(ConfigFileError(rel, None, f"TOML nested too deeply: {exc}", None))
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(ConfigFileError(rel, None, f"cannot read file: {exc}", None))
    else:
        problem = shape_problem(data)
        if problem is None:
            return data, text
        where, cause = problem
        errors.append(ConfigFileError(rel, None, cause, _field_line(text, where.split(".")[0]) if where else None))
    return None


def _safe_functions(data: dict, rel: str, text: str, errors: list[ConfigFileError]) -> dict:
    """`data` without the `[functions.<slug>]` whose definition uses more than `{select_expr}`
    (metric-config-parser expands it with `str.format`, outside the template sandbox)."""
    functions = data.get("functions")
    if not isinstance(functions, dict):
        return data
    safe = dict(functions)
    for slug, function in functions.items():
        definition = function.get("definition") if isinstance(function, dict) else None
        try:
            check_function_definition(definition)
        except ValueError as exc:  # SecurityError is not a ValueError: both are refusals
            cause = str(exc)
        except SecurityError as exc:
            cause = str(exc)
        else:
            continue
        del safe[slug]
        fp = f"functions.{slug}.definition"
        errors.append(ConfigFileError(rel, fp, cause, _field_line(text, f"functions.{slug}")))
    return {**data, "functions": safe}


def _unexpected_keys(data: dict, rel: str, text: str, errors: list[ConfigFileError]) -> bool:
    unexpected = sorted(set(data) - ANALYSIS_KEYS)
    for key in unexpected:
        errors.append(
            ConfigFileError(
                rel,
                key,
                f"unexpected top-level table `{key}` (allowed: {', '.join(sorted(ANALYSIS_KEYS))})",
                _field_line(text, key),
            )
        )
    return bool(unexpected)


def _analysis_spec(data: dict) -> AnalysisSpec:
    return AnalysisSpec.from_dict(data)


def _definition_spec(data: dict) -> DefinitionSpec:
    return DefinitionSpec.from_dict(data)


def _outcome_spec(data: dict) -> OutcomeSpec:
    return OutcomeSpec.from_dict(data)


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
        read = _read_toml(path, rel, errors)
        if read is None:
            continue
        data, text = read
        raws[rel] = data
        parent = path.parent.name
        try:
            if parent == DEFINITIONS_DIR and path.name == FUNCTIONS_FILE:
                spec = FunctionsSpec.from_dict(_safe_functions(data, rel, text, errors))
                functions.update(spec.functions)  # jetstream/definitions comes later and wins
            elif parent == DEFINITIONS_DIR:
                definition = _parse_isolating_entries(data, _definition_spec, rel, text, errors)
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
                if _unexpected_keys(data, rel, text, errors):
                    continue
                spec = _parse_isolating_entries(data, _analysis_spec, rel, text, errors)
                if spec is not None:
                    defaults.append(DefaultConfig(path.stem, spec, _mtime(path)))
            elif path.parent.parent.name == OUTCOMES_DIR:
                if _unexpected_keys(data, rel, text, errors):
                    continue
                spec = _parse_isolating_entries(data, _outcome_spec, rel, text, errors)
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
                if _unexpected_keys(data, rel, text, errors):
                    continue
                spec = _parse_isolating_entries(data, _analysis_spec, rel, text, errors)
                if spec is not None:
                    configs.append(Config(path.stem, spec, _mtime(path)))
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed functions.toml
            errors.append(ConfigFileError(rel, None, _describe(exc), None))

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
    git_root = _git_toplevel(root)
    commit = None
    load_root = root
    fingerprint = None
    if git_root is not None:
        if ref:
            candidates = ([f"{remote}/{ref}"] if remote else []) + [ref]
            commit = next((c for c in (_git_rev(root, r) for r in candidates) if c), None)
            if commit is None:
                raise MetricHubError(
                    f"metric-hub ref {ref!r} not found in {git_root}: set MetricHub.ref to a "
                    "branch, tag or commit of that repository (or leave it unset for HEAD)"
                )
            prefix = _git(["rev-parse", "--show-prefix"], cwd=root, check=False)
            load_root = _snapshot(git_root, commit, prefix)
        else:
            commit = _git_rev(root, "HEAD")
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
        for repo_rel, sha in _outcome_commits(git_root, commit, pathspec).items():
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
