"""The metadata export: names, descriptions and directions of the metrics and outcomes of one experiment.

Experimenter shows these next to the statistics. The rules follow Jetstream's metadata export: every
metric of the resolved config (all periods), the experiment's Experimenter outcomes looked up for its
platform, and an ``external_config`` block only when a custom config overrides Experimenter's dates,
reference branch or enrollment.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from metric_config_parser.analysis import AnalysisConfiguration
from metric_config_parser.config import ConfigCollection, Outcome
from mozilla_nimbus_schemas.jetstream import Metadata
from pydantic import ValidationError

SCHEMA_VERSION = 4
METRIC_HUB_URL = "https://github.com/mozilla/metric-hub"


class MetadataExportError(ValueError):
    """A resolved config that cannot become a valid metadata export."""


def default_external_config_url(slug: str, repo_url: str = METRIC_HUB_URL, ref: str = "main") -> str:
    """Where a reader finds the experiment's custom config (metric-hub's ``jetstream/<slug>.toml``)."""
    return f"{repo_url.rstrip('/')}/blob/{ref}/jetstream/{slug}.toml"


def friendly_name(name: str, configured: str | None) -> str:
    return configured or name.replace("_", " ").title()


def metadata_skip_reason(config: AnalysisConfiguration) -> str | None:
    """Why Jetstream would not publish metadata for this experiment (None: publish it)."""
    if not config.experiment.normandy_slug:
        return "the experiment has no slug"
    if config.experiment.is_private:
        return "the experiment is private (confidential results are not exported)"
    return None


def _find_outcome(configs: ConfigCollection, slug: str, platform: str) -> Outcome | None:
    for outcome in configs.outcomes:
        if outcome.slug == slug and outcome.platform == platform:
            return outcome
    return None


def _metrics(config: AnalysisConfiguration) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}
    for summaries in config.metrics.values():
        for summary in summaries:
            metric = summary.metric
            metrics[metric.name] = {
                "analysis_bases": [basis.value for basis in metric.analysis_bases],
                "bigger_is_better": metric.bigger_is_better,
                "description": metric.description or "",
                "friendly_name": friendly_name(metric.name, metric.friendly_name),
            }
    return metrics


def _outcomes(
    config: AnalysisConfiguration, configs: ConfigCollection, commit: str | None
) -> dict[str, dict[str, Any]]:
    """Outcomes chosen in Experimenter; an outcome not defined for the experiment's platform is left out."""
    platform = config.experiment.app_name
    outcomes: dict[str, dict[str, Any]] = {}
    for slug in config.experiment.experiment.outcomes:
        outcome = _find_outcome(configs, slug, platform)
        if outcome is None:
            continue
        spec = outcome.spec
        outcomes[outcome.slug] = {
            "slug": outcome.slug,
            "friendly_name": spec.friendly_name,
            "description": spec.description,
            "metrics": list(spec.metrics),
            "default_metrics": [m.name for m in spec.default_metrics] if spec.default_metrics else [],
            "commit_hash": outcome.commit_hash or commit,
        }
    return outcomes


def _date(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    return value.isoformat()


def _external_config(config: AnalysisConfiguration, url: str) -> dict[str, Any]:
    """Only the values the custom config changed; the rest stay null, as in Jetstream."""
    exp_config = config.experiment
    experimenter = exp_config.experiment
    return {
        "reference_branch": (
            exp_config.reference_branch
            if exp_config.reference_branch != experimenter.reference_branch
            else None
        ),
        "end_date": (
            _date(exp_config.end_date)
            if exp_config.end_date is not None and exp_config.end_date != experimenter.end_date
            else None
        ),
        "start_date": (
            _date(exp_config.start_date)
            if exp_config.start_date is not None and exp_config.start_date != experimenter.start_date
            else None
        ),
        "enrollment_period": (
            exp_config.enrollment_period
            if exp_config.enrollment_period != experimenter.proposed_enrollment
            else None
        ),
        "skip": exp_config.skip,
        "url": url,
    }


def build_metadata(
    config: AnalysisConfiguration,
    configs: ConfigCollection,
    *,
    analysis_start_time: dt.datetime | None,
    external_config_url: str | None,
    has_custom_config: bool,
    commit: str | None,
) -> dict[str, Any]:
    """The content of ``metadata/metadata_<slug>.json`` for one resolved config, validated with Metadata.

    ``commit`` is the metric-hub commit the config was resolved at; it stands in for an outcome's
    commit hash when the collection does not know one (configs loaded from a folder rather than git).
    ``external_config_url`` defaults to the config's page in metric-hub.

    ``configs`` must still describe the outcome files: ``AnalysisSpec.resolve`` merges the experiment's
    metrics into the collection's outcome specs in place, so resolve against a copy of the collection.
    """
    slug = config.experiment.normandy_slug
    external_config = None
    if has_custom_config and config.experiment.has_external_config_overrides():
        url = external_config_url or default_external_config_url(slug)
        external_config = _external_config(config, url)

    payload: dict[str, Any] = {
        # Jetstream writes str(datetime): "YYYY-MM-DD HH:MM:SS[.ffffff][+00:00]".
        "analysis_start_time": str(analysis_start_time) if analysis_start_time is not None else None,
        "external_config": external_config,
        "metrics": _metrics(config),
        "outcomes": _outcomes(config, configs, commit),
        "version_info": None,
        "version_date": None,
        "schema_version": SCHEMA_VERSION,
    }
    try:
        validated = Metadata.model_validate(payload)
    except ValidationError as e:
        first = e.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        hint = (
            " external_config_url must be an http(s) URL of the config file."
            if location.startswith("external_config.url")
            else ""
        )
        raise MetadataExportError(
            f"Experiment {slug!r}: metadata does not match the Metadata schema of mozilla-nimbus-schemas "
            f"(at {location}: {first['msg']}, got {first.get('input')!r}).{hint}"
        ) from e
    if external_config is not None:
        # The schema normalises the URL (HttpUrl); publish what it accepted.
        external_config["url"] = str(validated.external_config.url)
    return payload
