"""Jetstream's validate-config resolves an experiment's own config a second time, alone.

`jetstream validate-config` first resolves the config as the analysis does (platform and experiment-type
defaults, then the config, then its outcomes: what `resolve_config` reproduces), then resolves the config's own
spec once more without the defaults (`config.spec.resolve(experiment, configs)`), against the collection the
first pass left behind. That second pass rejects a config whose own file lists a metric that only the
defaults give statistics to (it redefines the metric, or names it in a table of its own, without
`statistics`): "No statistical treatment defined for metric ...", and a config that lists a metric only the
defaults define. The analysis itself runs (Jetstream never resolves the config alone there), so only
validation asks for this pass (`resolve_config(..., as_validate=True)`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metric_config_parser.analysis import AnalysisSpec
from metric_config_parser.config import ConfigCollection
from metric_config_parser.experiment import Experiment, ExperimentConfiguration

from . import scoped

if TYPE_CHECKING:
    from .resolve import _Resolver


def own_config_alone(
    r: _Resolver, own: AnalysisSpec, experiment: Experiment, conf: ExperimentConfiguration,
    configs: ConfigCollection, blamed: set[str],
) -> None:
    """Resolve each metric the experiment's own config lists with that config alone (its outcomes merged, as
    Jetstream does); a metric the first pass already blamed (`blamed`) is not reported again. `own` is a
    private copy of the config's spec, consumed here."""
    from .resolve import PERIOD_KEYS, _cause

    spec = own
    slugs = list(dict.fromkeys([*experiment.outcomes, *spec.experiment.outcomes]))
    for slug in slugs:
        outcome = configs.spec_for_outcome(slug, r.app)
        if outcome is None:
            continue  # reported by the first pass
        try:
            spec.merge_outcome(outcome)
            spec.merge_parameters(outcome.parameters)
        except Exception as exc:  # noqa: BLE001 - e.g. parameters that merge with the defaults only
            r.error(
                f"outcome {slug!r} cannot be merged into this file alone ({_cause(exc)}), and Jetstream's "
                "validate-config also resolves this file without the platform defaults, which rejects it",
                file=r.own_file, field="experiment.outcomes", hint="fix the outcome's parameters or this file's",
            )
            return
    settled: set[str] = set()  # resolved, and would resolve the same again (`scoped.settled_metric`)
    for period, key in PERIOD_KEYS.items():
        for ref in getattr(spec.metrics, period.table_suffix):
            if ref.name in blamed or ref.name in settled:
                continue
            try:
                ref.resolve(spec, conf, configs)
            except Exception as exc:  # noqa: BLE001 - each metric on its own, as in the first pass
                blamed.add(ref.name)
                _report(r, ref.name, key, _cause(exc))
                continue
            if scoped.settled_metric(ref.name, spec, conf, configs):
                settled.add(ref.name)


def _report(r: _Resolver, name: str, period_key: str, cause: str) -> None:
    listed = lambda v: isinstance(v, list) and name in v  # noqa: E731
    where = "Jetstream's validate-config also resolves this file without the platform defaults"
    own_table = _own_table(r, r.own_file, name)
    if "statistical treatment" in cause:
        stats_file = r.locate(["metrics", name, "statistics"])
        given = f" (its statistics come from {stats_file})" if stats_file and stats_file != r.own_file else ""
        fld = f"metrics.{name}" if isinstance(own_table, dict) else f"metrics.{period_key}"
        r.error(
            f"No statistical treatment defined for metric {name!r} in this file alone{given}: it has no "
            f"statistics here, and {where}, which rejects it",
            file=r.own_file, field=fld,
            hint=f"add [metrics.{name}.statistics.<statistic>] (e.g. bootstrap_mean) to this file",
        )
        return
    if "Could not locate metric" in cause or "No default definition" in cause:
        elsewhere = next((f for f in r.candidate_files()[1:] if _own_table(r, f, name) is not None), "the defaults")
        if isinstance(own_table, dict):
            missing = " and ".join(k for k in ("select_expression", "data_source") if k not in own_table)
            r.error(
                f"unknown metric {name!r}: this file alone does not define it fully (no {missing}; the rest "
                f"comes from {elsewhere}), and {where}, which rejects it",
                file=r.own_file, field=f"metrics.{name}",
                hint=f"give [metrics.{name}] its select_expression and data_source here, or define it in "
                f"definitions/{r.app}.toml",
            )
            return
        r.error(
            f"unknown metric {name!r} in metrics.{period_key} of this file alone: only {elsewhere} defines it, "
            f"and {where}, which rejects it",
            file=r.locate(["metrics", period_key], listed) or r.own_file, field=f"metrics.{period_key}",
            hint=f"define [metrics.{name}] in this file or in definitions/{r.app}.toml, or drop it from the "
            "list (the platform defaults analyse it anyway)",
        )
        return
    r.error(
        f"metric {name!r} cannot be resolved from this file alone ({where}): {cause}",
        file=r.own_file, field=f"metrics.{name}", hint="fix the metric's definition in this file",
    )


def _own_table(r: _Resolver, rel: str, name: str):
    """The `[metrics.<name>]` table of file `rel`, if it has one."""
    metrics = (r.loaded.raw.get(rel) or {}).get("metrics")
    return metrics.get(name) if isinstance(metrics, dict) else None
