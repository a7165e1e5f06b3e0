"""Experiments as Experimenter's v8 API describes them.

We parse the v8 records ourselves (rather than with the nimbus-schemas models) so a malformed record yields
an error that names the experiment and the offending field, and one bad record never hides the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from metric_config_parser import experiment as mcp_experiment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Experiments that ended longer ago than this are no longer analysed by the daily run.
ANALYSABLE_DAYS_AFTER_END = 90

# Characters Dagster refuses in a multi-partition dimension key, and substrings it refuses in any key.
_FORBIDDEN_SLUG_CHARACTERS = set("|,[]\"'")
_FORBIDDEN_SLUG_SUBSTRINGS = ("...",)


class ExperimenterRecordError(ValueError):
    """One Experimenter record could not be parsed; the message names the slug, the field and the cause."""

    def __init__(self, slug: str | None, field: str | None, cause: str):
        self.slug = slug
        self.field = field
        self.cause = cause
        who = f"experiment {slug!r}" if slug else "an experiment without a usable slug"
        where = f"field {field!r}" if field else "the record"
        super().__init__(
            f"Experimenter record for {who} is malformed: {where}: {cause}. "
            "The experiment is skipped until its record is fixed in Experimenter."
        )


class InvalidSlugError(ValueError):
    """A slug that cannot be a Dagster dynamic partition key."""


def validate_slug(slug: str) -> None:
    """Refuse slugs that cannot key the `experiments` dynamic partition (Dagster rejects them late and vaguely)."""
    if not isinstance(slug, str) or not slug.strip():
        raise InvalidSlugError(
            f"Experiment slug {slug!r} is empty: an experiment needs a slug to be analysed "
            "(set it in Experimenter)."
        )
    bad = sorted(
        {c for c in slug if c in _FORBIDDEN_SLUG_CHARACTERS or c.isspace() or not c.isprintable()}
    )
    bad_substrings = [s for s in _FORBIDDEN_SLUG_SUBSTRINGS if s in slug]
    if bad or bad_substrings:
        shown = ", ".join(repr(c) for c in bad + bad_substrings)
        raise InvalidSlugError(
            f"Experiment slug {slug!r} cannot be a Dagster partition key: it contains {shown}. "
            "Slugs may not contain | , [ ] quotes, whitespace or '...'; rename the experiment in Experimenter."
        )


class Branch(BaseModel):
    model_config = ConfigDict(frozen=True)

    slug: str
    ratio: int = 1


class BucketConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    randomization_unit: str
    namespace: str
    start: int
    count: int
    total: int = 10000


class Experiment(BaseModel):
    """One experiment from Experimenter, after parsing (all dates are UTC calendar dates)."""

    model_config = ConfigDict(frozen=True)

    slug: str
    branches: list[Branch]
    start_date: dt.date | None
    end_date: dt.date | None
    proposed_enrollment: int | None
    enrollment_end_date: dt.date | None
    is_enrollment_paused: bool = False
    reference_branch: str | None
    app_name: str = "firefox_desktop"
    app_id: str = "firefox-desktop"
    outcomes: list[str] = []
    segments: list[str] = []
    bucket_config: BucketConfig | None = None
    is_rollout: bool = False

    def status(self, today: dt.date) -> Literal["Live", "Complete"]:
        """`Complete` from the end date on.

        Jetstream compares the end date's midnight with the current time, so on the end date itself the
        experiment already counts as Complete; that is what lets the overall window run on D == end date.
        """
        if self.end_date is not None and self.end_date <= today:
            return "Complete"
        return "Live"

    def to_config_experiment(self, today: dt.date) -> mcp_experiment.Experiment:
        """The metric-config-parser view of this experiment, which `AnalysisSpec.resolve` needs."""

        def utc(d: dt.date | None) -> dt.datetime | None:
            return None if d is None else dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)

        bucket = (
            None
            if self.bucket_config is None
            else mcp_experiment.BucketConfig(
                randomization_unit=self.bucket_config.randomization_unit,
                namespace=self.bucket_config.namespace,
                start=self.bucket_config.start,
                count=self.bucket_config.count,
                total=self.bucket_config.total,
            )
        )
        return mcp_experiment.Experiment(
            experimenter_slug=None,
            normandy_slug=self.slug,
            type="v6",  # Jetstream's name for every Nimbus (v8 API) experiment
            status=self.status(today),
            branches=[mcp_experiment.Branch(slug=b.slug, ratio=b.ratio) for b in self.branches],
            start_date=utc(self.start_date),
            end_date=utc(self.end_date),
            proposed_enrollment=self.proposed_enrollment,
            reference_branch=self.reference_branch,
            is_high_population=False,
            app_name=self.app_name,
            app_id=self.app_id,
            outcomes=list(self.outcomes),
            segments=list(self.segments),
            enrollment_end_date=utc(self.enrollment_end_date),
            is_enrollment_paused=self.is_enrollment_paused,
            is_rollout=self.is_rollout,
            bucket_config=bucket,
        )

    @classmethod
    def from_v8(cls, record: dict) -> "Experiment":
        """Parse one record of `/api/v8/experiments/`; raise ExperimenterRecordError naming what is wrong."""
        if not isinstance(record, dict):
            raise ExperimenterRecordError(
                None, None, f"expected a JSON object, got {type(record).__name__}"
            )
        raw_slug = record.get("slug")
        slug = raw_slug if isinstance(raw_slug, str) and raw_slug.strip() else None
        if slug is None:
            cause = "missing" if "slug" not in record else f"must be a non-empty string, got {raw_slug!r}"
            raise ExperimenterRecordError(None, "slug", cause)
        try:
            parsed = _V8Record.model_validate(record)
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            value = first.get("input")
            cause = first["msg"].removeprefix("Value error, ")
            if first["type"] in ("model_type", "model_attributes_type", "dict_type"):
                cause = "expected a JSON object"
            if not isinstance(value, (dict, list)):
                cause = f"{cause} (got {value!r})"
            raise ExperimenterRecordError(slug, field, cause) from e
        return cls(
            slug=slug,
            branches=[Branch(slug=b.slug, ratio=b.ratio) for b in parsed.branches],
            start_date=parsed.startDate,
            end_date=parsed.endDate,
            proposed_enrollment=parsed.proposedEnrollment,
            enrollment_end_date=parsed.enrollmentEndDate,
            is_enrollment_paused=bool(parsed.isEnrollmentPaused),
            reference_branch=parsed.referenceBranch,
            app_name=parsed.appName or "firefox_desktop",
            app_id=parsed.appId or "firefox-desktop",
            outcomes=[o.slug for o in parsed.outcomes or []],
            segments=[s.slug for s in parsed.segments or []],
            bucket_config=(
                None
                if parsed.bucketConfig is None
                else BucketConfig(
                    randomization_unit=parsed.bucketConfig.randomizationUnit,
                    namespace=parsed.bucketConfig.namespace,
                    start=parsed.bucketConfig.start,
                    count=parsed.bucketConfig.count,
                    total=parsed.bucketConfig.total,
                )
            ),
            is_rollout=bool(parsed.isRollout),
        )


def analysable(experiments: list[Experiment], today: dt.date) -> list[Experiment]:
    """The experiments a daily run considers: live, or ended within the last 90 days, and not rollouts."""
    threshold = today - dt.timedelta(days=ANALYSABLE_DAYS_AFTER_END)
    return [
        e
        for e in experiments
        if not e.is_rollout and (e.end_date is None or e.end_date >= threshold)
    ]


# --- the v8 wire format (camelCase, strict types; unknown fields are ignored) ---------------------------


class _V8Slugged(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    slug: str


class _V8Branch(_V8Slugged):
    ratio: int = 1


class _V8BucketConfig(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    randomizationUnit: str
    namespace: str
    start: int
    count: int
    total: int = 10000


def _parse_day(value: Any) -> dt.date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a date string YYYY-MM-DD")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError("expected a date YYYY-MM-DD") from None


class _V8Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    branches: list[_V8Branch]
    startDate: dt.date | None = None
    endDate: dt.date | None = None
    proposedEnrollment: int | None = None
    enrollmentEndDate: dt.date | None = None
    isEnrollmentPaused: bool | None = None
    referenceBranch: str | None = None
    appName: str | None = None
    appId: str | None = None
    outcomes: list[_V8Slugged] | None = Field(default=None)
    segments: list[_V8Slugged] | None = Field(default=None)
    bucketConfig: _V8BucketConfig | None = None
    isRollout: bool | None = None

    @field_validator("startDate", "endDate", "enrollmentEndDate", mode="plain")
    @classmethod
    def _day(cls, value: Any) -> dt.date | None:
        return _parse_day(value)
