"""Asset checks that run with the analysis assets: sample ratio mismatch and enrolled clients on
`enrollments`, and schema validity of the files the export assets write."""

from jetstream_assets.checks.enrollments import (
    ENROLLED_CLIENTS,
    SAMPLE_RATIO_MISMATCH,
    SRM_P_THRESHOLD,
    SampleRatioMismatch,
    enrolled_clients_result,
    enrollments_check_specs,
    enrollments_checks,
    sample_ratio_mismatch,
    sample_ratio_mismatch_result,
)
from jetstream_assets.checks.exports import (
    EXPORTED_PATHS,
    EXPORTS_VALID,
    exports_check_specs,
    exports_checks,
    exports_valid_result,
    validation_error,
)

__all__ = [
    "ENROLLED_CLIENTS",
    "EXPORTED_PATHS",
    "EXPORTS_VALID",
    "SAMPLE_RATIO_MISMATCH",
    "SRM_P_THRESHOLD",
    "SampleRatioMismatch",
    "enrolled_clients_result",
    "enrollments_check_specs",
    "enrollments_checks",
    "exports_check_specs",
    "exports_checks",
    "exports_valid_result",
    "sample_ratio_mismatch",
    "sample_ratio_mismatch_result",
    "validation_error",
]
