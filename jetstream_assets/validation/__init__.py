"""validate-config: check metric-hub files the way Jetstream would analyse them.

Modules: `report` (problems and reports), `targets` (which file is what, where an entry is written),
`resolution` (resolve against the platform's defaults and definitions; the problems resolution finds),
`sql` (the queries of a resolved config), `dry_run` (dry runs and isolating the culprit),
`synthetic_types` / `synthetic_schemas` / `synthetic_tables` (tables derived from the SQL for local dry
runs), `validate` (the entry point).
"""

from jetstream_assets.validation.report import FileReport, Problem, format_reports
from jetstream_assets.validation.validate import validate_configs

__all__ = ["FileReport", "Problem", "format_reports", "validate_configs"]
