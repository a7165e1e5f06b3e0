"""Exported results files (statistics, metadata, errors) and the store they are written to."""

from jetstream_assets.exports.errors import (
    LOG_COLUMNS,
    SKIPPED_EXCEPTION_TYPES,
    ErrorsExportError,
    errors_export,
    errors_window_start,
)
from jetstream_assets.exports.metadata import (
    MetadataExportError,
    build_metadata,
    default_external_config_url,
    metadata_skip_reason,
)
from jetstream_assets.exports.statistics import (
    EXPORT_COLUMNS,
    StatisticsExportError,
    statistics_export,
)
from jetstream_assets.exports.store import (
    PERIOD_SUFFIXES,
    ExportStore,
    LocalExportStore,
    errors_path,
    metadata_path,
    normalize_name,
    statistics_path,
)

__all__ = [
    "EXPORT_COLUMNS",
    "LOG_COLUMNS",
    "PERIOD_SUFFIXES",
    "SKIPPED_EXCEPTION_TYPES",
    "ErrorsExportError",
    "ExportStore",
    "LocalExportStore",
    "MetadataExportError",
    "StatisticsExportError",
    "build_metadata",
    "default_external_config_url",
    "errors_export",
    "errors_path",
    "errors_window_start",
    "metadata_path",
    "metadata_skip_reason",
    "normalize_name",
    "statistics_export",
    "statistics_path",
]
