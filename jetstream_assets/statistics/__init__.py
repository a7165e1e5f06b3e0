"""Jetstream's statistics, computed by our own vectorised engine (mozanalysis is the reference in tests).

`compute_statistic` runs one configured statistic (with its pre-treatments) of one metric over per-client
data and returns rows in the statistics schema (`STATISTIC_COLUMNS`).
"""

from .engine import STATISTICS, compute_statistic, known_statistics
from .pre_treatments import PRE_TREATMENTS, known_pre_treatments
from .results import STATISTIC_COLUMNS, StatisticError

__all__ = [
    "PRE_TREATMENTS",
    "STATISTICS",
    "STATISTIC_COLUMNS",
    "StatisticError",
    "compute_statistic",
    "known_pre_treatments",
    "known_statistics",
]
