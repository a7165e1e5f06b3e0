"""Where the exported results files live: a local folder by default, a GCS bucket in production.

Both keep Jetstream's bucket layout (``statistics/``, ``metadata/``, ``errors/``) so Experimenter and
other readers find the files at the same relative paths whichever store wrote them. ``reports/`` holds our
own addition: one self-contained HTML results report per experiment.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg

STATISTICS_DIR = "statistics"
METADATA_DIR = "metadata"
ERRORS_DIR = "errors"
REPORTS_DIR = "reports"

# Content type of an export by file suffix (what a GCS object is served as).
CONTENT_TYPES = {".json": "application/json", ".html": "text/html; charset=utf-8"}

# Table suffixes of the statistics views; each one is one statistics export file.
PERIOD_SUFFIXES = (
    "daily",
    "weekly",
    "days28",
    "overall",
    "preenrollment_weekly",
    "preenrollment_days28",
)

_TMP_MARK = ".tmp-"


def normalize_name(slug: str) -> str:
    """The slug as Jetstream spells it in table and export file names (outside [a-zA-Z0-9_] -> ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", slug)


def _require_slug(slug: str) -> str:
    if not isinstance(slug, str) or not slug:
        raise ValueError(f"An export path needs an experiment slug; got {slug!r}.")
    return normalize_name(slug)


def statistics_path(slug: str, period_suffix: str) -> str:
    """``statistics/statistics_<slug>_<suffix>.json``: the export of the view ``statistics_<slug>_<suffix>``."""
    if period_suffix not in PERIOD_SUFFIXES:
        raise ValueError(
            f"Experiment {slug!r}: unknown period suffix {period_suffix!r} for a statistics export; "
            f"use one of {', '.join(PERIOD_SUFFIXES)}."
        )
    return f"{STATISTICS_DIR}/statistics_{_require_slug(slug)}_{period_suffix}.json"


def metadata_path(slug: str) -> str:
    return f"{METADATA_DIR}/metadata_{_require_slug(slug)}.json"


def errors_path(slug: str) -> str:
    return f"{ERRORS_DIR}/errors_{_require_slug(slug)}.json"


def report_path(slug: str) -> str:
    """``reports/<slug>.html`` (slug spelled as in the other export names): the experiment's results report."""
    return f"{REPORTS_DIR}/{_require_slug(slug)}.html"


def content_type(path: str) -> str:
    """The content type a store serves the export at ``path`` as (JSON unless the suffix says otherwise)."""
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), CONTENT_TYPES[".json"])


def dumps_export(payload: Any) -> bytes:
    """Serialise an export payload compactly, as Jetstream's files are; NaN or infinity is a bug upstream."""
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as e:  # NaN / inf
        raise ValueError(
            f"Export payload contains NaN or infinity ({e}); convert them to null before writing."
        ) from e
    return text.encode("utf-8")


class ExportStore(dg.ConfigurableResource):
    """Base of the export stores: JSON in and out; subclasses move bytes.

    A subclass (local folder, GCS bucket) implements ``_put``, ``_get``, ``exists``, ``list``, ``delete``
    and ``uri``; paths are always relative, ``/``-separated, in Jetstream's bucket layout.
    """

    def write_json(self, path: str, payload: Any) -> str:
        """Write ``payload`` as JSON at ``path``, replacing any previous file atomically; return its URI.

        Serialisation happens before anything is written, so a payload that cannot be serialised leaves
        the previous file untouched.
        """
        path = self._check_path(path)
        try:
            data = dumps_export(payload)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Cannot write export {path}: {e}") from e
        self._put(path, data)
        return self.uri(path)

    def write_text(self, path: str, text: str) -> str:
        """Write ``text`` (UTF-8) at ``path``, replacing any previous file atomically; return its URI.

        For exports that are not JSON, such as ``reports/<slug>.html``; the suffix decides the content type.
        """
        path = self._check_path(path)
        if not isinstance(text, str):
            raise TypeError(f"Cannot write export {path}: text must be a str, got {type(text).__name__}.")
        self._put(path, text.encode("utf-8"))
        return self.uri(path)

    def read_text(self, path: str) -> str:
        path = self._check_path(path)
        return self._get(path).decode("utf-8")

    def read_json(self, path: str) -> Any:
        return self.parse_json(path, self.read_bytes(path))

    def read_bytes(self, path: str) -> bytes:
        return self._get(self._check_path(path))

    def parse_json(self, path: str, data: bytes) -> Any:
        """The JSON of the export at `path` whose bytes are `data`; a ValueError names the file."""
        try:
            return json.loads(data)
        except ValueError as e:
            raise ValueError(f"Export {self.uri(path)} is not valid JSON: {e}") from e

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of the files under ``prefix`` (a folder such as ``statistics/`` or a name prefix)."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Remove the file at ``path``; a missing file is not an error (deleting is idempotent)."""
        raise NotImplementedError

    def uri(self, path: str) -> str:
        raise NotImplementedError

    def _put(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def _get(self, path: str) -> bytes:
        raise NotImplementedError

    @staticmethod
    def _check_path(path: str) -> str:
        """Keep every path inside the store: relative, no ``..``, no empty parts."""
        if not isinstance(path, str) or not path:
            raise ValueError(f"Export path must be a non-empty string; got {path!r}.")
        pure = PurePosixPath(path)
        if pure.is_absolute() or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
            raise ValueError(
                f"Export path {path!r} must be relative to the store root, '/'-separated, "
                "without '.' or '..' parts (e.g. 'statistics/statistics_<slug>_weekly.json')."
            )
        return str(pure)


class LocalExportStore(ExportStore):
    """Exports in a folder (default ``<home>/exports``); each write goes to a temporary file in the same
    folder and is renamed over the target, so readers never see half a file."""

    root: str

    def _full(self, path: str) -> Path:
        return Path(self.root) / self._check_path(path)

    def _put(self, path: str, data: bytes) -> None:
        target = self._full(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{_TMP_MARK}", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def _get(self, path: str) -> bytes:
        target = self._full(path)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"No export at {target}; has it been written yet?") from None

    def exists(self, path: str) -> bool:
        return self._full(path).is_file()

    def list(self, prefix: str = "") -> list[str]:
        root = Path(self.root)
        if not root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name.startswith(".") and _TMP_MARK in name:
                    continue  # a write in progress
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                if rel.startswith(prefix):
                    found.append(rel)
        return sorted(found)

    def delete(self, path: str) -> None:
        try:
            self._full(path).unlink()
        except FileNotFoundError:
            pass

    def uri(self, path: str) -> str:
        return self._full(path).resolve().as_uri()
