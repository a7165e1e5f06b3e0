"""Jetstream's table and view names, so results land where a Jetstream user looks for them."""

from __future__ import annotations

import re

from metric_config_parser.metric import AnalysisPeriod


def normalize(name: str) -> str:
    """A slug as a table-name part: every character outside [a-zA-Z0-9_] becomes `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def enrollments_table(slug: str) -> str:
    return f"enrollments_{normalize(slug)}"


def metrics_table_prefix(slug: str, basis: str, period: AnalysisPeriod) -> str:
    return f"{normalize(slug)}_{basis}_{period.value}"


def metrics_table(slug: str, basis: str, period: AnalysisPeriod, index: int) -> str:
    return f"{metrics_table_prefix(slug, basis, period)}_{index}"


def metrics_view(slug: str, basis: str, period: AnalysisPeriod) -> str:
    return f"{normalize(slug)}_{basis}_{period.table_suffix}"


def statistics_table_prefix(slug: str, period: AnalysisPeriod) -> str:
    return f"statistics_{normalize(slug)}_{period.value}"


def statistics_table(slug: str, period: AnalysisPeriod, index: int) -> str:
    return f"{statistics_table_prefix(slug, period)}_{index}"


def statistics_view(slug: str, period: AnalysisPeriod) -> str:
    return f"statistics_{normalize(slug)}_{period.table_suffix}"


def experiment_tables(slug: str, names: list[str]) -> list[str]:
    """Of `names`, the tables and views that belong to this experiment (for reruns and cleanup)."""
    n = re.escape(normalize(slug))
    periods = "|".join(p.value for p in AnalysisPeriod) + "|" + "|".join(
        p.table_suffix for p in AnalysisPeriod
    )
    pattern = re.compile(
        rf"^(enrollments_{n}|{n}_(enrollments|exposures)_({periods})(_[0-9]+)?"
        rf"|statistics_{n}_({periods})(_[0-9]+)?)$"
    )
    return [name for name in names if pattern.match(name)]
