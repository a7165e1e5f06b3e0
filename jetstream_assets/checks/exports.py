"""Check that the export files a step wrote are what Experimenter can read.

The files are read back through the ExportStore rather than trusted from memory: what counts is what a
reader of the bucket gets (a truncated upload, a store that mangles bytes, or a later writer would show
here, not in the payload we meant to write).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import dagster as dg
from mozilla_nimbus_schemas.jetstream import AnalysisErrors, Metadata, Statistics
from pydantic import BaseModel, ValidationError

from jetstream_assets.checks.results import (
    Outcome,
    computed_cells,
    failed_cells,
    guarded,
    metadata_value,
    nothing_to_check,
)
from jetstream_assets.exports.statistics import IDENTITY_COLUMNS
from jetstream_assets.partitions import ANALYSIS_PARTITIONS
from jetstream_assets.exports.store import ERRORS_DIR, METADATA_DIR, STATISTICS_DIR, ExportStore

EXPORTS_VALID = "exports_valid"
EXPORTS_VALID_SEVERITY = dg.AssetCheckSeverity.ERROR
# Metadata entry (a JSON list of store-relative paths) in which an export cell records what it wrote.
EXPORTED_PATHS = "exported_paths"

MODELS: dict[str, type[BaseModel]] = {
    STATISTICS_DIR: Statistics,
    METADATA_DIR: Metadata,
    ERRORS_DIR: AnalysisErrors,
}


def _duplicate_statistics(rows: list[Any]) -> str | None:
    """The Statistics model's own duplicate rule never fires (it tests `"root" in self`), so apply it here."""
    seen: dict[tuple, int] = {}
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        key = tuple(row.get(c) for c in IDENTITY_COLUMNS)
        if key in seen:
            return (
                f"rows {seen[key]} and {position} describe the same estimate "
                f"({', '.join(f'{c}={v!r}' for c, v in zip(IDENTITY_COLUMNS, key) if v is not None)})"
            )
        seen[key] = position
    return None


def model_for(path: str) -> type[BaseModel]:
    folder = path.split("/", 1)[0]
    if folder not in MODELS:
        raise ValueError(
            f"Export {path!r} is not in a folder with a known schema ({', '.join(MODELS)}); "
            "export paths come from exports.store (statistics_path, metadata_path, errors_path)."
        )
    return MODELS[folder]


# Verdicts by (file, digest of its bytes): every cell of a run that records the same export file reads it back,
# and the same bytes get the same verdict without validating them again.
_VERDICTS: dict[tuple[str, str], str | None] = {}
_KEPT_VERDICTS = 64
_VERDICTS_LOCK = threading.Lock()


def validation_error(store: ExportStore, path: str) -> str | None:
    """The first reason the export at `path` (relative to the store) is not valid, or None when it is."""
    model = model_for(path)
    if not store.exists(path):
        return "the file is missing from the export store"
    data = store.read_bytes(path)
    key = (store.uri(path), hashlib.sha256(data).hexdigest())
    with _VERDICTS_LOCK:
        if key in _VERDICTS:
            return _VERDICTS[key]
    verdict = _verdict(store, path, model, data)
    with _VERDICTS_LOCK:
        while len(_VERDICTS) >= _KEPT_VERDICTS:
            _VERDICTS.pop(next(iter(_VERDICTS)))
        _VERDICTS[key] = verdict
    return verdict


def _verdict(store: ExportStore, path: str, model: type[BaseModel], data: bytes) -> str | None:
    try:
        payload = store.parse_json(path, data)
    except ValueError as e:  # parse_json names the file and the JSON error
        return f"not valid JSON: {e}"
    try:
        model.model_validate(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        return (
            f"does not match the {model.__name__} schema of mozilla-nimbus-schemas: {e.error_count()} error(s), "
            f"first at {where}: {first['msg']} (got {shown})"
        )
    if model is Statistics:
        duplicate = _duplicate_statistics(payload)
        if duplicate:
            return f"{duplicate}; a statistics export holds one row per estimate and window"
    return None


def exports_valid_result(store: ExportStore, outcomes: list[Outcome]) -> dg.AssetCheckResult:
    """The result of some cells (run_cells passes one): every file they wrote validates against its schema."""
    written: dict[str, str] = {}  # path -> experiment slug
    for plan, metadata in computed_cells(outcomes):
        for path in metadata_value(metadata, EXPORTED_PATHS) or []:
            written[path] = plan.slug
    if not written:
        why = "no export file was written (no analysis window closed in the step's cells)."
        failed = failed_cells(outcomes)
        if failed:
            why += f" {len(failed)} cell(s) failed; their materializations say why: {', '.join(failed[:5])}."
        return nothing_to_check(EXPORTS_VALID, EXPORTS_VALID_SEVERITY, why)
    invalid = []
    for path, slug in written.items():
        error = validation_error(store, path)
        if error is not None:
            invalid.append({"experiment": slug, "file": path, "uri": store.uri(path), "error": error})
    metadata: dict[str, Any] = {
        "checked": len(written),
        "files": dg.MetadataValue.json(sorted(written)),
        "invalid_files": dg.MetadataValue.json(invalid),
    }
    if invalid:
        first = invalid[0]
        metadata.update(file=first["file"], experiment=first["experiment"], error=first["error"])
        description = (
            f"{len(invalid)} of {len(written)} export file(s) are not valid; Experimenter cannot show results "
            f"from them. First: {first['file']} ({first['experiment']}): {first['error']}. The file was read back "
            "from the export store after writing: if the in-memory payload validated, the store or a concurrent "
            "writer changed it; otherwise the export code produced it. Rerun the experiment's exports once fixed."
        )
    else:
        description = f"All {len(written)} export file(s) of this step validate against mozilla-nimbus-schemas."
    return dg.AssetCheckResult(
        check_name=EXPORTS_VALID,
        passed=not invalid,
        severity=EXPORTS_VALID_SEVERITY,
        description=description,
        metadata=metadata,
    )


def exports_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            EXPORTS_VALID,
            asset=asset,
            partitions_def=ANALYSIS_PARTITIONS,
            description=(
                "Every file this step wrote, read back from the export store, validates against the "
                "mozilla-nimbus-schemas model Experimenter reads it with."
            ),
        )
    ]


def exports_checks(outcome: Outcome, resources: Any) -> list[dg.AssetCheckResult]:
    """An export asset's check of one cell (recorded on its partition): the files it wrote, read back
    through the step's export store."""
    store = resources.export_store
    return [guarded(EXPORTS_VALID, EXPORTS_VALID_SEVERITY, lambda: exports_valid_result(store, [outcome]))]
