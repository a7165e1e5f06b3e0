"""What validate-config reports: one `Problem` per reason a file is invalid, one `FileReport` per file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# Problem kinds (the `kind` of a Problem), from the config itself to the SQL it generates.
PARSE = "parse"  # TOML or metric-config-parser cannot read the file or an entry of it
CONFIG = "config"  # resolves with an error (bad reference, template, missing dates...)
UNKNOWN_METRIC = "unknown_metric"
UNKNOWN_STATISTIC = "unknown_statistic"
NO_STATISTICS = "no_statistics"
UNKNOWN_OUTCOME = "unknown_outcome"
UNKNOWN_DATA_SOURCE = "unknown_data_source"
TEMPLATE = "template"  # a Jinja template (select_expression, parameters) does not render
SEGMENT = "segment"
PRE_TREATMENT = "pre_treatment"
STATISTIC_PARAMETER = "statistic_parameter"  # a statistic parameter its schema refuses
SQL = "sql"  # the generated SQL does not compile (dry run)
MISSING_TABLE = "missing_table"  # the dry run's warehouse has no such table
LOCAL_FUNCTION = "local_function"  # a BigQuery function the local engine does not provide
PLATFORM = "platform"  # the file's platform is not one Jetstream analyses

ENROLLMENTS_CTE = "validation_enrollments"
DEFAULT_ENROLLMENT_DAYS = 7
DEFAULT_ANALYSIS_DAYS = 21  # Jetstream validates an open-ended experiment over 21 days too


@dataclass(frozen=True)
class Problem:
    """One reason a file is invalid: where (file, line, field) and why."""

    file: str
    field: str | None
    cause: str
    kind: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(file)'}: {self.cause}"


@dataclass
class FileReport:
    """The outcome of validating one file."""

    path: str
    kind: str  # experiment, outcome, defaults, definitions, functions, skipped
    platform: str | None = None
    problems: list[Problem] = field(default_factory=list)
    dry_runs: int = 0
    note: str | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def summary(self) -> str:
        state = "OK" if self.valid else f"{len(self.problems)} problem(s)"
        extra = [f"platform {self.platform}"] if self.platform else []
        if self.dry_runs:
            extra.append(f"{self.dry_runs} dry run(s)")
        if self.note:
            extra.append(self.note)
        return f"{self.path}: {state}" + (f" ({'; '.join(extra)})" if extra else "")




def format_reports(reports: list[FileReport]) -> Iterator[str]:
    """The CLI's output: one line per file, then one line per problem."""
    for report in reports:
        yield report.summary()
        for problem in report.problems:
            yield f"  {problem}"
    valid = sum(r.valid for r in reports)
    yield f"{valid} of {len(reports)} file(s) valid"

