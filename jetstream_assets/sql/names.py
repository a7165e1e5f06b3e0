"""Jetstream's table and view names, so results land where a Jetstream user looks for them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from metric_config_parser.metric import AnalysisPeriod


def normalize(name: str) -> str:
    """A slug as a table-name part: every character outside [a-zA-Z0-9_] becomes `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


class SlugCollisionError(ValueError):
    """Two experiments whose slugs normalise to the same table names: the later one is refused."""

    def __init__(self, slug: str, owner: str) -> None:
        self.slug, self.owner = slug, owner
        super().__init__(
            f"Experiment {slug!r} is refused: its tables and exports would be named like those of "
            f"experiment {owner!r} (both become {normalize(slug)!r}), which was there first and keeps them. "
            f"Rename one of the two in Experimenter (slugs that differ only in `-`/`_` or other "
            f"punctuation share table names)."
        )


def table_name_owners(slugs: Iterable[str]) -> dict[str, str]:
    """Normalised name -> the first of `slugs` (in order) that claims it."""
    owners: dict[str, str] = {}
    for slug in slugs:
        owners.setdefault(normalize(slug), slug)
    return owners


def check_table_names(slug: str, earlier: Iterable[str]) -> None:
    """Refuse `slug` when one of `earlier` (experiments known before it, in the order they came) is a
    different slug with the same table names. "Earlier" is the order experiments were added to the
    instance (its dynamic partitions), then Experimenter's list order."""
    owner = table_name_owners([*earlier, slug])[normalize(slug)]
    if owner != slug:
        raise SlugCollisionError(slug, owner)


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
