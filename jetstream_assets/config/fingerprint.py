"""Digests of what a metric-hub commit decides for one experiment, to rerun exactly what a change touches.

Jetstream reruns an experiment when its own config file or its platform's defaults change, and misses
changes to an outcome or a shared definition it uses. Here the metric-hub sensor compares, for the same
Experimenter record, the *resolved* configuration at two commits:

* `analysis`: everything that changes tables or statistics -- the metrics with their rendered SQL, data
  sources, statistics and pre-treatments per period, segments, exposure signal and the config's own
  experiment overrides. A change here means a full rerun.
* `presentation`: the content of the metadata export (friendly names, descriptions, outcomes). A change
  only here means rewriting `metadata_<slug>.json`, not recomputing anything.

Comparing resolved configs (rather than files) is what tells a used definition from an unused one in the
same `definitions/<platform>.toml`, and follows Jinja functions into the SQL they render.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from typing import Any, NamedTuple

import attr

from jetstream_assets.config.errors import ConfigError
from jetstream_assets.config.metric_hub import LoadedConfigs
from jetstream_assets.config.resolve import resolve_config
from jetstream_assets.experimenter.models import Experiment

# Fields that only change how results are described, never what is computed.
PRESENTATION_FIELDS = frozenset({"friendly_name", "description", "bigger_is_better", "owner", "deprecated", "level",
                                 "category", "type"})
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)


class ConfigDigest(NamedTuple):
    analysis: str
    presentation: str


def canonical(value: Any, drop: frozenset[str] = frozenset()) -> Any:
    """A JSON-able, order-stable form of a parsed config object (attrs classes, dataclasses, enums...)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value, drop)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): canonical(v, drop) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])) if k not in drop}
    if isinstance(value, (list, tuple)):
        return [canonical(v, drop) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v, drop) for v in value), key=repr)
    if attr.has(type(value)):
        fields = {f.name: getattr(value, f.name) for f in attr.fields(type(value))}
    elif dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(value, "__dict__"):
        fields = {k: v for k, v in vars(value).items() if not k.startswith("_")}
    else:
        return repr(value)
    return {"__type__": type(value).__name__, **canonical(fields, drop)}


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_digest(experiment: Experiment, loaded: LoadedConfigs, today: dt.date) -> ConfigDigest:
    """What `loaded` (one metric-hub commit) decides for `experiment`; a config error is a state too."""
    from jetstream_assets.exports.metadata import build_metadata

    try:
        resolved = resolve_config(experiment.to_config_experiment(today), loaded)
    except ConfigError as e:
        state = digest({"config_error": [e.cause, e.file, e.field]})
        return ConfigDigest(state, state)
    conf = resolved.config
    decided = {
        "experiment_spec": conf.experiment.experiment_spec,
        "segments": conf.experiment.segments,
        "exposure_signal": conf.experiment.exposure_signal,
        "sample_size": conf.experiment.sample_size,
        "metrics": conf.metrics,
        # not str(e): messages name the commit, which differs between any two commits
        "errors": sorted((e.cause, e.file or "", e.field or "") for e in resolved.errors),
    }
    analysis = digest(canonical(decided, PRESENTATION_FIELDS))
    try:
        metadata = build_metadata(
            conf,
            loaded.configs,
            analysis_start_time=EPOCH,
            external_config_url=None,
            has_custom_config=resolved.config_file is not None,
            commit=None,
        )
    except Exception as e:  # noqa: BLE001 - the export step reports it; here it is just a state
        metadata = {"metadata_error": str(e)}
    return ConfigDigest(analysis, digest(canonical(metadata)))


def resolution_key(experiment: Experiment, has_own_config: bool, today: dt.date) -> tuple:
    """Experiments with equal keys get the same config-derived part from any commit: compare once per key.

    What metric-hub decides depends on the experiment's own config file (if any), its platform and type,
    and the outcomes and segments it names; dates, branches and slugs only fill in experiment fields.
    """
    return (
        experiment.slug if has_own_config else None,
        experiment.app_name,
        experiment.app_id,
        experiment.is_rollout,
        experiment.status(today),
        tuple(experiment.outcomes),
        tuple(experiment.segments),
        experiment.reference_branch,
    )
