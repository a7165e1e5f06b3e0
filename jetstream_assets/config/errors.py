"""`ConfigError`: a configuration problem of one experiment, saying where it is (file, line, field, metric-hub
commit) and what to do about it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem of one experiment, saying where it is and what to do about it."""

    def __init__(
        self,
        experiment: str,
        cause: str,
        *,
        file: str | None = None,
        field: str | None = None,
        line: int | None = None,
        commit: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.cause = cause
        self.file = file
        self.field = field
        self.line = line
        self.commit = commit
        self.hint = hint
        where = file or "configuration"
        if line:
            where += f":{line}"
        if commit:
            where += f" (metric-hub {commit[:12]})"
        parts = [f"experiment {experiment!r}: {where}"]
        if field:
            parts.append(f"field `{field}`")
        message = ", ".join(parts) + f": {cause}"
        if hint:
            message += f". {hint}"
        super().__init__(message)

    def __reduce__(self):  # keyword-only fields survive pickling (Dagster serialises failures)
        return (
            _rebuild_config_error,
            (self.experiment, self.cause, self.file, self.field, self.line, self.commit, self.hint),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigError) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def _rebuild_config_error(experiment, cause, file, field, line, commit, hint) -> ConfigError:
    return ConfigError(
        experiment, cause, file=file, field=field, line=line, commit=commit, hint=hint
    )
